"""Test-time augmentation views by name: each maps a window batch and exactly inverts its logits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class View:
    """One TTA view of a window batch ``[B, C, D, H, W]``.

    Args:
        name: registry name.
        forward: transform applied to the input batch.
        inverse: exact inverse applied to the logits ``[B, 1, D/s, H/s, W/s]``; valid because windows are
            multiples of the stride, so the transform maps heatmap cells onto heatmap cells.
        swaps_yx: the view exchanges the H and W axes (needs equal y and x strides).
    """

    name: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    inverse: Callable[[torch.Tensor], torch.Tensor]
    swaps_yx: bool = False


# A plain dict rather than byu_motor.models.registry.Registry: importing byu_motor.models pulls in every
# encoder, which inference of a foreign module does not need.
TTA_VIEWS: dict[str, Callable[[], View]] = {}


def register_view(name: str) -> Callable[[Callable[[], View]], Callable[[], View]]:
    """Decorator registering a zero-argument factory returning a :class:`View` under ``name``."""

    def deco(fn: Callable[[], View]) -> Callable[[], View]:
        if name in TTA_VIEWS:
            raise ValueError(f"TTA view {name!r} is registered twice")
        TTA_VIEWS[name] = fn
        return fn

    return deco


def get_view(name: str) -> View:
    """The view registered as ``name``; unknown names raise ``KeyError`` listing the known ones."""
    try:
        return TTA_VIEWS[name]()
    except KeyError:
        raise KeyError(f"unknown TTA view {name!r}; known: {', '.join(sorted(TTA_VIEWS))}") from None


def _flip(dim: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: torch.flip(t, dims=(dim,))


def _rot(k: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: torch.rot90(t, k, dims=(3, 4))


@register_view("identity")
def _identity() -> View:
    return View("identity", lambda t: t, lambda t: t)


@register_view("flip_z")
def _flip_z() -> View:
    return View("flip_z", _flip(2), _flip(2))


@register_view("flip_y")
def _flip_y() -> View:
    return View("flip_y", _flip(3), _flip(3))


@register_view("flip_x")
def _flip_x() -> View:
    return View("flip_x", _flip(4), _flip(4))


@register_view("rot90")
def _rot90() -> View:
    return View("rot90", _rot(1), _rot(-1), swaps_yx=True)


@register_view("rot180")
def _rot180() -> View:
    return View("rot180", _rot(2), _rot(-2))


@register_view("rot270")
def _rot270() -> View:
    return View("rot270", _rot(3), _rot(-3), swaps_yx=True)


def get_views(names: Sequence[str]) -> list[View]:
    """The views for ``names``, identity first (added when missing), duplicates dropped.

    Raises:
        KeyError: for an unknown name, listing the known ones.
    """
    ordered = ["identity"] + [n for n in names if n != "identity"]
    seen: list[str] = []
    for n in ordered:
        if n not in seen:
            seen.append(n)
    return [get_view(n) for n in seen]


def list_views() -> list[str]:
    """Registered view names."""
    return sorted(TTA_VIEWS)
