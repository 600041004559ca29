"""Reading configs: casting JSON / CLI values to dataclass fields, ``--set`` overrides, older layouts migrated."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

#: the envelope-context fields InferConfig held before they became the ``context_gate`` step's settings
_OLD_CONTEXT_KEYS = {
    "context_gate": "threshold",
    "context_lateral": "lateral",
    "context_floor": "floor",
    "context_sigma_a": "sigma_a",
    "context_radius_a": "radius_a",
}
#: settings removed from the library (they measured no gain); older configs that hold them still load
_REMOVED_INFER_KEYS = ("fusion_fill", "edge_bands")


def migrate_config_dict(d: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored config with older layouts brought up to date (``d`` is not changed).

    The ``infer.context_*`` fields become a ``context_gate`` entry of ``infer.steps`` (when the gate was on);
    the removed ``rescore`` section and ``infer.fusion_fill`` / ``infer.edge_bands`` are dropped.
    """
    if not isinstance(d, dict):
        return d
    d = dict(d)
    d.pop("rescore", None)
    infer = d.get("infer")
    if isinstance(infer, dict):
        infer = {k: v for k, v in infer.items() if k not in _REMOVED_INFER_KEYS}
        old = {new: infer.pop(key) for key, new in _OLD_CONTEXT_KEYS.items() if key in infer}
        if old.get("threshold"):
            infer["steps"] = [*infer.get("steps", []), {"name": "context_gate", **old}]
        d["infer"] = infer
    return d


def dataclass_from_mapping(cls: type, d: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a JSON-like mapping, casting each value to its field's type.

    Raises:
        ValueError: naming ``where`` for an unknown key or a value that cannot be cast.
    """
    return _from_dict(cls, d, where)


def _from_dict(cls: type, d: dict[str, Any], where: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for {cls.__name__}")
    kwargs = {}
    for name, value in d.items():
        kwargs[name] = _cast(hints[name], value, f"{where}.{name}")
    return cls(**kwargs)


def _cast(tp: Any, value: Any, where: str) -> Any:
    """Cast a JSON/CLI value to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _cast(a, value, where)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise ValueError(f"{where}: cannot read {value!r}: {'; '.join(errors)}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        value = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_cast(args[0], v, where) for v in value)
        if len(value) == 1 and len(args) > 1:
            value = value * len(args)  # "16" -> (16, 16, 16)
        if len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_cast(a, v, where) for a, v in zip(args, value))
    if origin is dict:
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (str, Any)
        return {_cast(kt, k, where): _cast(vt, v, where) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{where}: not a boolean: {value!r}")
        return bool(value)
    if tp in (int, float, str):
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{where}: not an integer: {value!r}")
        try:
            return tp(float(value)) if tp is int and isinstance(value, str) and "e" in value else tp(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: cannot read {value!r} as {tp.__name__}") from err
    return value


def apply_override(cfg: Any, assignment: str) -> None:
    """Apply one ``a.b.c=value`` assignment to a nested dataclass, casting to the field type.

    Raises:
        ValueError: naming the assignment when the key path or the value is invalid.
    """
    if "=" not in assignment:
        raise ValueError(f"--set {assignment!r}: expected key=value")
    path, raw = assignment.split("=", 1)
    keys = path.strip().split(".")
    obj = cfg
    for key in keys[:-1]:
        if not dataclasses.is_dataclass(obj) or not hasattr(obj, key):
            raise ValueError(f"--set {assignment!r}: unknown section {key!r}")
        obj = getattr(obj, key)
    last = keys[-1]
    if not dataclasses.is_dataclass(obj) or last not in {f.name for f in dataclasses.fields(obj)}:
        raise ValueError(f"--set {assignment!r}: unknown key {last!r}")
    tp = typing.get_type_hints(type(obj))[last]
    raw = raw.strip()
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    try:
        setattr(obj, last, _cast(tp, value, path))
    except ValueError as err:
        raise ValueError(f"--set {assignment!r}: {err}") from err
