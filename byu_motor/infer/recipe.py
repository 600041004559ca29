"""The checkpoint is the recipe: resolve the inference settings of one checkpoint or an ensemble.

Every checkpoint stores the ``infer`` section it was trained with (test spacing, windows, TTA views, decoding,
candidate steps, threshold rule), so predicting needs no ``--set``. For an ensemble the settings split three
ways:

- **per member** (:data:`MEMBER_KEYS`, plus its ``weight``): the TTA views (``tta``), the window
  (``patch_size``), the decoding stride (``decode_upsample``: a 3D member's stride-16 logits decoded at
  stride 8 beside a 2D member's own (4, 8, 8) grid) and the peak floor of its own candidate lists
  (``peak_floor``: the seed's 0.02 for 3D, 0.01 for 2D) of each checkpoint, kept in ``InferConfig.members``
  under the checkpoint's path. The
  ensemble's ``tta`` is the union of the members' views, which the time budget sheds from the end.
- **how this machine runs it** (:data:`RUN_KEYS`: precision, compilation, batching, prefetching, budget
  reserve, previews): the first member's; they do not change what is predicted.
- **ensemble-wide**: everything else (assumed test spacing and its policy, scales and their merge, overlap,
  the ensemble merge and fusion radius, decoding, candidate steps, the threshold rule). The members must agree
  on each; a disagreement is refused, naming the checkpoints, the key and their values, unless an override
  sets the key for all of them.

An ensemble can be written down once as a JSON file (:func:`read_recipe_file`)::

    {"members": [{"checkpoint": "fold0/best.pt", "weight": 1.0, "set": ["infer.tta=flip_x"]},
                 {"checkpoint": "fold1/best.pt"}],
     "set": ["infer.threshold=fixed", "infer.threshold_value=0.3"]}

Checkpoint paths are relative to the file's folder. A member's ``set`` applies to it alone, the top-level
``set`` and the command line's ``--set`` to every member (in that order, so the command line wins).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from byu_motor.config import INFER_RUN_FIELDS, Config, InferConfig, apply_override

#: settings each member keeps for itself (besides its weight)
MEMBER_KEYS = ("tta", "patch_size", "decode_upsample", "peak_floor")
#: settings of the machine running the ensemble: the first member's, never checked for agreement
RUN_KEYS = INFER_RUN_FIELDS


@dataclass
class Member:
    """One checkpoint of an ensemble recipe.

    Args:
        checkpoint: path of the checkpoint file.
        weight: its weight in the ensemble merge (> 0).
        sets: ``infer.KEY=VALUE`` overrides for this member only.
    """

    checkpoint: str
    weight: float = 1.0
    sets: list[str] = field(default_factory=list)


@dataclass
class Recipe:
    """An ensemble written down: its members and the overrides that apply to all of them."""

    members: list[Member]
    sets: list[str] = field(default_factory=list)


def infer_override(cfg: Config, item: str, where: str = "--set") -> None:
    """Apply one inference override to ``cfg`` in place; a bare ``KEY=VALUE`` means ``infer.KEY=VALUE``.

    Raises:
        ValueError: for a key outside ``infer`` (model and data settings come from each checkpoint), an
            unknown key or a bad value, naming ``where``.
    """
    key = item.split("=", 1)[0].strip()
    if "." not in key:
        item = f"infer.{item}"
    elif not key.startswith("infer."):
        raise ValueError(
            f"{where} {item!r}: only infer.* applies at prediction time (model and data settings come from "
            "each checkpoint)"
        )
    try:
        apply_override(cfg, item)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


def read_recipe_file(path: str | os.PathLike) -> Recipe:
    """Read an ensemble recipe JSON file (see the module docs); checkpoint paths become relative to its folder.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not JSON, or an entry of the wrong shape, naming the file and the entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"recipe {path}: not a JSON file ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("members"), list) or not data["members"]:
        raise ValueError(f"recipe {path}: expected an object with a non-empty 'members' list")
    unknown = sorted(set(data) - {"members", "set"})
    if unknown:
        raise ValueError(f"recipe {path}: unknown key(s) {unknown}; expected 'members' and 'set'")
    members = [_member(entry, path, i) for i, entry in enumerate(data["members"])]
    return Recipe(members, _string_list(data.get("set", []), f"recipe {path}: 'set'"))


