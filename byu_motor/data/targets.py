"""Training targets on the model's heatmap grid: Gaussian heatmaps (sigma in Angstrom), points and balls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from byu_motor.data.grid import Grid, as_triple

TARGET_KINDS = ("gaussian", "point", "ball", "gaussian_peak")


def _centres(centres: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    return np.asarray(centres, dtype=np.float64).reshape(-1, 3)


def inside_window(points: np.ndarray | Sequence[Sequence[float]], shape: Sequence[int]) -> np.ndarray:
    """Bool mask ``(n,)`` of the points ``(n, 3)`` (voxels) within ``[0, size - 1]`` on every axis of ``shape``.

    The seed's ``kpts_spatial_crop`` rule (inclusive at both ends), applied to the keypoints of the final
    window: only the motors it keeps are rendered in the seed's target.
    """
    p = _centres(points)
    hi = np.asarray(shape, dtype=np.float64) - 1.0
    return np.all((p >= 0.0) & (p <= hi), axis=1)


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
        kind: ``"gaussian"`` (sigma ``sigma_a`` Angstrom on every axis), ``"point"``, ``"ball"``
            (radius ``radius_a`` Angstrom, default ``sigma_a``) or ``"gaussian_peak"`` (the seed's blob:
            each motor's blob scaled so its peak cell is 1.0, cut at the 99.9 % ellipsoid; ``truncate`` unused;
            the seed's target also drops the motors outside the patch first, see :func:`inside_window`).
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
    elif kind == "gaussian_peak":
        target = peak_gaussian_heatmap(heatmap_grid.shape, motors_cells, np.diag((sigma_a / spacing) ** 2))
    elif kind == "point":
        target = point_target(heatmap_grid.shape, motors_cells)
    elif kind == "ball":
        target = ball_target(heatmap_grid.shape, motors_cells, (radius_a or sigma_a) / spacing)
    else:
        raise ValueError(f"unknown target kind {kind!r}; choose from {TARGET_KINDS}")
    return smooth_labels(target, label_smoothing)


# 99.9 % quantile of chi-square with 3 degrees of freedom: the seed truncates each blob at this ellipsoid
CHI2_3_999 = 16.266


def peak_gaussian_heatmap(
    shape: Sequence[int],
    centres: np.ndarray | Sequence[Sequence[float]],
    covariances: np.ndarray | float,
    chi2_cut: float = CHI2_3_999,
) -> np.ndarray:
    """Max over motors of Gaussian blobs each scaled so that ITS peak cell is exactly 1.0 (the seed's blobs).

    A blob is ``exp(-d^2 / 2)`` with ``d^2 = (k - c)^T C^-1 (k - c)`` at cell ``k``, zero where
    ``d^2 > chi2_cut``, then divided by its largest value over the cells of its own support (whether or not
    they lie inside ``shape``), so a motor between cell centres still has one cell at 1.0. Every centre given
    is rendered, and one outside the heatmap leaves its tail; the seed's target is this over only the motors
    inside the patch (:func:`inside_window`, which the caller applies), so it has no such tails.

    Args:
        shape: heatmap shape ``(d, h, w)`` in cells.
        centres: ``(n, 3)`` motor centres in heatmap-cell coordinates (cell ``k``'s centre is ``k``).
        covariances: ``(n, 3, 3)`` or ``(3, 3)`` covariance in cells^2, or a scalar sigma in cells.
        chi2_cut: squared Mahalanobis radius of the support (default: 99.9 % of chi-square(3), ~4.03 sigma).

    Returns:
        float32 array ``shape`` with values in ``[0, 1]``.
    """
    shape_t = tuple(int(s) for s in shape)
    out = np.zeros(shape_t, dtype=np.float32)
    c_all = _centres(centres)
    cov = np.asarray(covariances, dtype=np.float64)
    if cov.ndim == 0:
        cov = np.eye(3) * float(cov) ** 2
    cov = np.broadcast_to(cov, (len(c_all), 3, 3))
    for c, s in zip(c_all, cov):
        if np.any(np.linalg.eigvalsh(s) <= 0):
            raise ValueError(f"covariance must be positive definite, got {s.tolist()}")
        half = np.sqrt(chi2_cut * np.diag(s))  # the ellipsoid's extent per axis
        lo = np.floor(c - half).astype(np.int64)
        hi = np.ceil(c + half).astype(np.int64) + 1
        axes = [np.arange(lo[a], hi[a]) - c[a] for a in range(3)]
        d = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        m2 = np.einsum("...i,ij,...j->...", d, np.linalg.inv(s), d)
        blob = np.exp(-0.5 * m2)
        blob /= blob.max()
        blob[(m2 > chi2_cut) & (blob < 1.0)] = (
            0.0  # the peak cell stays, even for a blob narrower than a cell
        )
        a, b = np.maximum(lo, 0), np.minimum(hi, np.asarray(shape_t))
        if np.any(b <= a):
            continue
        src = blob[tuple(slice(x - l0, y - l0) for x, y, l0 in zip(a, b, lo))].astype(np.float32)
        view = out[a[0] : b[0], a[1] : b[1], a[2] : b[2]]
        np.maximum(view, src, out=view)
    return out
