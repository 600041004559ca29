"""`byu-motor models`: list registered encoders, necks, heads and presets with their sizes."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

HELP = "List encoders, necks, heads and presets (parameters, output stride)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``byu-motor models``."""
    parser.add_argument("--tiny", action="store_true", help="only tiny encoders and the tiny preset")
    parser.add_argument(
        "--no-params", action="store_true", help="skip building models to count parameters (instant)"
    )


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the tables; models are built on the ``meta`` device (no memory, no forward)."""
    import torch

    from byu_motor.models import ENCODERS, HEADS, NECKS, create_model
    from byu_motor.presets import get_preset, list_presets

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    rows = []
    for name in ENCODERS.names():
        meta = ENCODERS.meta(name)
        if args.tiny and not meta.get("tiny"):
            continue
        n, strides, chans = None, "-", "-"
        if not args.no_params:
            try:
                with torch.device("meta"):
                    enc = ENCODERS.build(name, in_channels=1)
                n = count(enc)
                strides = " ".join(
                    "x".join(map(str, s)) if len(set(s)) > 1 else str(s[0]) for s in enc.strides
                )
                chans = " ".join(map(str, enc.out_channels))
            except Exception as err:  # one broken entry must not hide the others
                strides = f"error: {type(err).__name__}: {err}"[:60]
        rows.append([name, "yes" if meta.get("tiny") else "", _fmt_params(n), strides, chans])
    print("Encoders")
    print(_table(["name", "tiny", "params", "strides", "channels"], rows))
    print()
    print(f"Necks: {', '.join(NECKS.names())}")
    print(f"Heads: {', '.join(HEADS.names())}")
    print()

    names = [n for n in list_presets() if not (args.tiny and n != "tiny")]
    flat = {name: flatten(get_preset(name).to_dict()) for name in names}
    keys = distinguishing_keys(flat, PRESET_KEYS)
    rows = []
    for name in names:
        n, out_stride = None, "-"
        if not args.no_params:
            try:
                with torch.device("meta"):
                    model = create_model(get_preset(name).model)
                n = count(model)
                out_stride = "x".join(map(str, model.stride))
            except Exception as err:
                out_stride = f"error: {type(err).__name__}: {err}"[:60]
        rows.append([name, _fmt_params(n), out_stride, *(_fmt_value(flat[name].get(k)) for k in keys)])
    print("Presets (columns: the settings that tell them apart; byu-motor recipe PRESET shows all)")
    print(_table(["name", "params", "out stride", *[PRESET_KEYS.get(k, k) for k in keys]], rows))
    return 0


#: The settings always shown for a preset, with their column titles; more follow when these do not tell
#: two presets apart (:func:`distinguishing_keys`).
PRESET_KEYS = {
    "model.encoder": "encoder",
    "model.neck": "neck",
    "model.stride": "stride",
    "data.spacing_a": "spacing A",
    "data.patch_size": "patch",
}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"stride": 16}}`` -> ``{"model.stride": 16}`` (the ``--set`` keys of a config dict)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def distinguishing_keys(flat: dict[str, dict[str, Any]], shown: Iterable[str]) -> list[str]:
    """``shown``, then the fewest further keys that give every preset its own row.

    Args:
        flat: ``{preset: flattened config}`` (:func:`flatten`); the ``name`` key is never used.
        shown: keys always shown, in order.

    Returns:
        ``shown`` and, greedily, the key that splits most presets still alike, until none are (or no key
        can split them).
    """
    keys = list(shown)
    candidates = sorted({k for cfg in flat.values() for k in cfg} - set(keys) - {"name"})

    def distinct(cols: list[str]) -> int:
        return len({tuple(repr(cfg.get(k)) for k in cols) for cfg in flat.values()})

    while distinct(keys) < len(flat):
        best = max(candidates, key=lambda k: distinct([*keys, k]), default=None)
        if best is None or distinct([*keys, best]) == distinct(keys):
            break
        keys.append(best)
        candidates.remove(best)
    return keys


def _fmt_value(value: Any) -> str:
    """A config value in one short cell: ``(64, 64, 64)`` -> ``64x64x64``, ``None`` -> ``-``."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "x".join(_fmt_value(v) for v in value) if value else "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ",".join(f"{k}={_fmt_value(v)}" for k, v in value.items()) or "-"
    return str(value)