def _member(entry: Any, path: Path, i: int) -> Member:
    where = f"recipe {path}: members[{i}]"
    if isinstance(entry, str):
        entry = {"checkpoint": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("checkpoint"), str):
        raise ValueError(f"{where}: expected a checkpoint path or an object with a 'checkpoint' path")
    unknown = sorted(set(entry) - {"checkpoint", "weight", "set"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected 'checkpoint', 'weight' and 'set'")
    weight = entry.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
        raise ValueError(f"{where}: weight must be a positive number, got {weight!r}")
    ckpt = Path(entry["checkpoint"])
    ckpt = ckpt if ckpt.is_absolute() else path.parent / ckpt
    return Member(str(ckpt), float(weight), _string_list(entry.get("set", []), f"{where}: 'set'"))


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where} must be a list of KEY=VALUE strings, got {value!r}")
    return list(value)


def _checkpoint_infer(path: str) -> InferConfig:
    from byu_motor.models.checkpoint import read_checkpoint_config

    return read_checkpoint_config(path).config.infer


def resolve_infer(
    members: Sequence[Member],
    overrides: Sequence[str] = (),
    read_infer: Callable[[str], InferConfig] = _checkpoint_infer,
) -> InferConfig:
    """The inference settings of an ensemble: each checkpoint's recipe, its own overrides, then ``overrides``.

    Args:
        members: the checkpoints, most valuable first.
        overrides: ``infer.KEY=VALUE`` (or ``KEY=VALUE``) applied to every member after its own.
        read_infer: ``read_infer(checkpoint) -> InferConfig`` (default: the checkpoint's stored ``infer``).

    Returns:
        The first member's settings with the ensemble-wide keys checked for agreement, ``tta`` the union of
        the members' views and ``members`` holding each member's ``weight``, ``tta``, ``patch_size``,
        ``decode_upsample`` and ``peak_floor``.

    Raises:
        ValueError: no members, a checkpoint listed twice, a bad override, or members that disagree on an
            ensemble-wide key (naming the checkpoints, the key and the values).
    """
    if not members:
        raise ValueError("an ensemble needs at least one checkpoint")
    paths = [str(m.checkpoint) for m in members]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise ValueError(f"checkpoint(s) listed twice in one ensemble: {twice}")
    configs = []
    for m in members:
        cfg = Config(infer=dataclasses.replace(read_infer(m.checkpoint), members={}))
        for item in m.sets:
            infer_override(cfg, item, f"member {m.checkpoint}: set")
        for item in overrides:
            infer_override(cfg, item)
        configs.append(cfg.infer)
    _check_agreement(paths, configs)
    views = list(dict.fromkeys(v for c in configs for v in c.tta))
    per_member = {
        p: {
            "weight": float(m.weight),
            "tta": list(c.tta),
            "patch_size": c.patch_size,
            "decode_upsample": c.decode_upsample,
            "peak_floor": c.peak_floor,
        }
        for p, m, c in zip(paths, members, configs)
    }
    return dataclasses.replace(configs[0], tta=tuple(views), patch_size=None, members=per_member)


def _check_agreement(paths: Sequence[str], configs: Sequence[InferConfig]) -> None:
    free = set(MEMBER_KEYS) | set(RUN_KEYS) | {"members"}
    for f in dataclasses.fields(InferConfig):
        if f.name in free:
            continue
        values = [getattr(c, f.name) for c in configs]
        if any(v != values[0] for v in values[1:]):
            names = [Path(p).name for p in paths]
            names = names if len(set(names)) == len(names) else list(paths)
            listed = ", ".join(f"{n}: {v!r}" for n, v in zip(names, values))
            raise ValueError(
                f"the checkpoints disagree on the ensemble-wide setting infer.{f.name} ({listed}); choose one "
                f"for all with --set infer.{f.name}=VALUE"
            )


def apply_member(spec: Any, settings: dict[str, Any] | None) -> Any:
    """``spec`` (a :class:`byu_motor.infer.spec.ModelSpec`) with a member's ``weight``, views, window,
    ``decode_upsample`` and ``peak_floor`` from ``InferConfig.members`` (a copy; ``spec`` itself, e.g. a cached
    one, is not changed)."""
    if not settings:
        return spec
    patch = settings.get("patch_size")
    return dataclasses.replace(
        spec,
        weight=float(settings.get("weight", spec.weight)),
        views=tuple(settings["tta"]) if "tta" in settings else spec.views,
        patch_size=tuple(patch) if patch is not None else spec.patch_size,
        decode_upsample=settings.get("decode_upsample", spec.decode_upsample),
        peak_floor=settings.get("peak_floor", spec.peak_floor),
    )


def recipe_dict(members: Sequence[Member], config: InferConfig) -> dict[str, Any]:
    """A JSON-ready view of a resolved ensemble: ``{"members": [...], "infer": {...}}``."""
    infer = Config(infer=config).to_dict()["infer"]
    return {"members": [dataclasses.asdict(m) for m in members], "infer": infer}
