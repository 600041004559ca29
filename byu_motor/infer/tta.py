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
    """The view registered as ``name``; unknown names raise ``KeyError`` listing the known ones.

    ``"a+b"`` composes registered views: ``a`` applied first, then ``b`` (inverted in reverse order), e.g.
    ``"rot90+flip_z"`` is the seed's ``zxy_z`` (rotation by 90 degrees in y-x, then a flip of z).
    """
    if "+" in name:
        return _compose(name, [get_view(part) for part in name.split("+")])
    try:
        return TTA_VIEWS[name]()
    except KeyError:
        raise KeyError(f"unknown TTA view {name!r}; known: {', '.join(sorted(TTA_VIEWS))}") from None


def _compose(name: str, parts: Sequence[View]) -> View:
    """One view applying ``parts`` in order (the inverse undoes them in reverse order)."""

    def forward(t: torch.Tensor) -> torch.Tensor:
        for v in parts:
            t = v.forward(t)
        return t

    def inverse(t: torch.Tensor) -> torch.Tensor:
        for v in reversed(parts):
            t = v.inverse(t)
        return t

    return View(name, forward, inverse, swaps_yx=sum(v.swaps_yx for v in parts) % 2 == 1)


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


def get_views(names: Sequence[str], add_identity: bool = True) -> list[View]:
    """The views for ``names``, identity first (added when missing), duplicates dropped.

    Args:
        names: view names (registered, or compositions ``"a+b"``, see :func:`get_view`).
        add_identity: add the identity view when ``names`` lacks it; ``False``: exactly ``names`` (in their
            order), identity alone when ``names`` is empty.

    Raises:
        KeyError: for an unknown name, listing the known ones.
    """
    if add_identity or not names:
        ordered = ["identity"] + [n for n in names if n != "identity"]
    else:
        ordered = list(names)
    seen: list[str] = []
    for n in ordered:
        if n not in seen:
            seen.append(n)
    return [get_view(n) for n in seen]


def list_views() -> list[str]:
    """Registered view names."""
    return sorted(TTA_VIEWS)


def view_groups(names: Sequence[str], apart: bool, add_identity: bool = True) -> list[tuple[str, ...]]:
    """How one ensemble member's views are split among sliding windows (one candidate list per group).

    Args:
        names: the member's view names.
        apart: one group per view (each decoded into its own candidate list) instead of one group whose
            logits are averaged per window.
        add_identity: as :func:`get_views`.

    Returns:
        ``[names]`` without ``apart``; else ``[(v,) for v in the views get_views(names, add_identity) gives]``.
    """
    if not apart:
        return [tuple(names)]
    return [(v.name,) for v in get_views(names, add_identity)]
