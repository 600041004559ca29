"""Rod-shaped cells of the synthetic tomograms: their geometry, distance fields and rendering."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Rendering works in z-slabs of this many slices so that cell distance fields never need full-volume
# temporaries (a full-size tomogram is 267 M voxels: one float32 copy is 1 GB).
SLAB_Z = 24


@dataclass(frozen=True)
class CellSpec:
    """A rod-shaped cell lying flat in the ice: a capsule around a curved centre line.

    In the "squashed" frame (z multiplied by ``z_squash``) the cell is a tube of circular cross-section,
    so the signed distance to the outer membrane is ``sqrt(d_yx**2 + (z_squash * dz)**2) - radius``.

    Args:
        path_yx: ``(k, 2)`` centre line (y, x) in voxels; ``path_yx[0]`` is the centre of a pole cap.
        z_vox: z of the centre line in voxels (the cell lies flat: constant z).
        radius_nm: outer-membrane radius in the (y, x) plane, nm.
        z_squash: >= 1; the z semi-axis is ``radius_nm / z_squash`` (cells are flattened in thin ice).
        periplasm_nm: distance between outer and inner membrane, nm.
    """

    path_yx: np.ndarray
    z_vox: float
    radius_nm: float
    z_squash: float
    periplasm_nm: float


def segment_distance_2d(points_yx: np.ndarray, path_yx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from points to a polyline, and the nearest polyline point.

    Args:
        points_yx: ``(n, 2)`` query points.
        path_yx: ``(k, 2)`` polyline vertices (k >= 1).

    Returns:
        ``(distance (n,), nearest (n, 2))`` in the units of the inputs.
    """
    pts = np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)
    path = np.asarray(path_yx, dtype=np.float64).reshape(-1, 2)
    a = path[:-1] if len(path) > 1 else path  # (k, 2) segment starts
    ab = (path[1:] - path[:-1]) if len(path) > 1 else np.zeros_like(path)
    denom = np.maximum(np.sum(ab * ab, axis=1), 1e-12)
    rel = pts[:, None, :] - a[None]  # (n, k, 2)
    t = np.clip(np.sum(rel * ab[None], axis=2) / denom, 0.0, 1.0)
    q = a[None] + t[..., None] * ab[None]
    d = np.linalg.norm(pts[:, None, :] - q, axis=2)
    best_k = np.argmin(d, axis=1)
    rows = np.arange(len(pts))
    return d[rows, best_k], q[rows, best_k]


