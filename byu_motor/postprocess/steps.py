"""Candidate steps: registered functions that rework one tomogram's candidates after peak decoding.

A step is ``step(candidates, volume, grid, settings) -> candidates``: ``candidates`` are ``(z, y, x, score)``
in original voxels of ``volume`` (uint8 ``(Z, Y, X)``), best first; ``grid`` is ``Grid(volume.shape,
spacing_a)`` at the assumed spacing; ``settings`` is an instance of the step's own settings dataclass. A step
returns a new list, best first. The recipe lists the steps to run, in order, in ``InferConfig.steps``: each
entry a name (default settings) or a mapping ``{"name": ..., field: value, ...}``. The Predictor knows none
of them.

Example (a step that keeps candidates whose score reaches a floor)::

    @dataclass
    class MinScore:
        floor: float = 0.05

    @register_step("min_score", MinScore)
    def min_score(candidates, volume, grid, settings):
        return [c for c in candidates if c[3] >= settings.floor]

    # InferConfig(steps=({"name": "min_score", "floor": 0.1},))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from byu_motor.config import dataclass_from_mapping
from byu_motor.data.grid import Grid
from byu_motor.postprocess.peaks import Candidate

StepFn = Callable[[list[Candidate], np.ndarray, Grid, Any], list[Candidate]]

#: modules whose import registers the built-in steps
_BUILTIN_MODULES = ("byu_motor.postprocess.context",)


@dataclasses.dataclass(frozen=True)
class Step:
    """One configured step of a recipe: its name, function and settings."""

    name: str
    fn: StepFn
    settings: Any

    def __call__(self, candidates: list[Candidate], volume: np.ndarray, grid: Grid) -> list[Candidate]:
        return self.fn(candidates, volume, grid, self.settings)


_REGISTRY: dict[str, tuple[StepFn, type]] = {}


def register_step(name: str, settings: type) -> Callable[[StepFn], StepFn]:
    """Decorator: register ``fn`` as candidate step ``name`` configured by the dataclass ``settings``.

    Raises:
        ValueError: ``name`` is taken or ``settings`` is not a dataclass.
    """
    if not dataclasses.is_dataclass(settings):
        raise ValueError(f"step {name!r}: settings must be a dataclass, got {settings!r}")

    def wrap(fn: StepFn) -> StepFn:
        if name in _REGISTRY and _REGISTRY[name][0] is not fn:
            raise ValueError(f"candidate step {name!r} is registered twice")
        _REGISTRY[name] = (fn, settings)
        return fn

    return wrap


def _load_builtins() -> None:
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_steps() -> list[str]:
    """Names of the registered candidate steps."""
    _load_builtins()
    return sorted(_REGISTRY)


def build_steps(specs: Sequence[str | Mapping[str, Any]]) -> list[Step]:
    """Configured steps for ``InferConfig.steps``, in order.

    Args:
        specs: each a step name, or ``{"name": name, **settings}`` with values cast to the settings' types.

    Raises:
        ValueError: an unknown step (naming the known ones), a bad entry, or settings the step refuses.
    """
    _load_builtins()
    steps = []
    for i, spec in enumerate(specs):
        where = f"infer.steps[{i}]"
        if isinstance(spec, str):
            name, fields = spec, {}
        elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
            name, fields = spec["name"], {k: v for k, v in spec.items() if k != "name"}
        else:
            raise ValueError(f"{where}: expected a step name or a mapping with a 'name', got {spec!r}")
        if name not in _REGISTRY:
            raise ValueError(f"{where}: unknown candidate step {name!r}; known: {', '.join(list_steps())}")
        fn, settings_cls = _REGISTRY[name]
        where = f"{where} ({name})"
        try:
            settings = dataclass_from_mapping(settings_cls, fields, where)
        except ValueError as err:  # the settings' own checks do not know the entry
            raise ValueError(str(err) if str(err).startswith(where) else f"{where}: {err}") from err
        steps.append(Step(name, fn, settings))
    return steps


def run_steps(
    steps: Sequence[Step], candidates: list[Candidate], volume: np.ndarray, grid: Grid
) -> list[Candidate]:
    """Apply ``steps`` in order to ``candidates`` of ``volume`` (original voxels, best first)."""
    for step in steps:
        if not candidates:
            break
        candidates = step(candidates, volume, grid)
    return candidates
