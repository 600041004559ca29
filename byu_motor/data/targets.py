"""Training targets on the model's heatmap grid: Gaussian heatmaps (sigma in Angstrom), points and balls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from byu_motor.data.grid import Grid, as_triple

TARGET_KINDS = ("gaussian", "point", "ball")


def _centres(centres: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    return np.asarray(centres, dtype=np.float64).reshape(-1, 3)


def _boxes(
    shape: Sequence[int], centre: np.ndarray, half_width: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer cell range ``[lo, hi)`` per axis covering ``centre +- half_width``, clipped; None if empty."""
    lo = np.maximum(np.floor(centre - half_width).astype(np.int64), 0)
    hi = np.minimum(np.ceil(centre + half_width).astype(np.int64) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return None
    return lo, hi


def gaussian_heatmap(
    shape: Sequence[int],
    centres: np.ndarray | Sequence[Sequence[float]],
    sigma_vox: float | Sequence[float],
    truncate: float = 3.0,
) -> np.ndarray:
    """Max over motors of ``exp(-sum_a (k_a - c_a)^2 / (2 sigma_a^2))`` at every heatmap cell ``k``.

    Each Gaussian is evaluated only inside its box of ``truncate`` sigmas (separable 1-D factors, one outer
    product per motor), so the cost does not grow with the heatmap size.

    Args:
        shape: heatmap shape ``(d, h, w)`` in cells.
        centres: ``(n, 3)`` motor centres ``(z, y, x)`` in heatmap-cell coordinates (cell ``k``'s centre is
            ``k``); centres outside the heatmap still contribute their tails.
        sigma_vox: Gaussian sigma in cells, scalar or per axis ``(z, y, x)`` (``sigma_a / cell spacing``
            gives the same physical width on every axis).
        truncate: values beyond this many sigmas (per axis) are 0.

    Returns:
        float32 array ``shape`` with values in ``[0, 1]``.
    """
    shape_t = tuple(int(s) for s in shape)
    out = np.zeros(shape_t, dtype=np.float32)
    sigma = np.asarray(as_triple(sigma_vox, "sigma_vox"))
    if np.any(sigma <= 0):
        raise ValueError(f"sigma_vox must be positive, got {sigma_vox!r}")
    for c in _centres(centres):
        box = _boxes(shape_t, c, truncate * sigma)
        if box is None:
            continue
        lo, hi = box
        g = [
            np.exp(-0.5 * ((np.arange(lo[a], hi[a]) - c[a]) / sigma[a]) ** 2).astype(np.float32)
            for a in range(3)
        ]
        blob = g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
        view = out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        np.maximum(view, blob, out=view)
    if truncate > 0:
        # cut the box corners too, so the support is the ellipsoid of `truncate` sigmas, not a cube
        out[out < np.float32(np.exp(-0.5 * truncate**2) * (1 - 1e-4))] = 0.0  # keep exactly-on-edge
    return out


def point_target(shape: Sequence[int], centres: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """1 at the cell containing each motor (nearest cell centre), 0 elsewhere; motors outside are dropped.

    Args:
        shape: heatmap shape ``(d, h, w)``.
        centres: ``(n, 3)`` centres in heatmap-cell coordinates.

    Returns:
        float32 array ``shape``.
    """
    shape_t = tuple(int(s) for s in shape)
    out = np.zeros(shape_t, dtype=np.float32)
    c = _centres(centres)
    if len(c):
        cells = np.floor(c + 0.5).astype(np.int64)
        inside = np.all((cells >= 0) & (cells < np.asarray(shape_t)), axis=1)
        cells = cells[inside]
        out[cells[:, 0], cells[:, 1], cells[:, 2]] = 1.0
    return out


def ball_target(
    shape: Sequence[int],
    centres: np.ndarray | Sequence[Sequence[float]],
    radius_vox: float | Sequence[float],
) -> np.ndarray:
    """1 inside the ellipsoid ``sum_a ((k_a - c_a) / r_a)^2 <= 1`` around each motor (and at its own cell).

    Args:
        shape: heatmap shape ``(d, h, w)``.
        centres: ``(n, 3)`` centres in heatmap-cell coordinates.
        radius_vox: radius in cells, scalar or per axis.

    Returns:
        float32 array ``shape`` of 0/1.
    """
    shape_t = tuple(int(s) for s in shape)
    radius = np.asarray(as_triple(radius_vox, "radius_vox"))
    if np.any(radius <= 0):
        raise ValueError(f"radius_vox must be positive, got {radius_vox!r}")
    out = point_target(shape_t, centres)  # a radius smaller than a cell still marks the motor's cell
    for c in _centres(centres):
        box = _boxes(shape_t, c, radius)
        if box is None:
            continue
        lo, hi = box
        d = [((np.arange(lo[a], hi[a]) - c[a]) / radius[a]) ** 2 for a in range(3)]
        inside = (d[0][:, None, None] + d[1][None, :, None] + d[2][None, None, :]) <= 1.0
        out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][inside] = 1.0
    return out


def smooth_labels(target: np.ndarray, eps: float) -> np.ndarray:
    """Map values from ``[0, 1]`` to ``[eps, 1 - eps]`` (in place on float arrays; returns the array)."""
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"label smoothing must be in [0, 0.5), got {eps}")
    if eps > 0:
        target *= 1.0 - 2.0 * eps
        target += eps
    return target


