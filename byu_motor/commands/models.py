"""`byu-motor models`: list registered encoders, necks, heads and presets with their sizes."""

from __future__ import annotations

import argparse

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

    rows = []
    for name in list_presets():
        if args.tiny and name != "tiny":
            continue
        cfg = get_preset(name)
        m = cfg.model
        n, out_stride = None, "-"
        if not args.no_params:
            try:
                with torch.device("meta"):
                    model = create_model(m)
                n = count(model)
                out_stride = "x".join(map(str, model.stride))
            except Exception as err:
                out_stride = f"error: {type(err).__name__}: {err}"[:60]
        spacing = "x".join(f"{v:g}" for v in cfg.data.spacing_a)
        patch = "x".join(map(str, cfg.data.patch_size))
        stride = "x".join(map(str, m.stride))
        rows.append([name, m.encoder, m.neck, stride, _fmt_params(n), out_stride, spacing, patch])
    print("Presets")
    print(_table(["name", "encoder", "neck", "stride", "params", "out stride", "spacing A", "patch"], rows))
    return 0
