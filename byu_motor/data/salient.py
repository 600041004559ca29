"""Salient points: the most blob-like objects of a tomogram, used as centres of hard negative patches.

A detector trained on uniformly random negative crops rarely sees the few objects that look like a motor
(dense granules, ring-shaped complexes, gold beads, reconstruction edges): they fill a tiny part of the
volume. Those objects are exactly the strongest responses of a band-pass blob filter at the motor's size,
so they can be found without a model, once per training tomogram, and oversampled
(``TrainConfig.salient_ratio``).

The filter is a difference of Gaussians (DoG) on a block-averaged copy of the volume (about
``radius_a / 2`` per coarse voxel, so a full-size tomogram costs the same as a small one); dense (dark) and
bright blobs both count, so inverted tomograms work too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from byu_motor.data.grid import as_triple


def _block_mean(volume: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    """float32 block means of ``volume`` over ``factor`` voxels per axis (trailing partial blocks dropped).

    Reads ``volume`` (a memmap is fine) in slabs of ``factor[0]`` z-slices to bound memory.
    """
    fz, fy, fx = factor
    nz, ny, nx = (s // f for s, f in zip(volume.shape, factor))
    out = np.empty((nz, ny, nx), dtype=np.float32)
    for k in range(nz):
        slab = np.asarray(volume[k * fz : (k + 1) * fz, : ny * fy, : nx * fx], dtype=np.float32)
        out[k] = slab.reshape(fz, ny, fy, nx, fx).mean(axis=(0, 2, 4))
    return out


def far_mask(
    points: np.ndarray, others: np.ndarray, spacing_a: float | Sequence[float], distance_a: float
) -> np.ndarray:
    """Boolean ``(k,)``: which rows of ``points`` (``(k, 3)`` voxels) lie farther than ``distance_a`` Angstrom
    from every row of ``others`` (``(n, 3)`` voxels of the same grid); all True when ``others`` is empty."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    others = np.asarray(others, dtype=np.float64).reshape(-1, 3)
    if not len(points) or not len(others):
        return np.ones(len(points), dtype=bool)
    spacing = np.asarray(as_triple(spacing_a, "spacing_a"), dtype=np.float64)
    d = np.linalg.norm((points[:, None, :] - others[None, :, :]) * spacing, axis=2).min(axis=1)
    return d > distance_a


def far_from(
    points: np.ndarray, others: np.ndarray, spacing_a: float | Sequence[float], distance_a: float
) -> np.ndarray:
    """The rows of ``points`` (``(k, 3)`` voxels) farther than ``distance_a`` Angstrom from every row of
    ``others`` (``(n, 3)`` voxels of the same grid); all of them when ``others`` is empty."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return points[far_mask(points, others, spacing_a, distance_a)]


def salient_points(
    volume: np.ndarray,
    spacing_a: float | Sequence[float],
    radius_a: float = 250.0,
    max_points: int = 64,
    exclude: np.ndarray | None = None,
    exclude_a: float = 1000.0,
) -> np.ndarray:
    """Centres of the strongest blob-like objects of ``volume``, strongest first.

    Args:
        volume: ``(Z, Y, X)`` grey volume (uint8 or float; a memmap is read slab by slab).
        spacing_a: voxel spacing of ``volume`` in Angstrom (scalar or per axis).
        radius_a: radius of the objects looked for (a motor is about 250 A).
        max_points: at most this many points.
        exclude: ``(n, 3)`` voxel positions (e.g. motors) whose neighbourhood is skipped.
        exclude_a: radius of that neighbourhood in Angstrom.

    Returns:
        float64 ``(k, 3)`` positions in voxels of ``volume`` (``k <= max_points``; ``(0, 3)`` for a volume
        smaller than a few objects).
    """
    spacing = np.asarray(as_triple(spacing_a, "spacing_a"), dtype=np.float64)
    if radius_a <= 0 or np.any(spacing <= 0):
        raise ValueError(f"radius_a and spacing_a must be > 0, got {radius_a} and {tuple(spacing)}")
    factor = tuple(int(f) for f in np.maximum(1, np.floor(radius_a / 2.0 / spacing)))
    coarse = _block_mean(volume, factor)  # type: ignore[arg-type]
    coarse_spacing = spacing * np.asarray(factor)
    r_vox = radius_a / coarse_spacing
    if coarse.size == 0 or np.any(np.asarray(coarse.shape) < 3):
        return np.zeros((0, 3), dtype=np.float64)
    sigma = 0.6 * r_vox
    dog = ndimage.gaussian_filter(coarse, sigma, mode="nearest")
    dog -= ndimage.gaussian_filter(coarse, 2.0 * sigma, mode="nearest")
    response = np.abs(dog, out=dog)
    size = tuple(int(2 * max(1, round(r)) + 1) for r in r_vox)
    peaks = (response == ndimage.maximum_filter(response, size=size, mode="nearest")) & (response > 0)
    # the volume's faces (reconstruction edges, the ice surfaces) respond strongly everywhere; patch sampling
    # covers them already (see PatchDataset), so objects are looked for at least one radius inside
    for axis, r in enumerate(r_vox):
        m = min(int(np.ceil(r)), (coarse.shape[axis] - 1) // 2)
        if m > 0:
            sl = [slice(None)] * 3
            sl[axis] = slice(0, m)
            peaks[tuple(sl)] = False
            sl[axis] = slice(coarse.shape[axis] - m, None)
            peaks[tuple(sl)] = False
    idx = np.argwhere(peaks)
    order = np.argsort(-response[peaks], kind="stable")
    points = (idx[order].astype(np.float64) + 0.5) * np.asarray(factor) - 0.5
    if exclude is not None:
        points = far_from(points, exclude, spacing, exclude_a)
    return points[:max_points]
