"""The seed's motor-safe coarse dropout (yagm ``RandCoarseDropoutWithKeypoints``, ``remove="patch"``).

Holes are drawn one at a time. A hole is rejected when some motor lies within ``[start - m, end - 1 + m]`` on
every axis, ``m`` that motor's per-axis margin (:func:`seed_dropout_margins`: the 90 % ellipsoid of its
covariance after zoom and affine). A rejected hole is redrawn; after 10 rejections in a row no more holes are
made, and the holes accepted so far are kept. Each draw's size is ``U{lower, max}`` per axis where ``lower`` is
the size drawn just before (accepted or not; the first time the minimum): the seed reuses its size variable
as the next lower bound, so the sizes of one call never shrink.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: ``sqrt(chi2.ppf(0.9, df=3))``: the seed's margin covers the 90 % ellipsoid of each motor
CHI_3_090 = 2.500278
DROPOUT_HOLES, DROPOUT_SIZE_A, DROPOUT_TRIES = (3, 8), (500.0, 2000.0), 10


def hole_size_bounds(spacing_a: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest hole ``(3,)`` in voxels of ``spacing_a`` ``(3,)`` Angstrom: ``500 // s``, ``2000 // s``."""
    s = np.asarray(spacing_a, dtype=np.float64)
    lo, hi = (np.maximum(np.floor(a / s), 1).astype(np.int64) for a in DROPOUT_SIZE_A)
    return lo, np.maximum(hi, lo)


def seed_dropout_margins(cov: np.ndarray) -> np.ndarray:
    """Per-axis margin ``(..., 3)`` in voxels of motors with covariance ``(..., 3, 3)`` in voxels^2.

    The seed's ``cal_range_in_conf_interval(cov, conf_interval=0.9)``: the principal semi-axes of the 90 %
    ellipsoid (``sqrt(lambda_k) * 2.5003 * v_k``), then per axis the largest of their absolute components
    (``2.5 sigma`` on each axis for a diagonal covariance).
    """
    lam, vec = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    axes = vec * (np.sqrt(np.clip(lam, 0.0, None)) * CHI_3_090)[..., None, :]  # columns: semi-axes
    return np.abs(axes).max(axis=-1)


def _near(motors: np.ndarray, margins: np.ndarray, start: np.ndarray, end: np.ndarray) -> bool:
    """Whether a motor lies within ``[start - m, end - 1 + m]`` on every axis."""
    inside = (motors >= start - margins) & (motors <= end - 1 + margins)
    return bool(np.any(np.all(inside, axis=1)))


def draw_holes(
    shape: Sequence[int],
    motors: np.ndarray,
    margins: np.ndarray | float,
    size_bounds: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The seed's holes ``[(start (3,), end (3,))]`` in voxels of a patch ``shape`` ``(D, H, W)``.

    Args:
        shape: patch shape.
        motors: ``(n, 3)`` motors in patch voxels (those outside the patch count too).
        margins: per-motor per-axis margins ``(n, 3)``, ``(3,)`` or a scalar, in voxels.
        size_bounds: ``(lo (3,), hi (3,))`` hole size range in voxels (:func:`hole_size_bounds`).
        rng: random generator.
    """
    dims = np.asarray(shape, dtype=np.int64)
    pts = np.asarray(motors, dtype=np.float64).reshape(-1, 3)
    m = np.broadcast_to(np.asarray(margins, dtype=np.float64), pts.shape)
    n_holes = int(rng.integers(DROPOUT_HOLES[0], DROPOUT_HOLES[1] + 1))
    size, hi = np.asarray(size_bounds[0], np.int64), np.asarray(size_bounds[1], np.int64)
    holes: list[tuple[np.ndarray, np.ndarray]] = []
    tries = DROPOUT_TRIES
    while len(holes) < n_holes:
        size = rng.integers(size, hi + 1)  # the previous draw is the next lower bound (the seed's ratchet)
        valid = np.minimum(size, dims)
        start = np.array([rng.integers(0, d - v + 1) if d > v else 0 for d, v in zip(dims, valid)])
        end = start + valid
        if _near(pts, m, start, end):
            tries -= 1
            if tries <= 0:
                break
        else:
            holes.append((start, end))
            tries = DROPOUT_TRIES
    return holes


def fill_holes(
    t: torch.Tensor, holes: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator
) -> torch.Tensor:
    """Fill each hole of ``t`` ``(C, D, H, W)`` in place with uniform noise in ``[0, 255)``, in order."""
    for start, end in holes:
        box = (slice(None), *(slice(int(a), int(b)) for a, b in zip(start, end)))
        noise = rng.uniform(0.0, 255.0, size=t[box].shape)
        t[box] = torch.from_numpy(noise).to(t.dtype)
    return t
