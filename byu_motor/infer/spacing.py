"""Voxel spacing policy for test tomograms, whose spacing the competition does not give."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from byu_motor.config import InferConfig

log = logging.getLogger(__name__)

SPACING_POLICIES = ("fixed", "estimate", "longest_edge")

# Shapes (z, y, x) of the real train set whose spacing is (nearly) unique: at least 70% of the tomograms
# of that shape share the spacing listed here (counts from train_labels.csv: 648 tomograms). A HEURISTIC:
# the hidden test set may reuse a shape with another spacing. Shapes shared by several common spacings
# (e.g. (300, 960, 928): 13.1 x145, 15.6 x80, 16.8 x67) are absent, so they fall back to the fixed value.
KNOWN_SHAPE_SPACING_A: dict[tuple[int, int, int], float] = {
    (300, 959, 928): 15.6,  # 70 of 70
    (500, 924, 956): 19.7,  # 48 of 64
    (500, 928, 960): 13.1,  # 21 of 21
    (500, 1024, 1440): 13.3,  # 18 of 18
    (500, 1912, 1847): 6.5,  # 2 of 2
    (494, 1912, 1847): 6.5,  # 1 of 1
    (800, 927, 959): 13.1,  # 10 of 10
    (800, 928, 960): 13.1,  # 59 of 80
}


def estimate_spacing(shape: Sequence[int]) -> float | None:
    """Spacing in Angstrom that train tomograms of this exact shape (almost always) have, else ``None``.

    Args:
        shape: ``(Z, Y, X)`` of the original volume.
    """
    return KNOWN_SHAPE_SPACING_A.get(tuple(int(n) for n in shape))


def _scalar(spacing_a: float | Sequence[float]) -> float:
    if isinstance(spacing_a, (int, float)):
        return float(spacing_a)
    values = [float(v) for v in spacing_a]
    # Models are trained isotropic; with an anisotropic spacing the in-plane (y, x) value sets the scale
    # of the motor on the slices, which is what the longest edge (always y or x here) measures.
    return max(values[-2:]) if len(values) >= 2 else values[0]


def resolve_spacing(
    shape: Sequence[int], cfg: InferConfig, model_spacing_a: float | Sequence[float] | None = None
) -> float:
    """The voxel spacing in Angstrom assumed for a test tomogram, by ``cfg.spacing_policy``.

    - ``fixed``: ``cfg.test_spacing_a`` (13.1 A by default: what competitors inferred for the test set).
    - ``estimate``: :func:`estimate_spacing` from the shape (train-set lookup, a heuristic); unknown
      shapes fall back to ``cfg.test_spacing_a``.
    - ``longest_edge``: the spacing that maps the longest edge onto ``cfg.longest_edge`` voxels at the
      model's spacing, i.e. ``longest_edge * model_spacing_a / max(shape)`` (the nnU-Net-style "resize the
      longest edge to 512", expressed as an assumed spacing so the rest of the pipeline is unchanged).

    Args:
        shape: ``(Z, Y, X)`` of the original volume in voxels.
        cfg: inference settings.
        model_spacing_a: the model's training spacing in Angstrom (needed by ``longest_edge``).

    Returns:
        Assumed spacing in Angstrom per voxel (isotropic).
    """
    policy = cfg.spacing_policy
    if policy == "fixed":
        return float(cfg.test_spacing_a)
    if policy == "estimate":
        spacing = estimate_spacing(shape)
        return float(cfg.test_spacing_a) if spacing is None else spacing
    if policy == "longest_edge":
        if model_spacing_a is None:
            raise ValueError("spacing_policy 'longest_edge' needs the model's spacing")
        if cfg.longest_edge < 1:
            raise ValueError(f"infer.longest_edge must be >= 1, got {cfg.longest_edge}")
        return cfg.longest_edge * _scalar(model_spacing_a) / max(int(n) for n in shape)
    raise ValueError(f"unknown infer.spacing_policy {policy!r}; expected one of {SPACING_POLICIES}")