def heatmap_coords(
    patch_grid: Grid, stride: int | Sequence[int], motors_patch_vox: np.ndarray | Sequence[Sequence[float]]
) -> tuple[Grid, np.ndarray]:
    """The heatmap grid of a patch at ``stride`` and the motors mapped onto it.

    Cell ``k`` covers input voxels ``[k*s, (k+1)*s)`` and its centre is input voxel ``k*s + (s-1)/2``
    (see :meth:`Grid.strided`).

    Args:
        patch_grid: grid of the model input patch ``(D, H, W)``.
        stride: model output stride, scalar or per axis.
        motors_patch_vox: ``(n, 3)`` motors in patch voxels.

    Returns:
        ``(heatmap_grid, motors (n, 3) in heatmap-cell coordinates)``.
    """
    heat = patch_grid.strided(stride)
    return heat, patch_grid.map_to(heat, motors_patch_vox)


def make_target(
    kind: str,
    heatmap_grid: Grid,
    motors_cells: np.ndarray | Sequence[Sequence[float]],
    sigma_a: float,
    label_smoothing: float = 0.0,
    radius_a: float | None = None,
    truncate: float = 3.0,
) -> np.ndarray:
    """Build a training target on ``heatmap_grid``.

    Args:
        kind: ``"gaussian"`` (sigma ``sigma_a`` Angstrom on every axis), ``"point"`` or ``"ball"``
            (radius ``radius_a`` Angstrom, default ``sigma_a``).
        heatmap_grid: grid of the model output (its spacing converts Angstrom to cells per axis).
        motors_cells: ``(n, 3)`` motors in heatmap-cell coordinates (from :func:`heatmap_coords`).
        sigma_a: Gaussian sigma in Angstrom.
        label_smoothing: ``eps``: values mapped to ``[eps, 1 - eps]``.
        radius_a: ball radius in Angstrom.
        truncate: Gaussian support in sigmas.

    Returns:
        float32 array ``heatmap_grid.shape``.
    """
    spacing = np.asarray(heatmap_grid.spacing_a)
    if kind == "gaussian":
        target = gaussian_heatmap(heatmap_grid.shape, motors_cells, sigma_a / spacing, truncate=truncate)
    elif kind == "point":
        target = point_target(heatmap_grid.shape, motors_cells)
    elif kind == "ball":
        target = ball_target(heatmap_grid.shape, motors_cells, (radius_a or sigma_a) / spacing)
    else:
        raise ValueError(f"unknown target kind {kind!r}; choose from {TARGET_KINDS}")
    return smooth_labels(target, label_smoothing)