def _distance_map_2d(path_yx: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """float32 ``(y1-y0, x1-x0)`` map of the distance (voxels) from pixel centres to a polyline."""
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    best = np.full((y1 - y0, x1 - x0), np.inf, dtype=np.float32)
    path = np.asarray(path_yx, dtype=np.float32)
    segs = [(path[i], path[i + 1]) for i in range(len(path) - 1)] or [(path[0], path[0])]
    for a, b in segs:
        ab = b - a
        denom = float(ab @ ab)
        if denom == 0:
            t = np.zeros_like(best)
        else:
            t = np.clip(((yy - a[0]) * ab[0] + (xx - a[1]) * ab[1]) / denom, 0.0, 1.0)
        d2 = (yy - a[0] - t * ab[0]) ** 2 + (xx - a[1] - t * ab[1]) ** 2
        np.minimum(best, d2, out=best)
    return np.sqrt(best, out=best)


def membrane_profile_lut(
    cell: CellSpec, voxel_nm: float, cyto: float, peri: float, membrane: float
) -> tuple[np.ndarray, float, float]:
    """Density as a function of the signed distance to the outer membrane, as a lookup table.

    Membranes are Gaussians of 2 nm sigma widened to at least half a voxel with the same integral, so a
    coarse grid shows a fainter, wider line instead of a beaded one (like a downsampled tomogram).

    Returns:
        ``(lut float32, sdf_min_nm, step_nm)``; density of signed distance ``s`` nm is
        ``lut[clip((s - sdf_min_nm) / step_nm)]``.
    """
    step_nm = 0.25
    sdf_min_nm = -(cell.radius_nm + 5.0)
    s = np.arange(sdf_min_nm, 30.0, step_nm, dtype=np.float64)
    sigma = np.hypot(2.0, 0.5 * voxel_nm)
    amp = membrane * 2.0 / sigma
    soft = max(1.5, 0.5 * voxel_nm)
    inner = -cell.periplasm_nm
    outer_m = amp * np.exp(-0.5 * ((s + 2.5) / sigma) ** 2)
    inner_m = amp * np.exp(-0.5 * ((s - inner + 2.5) / sigma) ** 2)
    peri_d = peri / (1 + np.exp((s + 2.5) / soft)) - peri / (1 + np.exp((s - inner + 2.5) / soft))
    cyto_d = cyto / (1 + np.exp((s - inner + 6.0) / soft))
    lut = (outer_m + inner_m + peri_d + cyto_d).astype(np.float32)
    return lut, sdf_min_nm, step_nm


def cell_sdf_at(cell: CellSpec, points_zyx: np.ndarray, spacing_a: float) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (nm, squashed frame) to the outer membrane and the outward normal at points.

    Args:
        cell: the cell.
        points_zyx: ``(n, 3)`` voxel coordinates.
        spacing_a: voxel spacing in Angstrom.

    Returns:
        ``(sdf_nm (n,), normal_zyx (n, 3))``; normals are unit vectors in voxel space.
    """
    pts = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    d_yx, near = segment_distance_2d(pts[:, 1:], cell.path_yx)
    dz = pts[:, 0] - cell.z_vox
    rho = np.sqrt(d_yx**2 + (cell.z_squash * dz) ** 2)
    sdf_nm = rho * spacing_a / 10.0 - cell.radius_nm
    # gradient of sqrt(d_yx^2 + k^2 dz^2): (k^2 dz, y - qy, x - qx) / rho
    normal = np.column_stack([cell.z_squash**2 * dz, pts[:, 1] - near[:, 0], pts[:, 2] - near[:, 1]])
    norm = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.where(norm > 0, normal / np.maximum(norm, 1e-9), np.array([[0.0, 0.0, 1.0]]))
    return sdf_nm, normal


def render_cell(
    vol: np.ndarray, cell: CellSpec, spacing_a: float, lut_args: tuple[float, float, float]
) -> None:
    """Add a cell (cytoplasm, periplasm, double membrane) to ``vol`` (float32 (Z, Y, X)) in place.

    Only the cell's bounding box is touched, slab by slab along z.
    """
    voxel_nm = spacing_a / 10.0
    lut, sdf_min, step = membrane_profile_lut(cell, voxel_nm, *lut_args)
    margin_vox = 30.0 / voxel_nm
    r_vox = cell.radius_nm / voxel_nm
    nz, ny, nx = vol.shape
    lo = cell.path_yx.min(axis=0) - r_vox - margin_vox
    hi = cell.path_yx.max(axis=0) + r_vox + margin_vox
    y0, x0 = (max(0, int(np.floor(v))) for v in lo)
    y1, x1 = (int(min(n, np.ceil(v) + 1)) for v, n in zip(hi, (ny, nx)))
    z0 = max(0, int(np.floor(cell.z_vox - (r_vox + margin_vox) / cell.z_squash)))
    z1 = min(nz, int(np.ceil(cell.z_vox + (r_vox + margin_vox) / cell.z_squash)) + 1)
    if y1 <= y0 or x1 <= x0 or z1 <= z0:
        return
    d_yx = _distance_map_2d(cell.path_yx, y0, y1, x0, x1)
    d_sq = (d_yx * voxel_nm) ** 2
    inv_step = np.float32(1.0 / step)
    n_lut = len(lut)
    for zs in range(z0, z1, SLAB_Z):
        ze = min(z1, zs + SLAB_Z)
        dz_nm = ((np.arange(zs, ze, dtype=np.float32) - cell.z_vox) * cell.z_squash * voxel_nm) ** 2
        rho = d_sq[None, :, :] + dz_nm[:, None, None]
        np.sqrt(rho, out=rho)
        rho -= np.float32(cell.radius_nm + sdf_min)
        rho *= inv_step
        idx = np.clip(rho, 0, n_lut - 1).astype(np.int32)
        vol[zs:ze, y0:y1, x0:x1] += lut[idx]
