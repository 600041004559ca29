"""Motor look-alikes of the synthetic tomograms (ribosomes, granules, decoys, vesicles, gold, loose flagella).

Each is recorded (when asked) so that :mod:`byu_motor.synth.explain` can name what a wrong prediction hit.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from byu_motor.synth.cells import CellSpec, cell_sdf_at
from byu_motor.synth.shapes import blob, filament, gold, render_motor, sphere
from byu_motor.synth.spec import RING_RADIUS_NM, _voxel_nm

# Look-alike kinds that generate_tomogram(without=...) can leave out (same random numbers, not drawn).
ABLATABLE = ("granule", "decoy")


def ablation_kinds(without: Iterable[str]) -> tuple[str, ...]:
    """Validate look-alike kinds to leave out (see :func:`generate_tomogram`); returns them sorted, unique.

    Raises:
        ValueError: naming any kind not in :data:`ABLATABLE`.
    """
    kinds = set(without)
    unknown = sorted(kinds - set(ABLATABLE))
    if unknown:
        raise ValueError(f"without: unknown look-alike kind(s) {unknown}; choose from {list(ABLATABLE)}")
    return tuple(sorted(kinds))


def _record(objects: list[dict] | None, kind: str, zyx, radius_nm: float, drawn: bool = True) -> None:
    """Append one distractor to ``objects`` (no-op for ``None``): voxel centre rounded to 0.1.

    ``drawn=False`` (left out by ``generate_tomogram(without=...)``) adds ``"drawn": False`` to the record.
    """
    if objects is not None:
        centre = [round(float(v), 1) for v in zyx]
        objects.append({"kind": kind, "zyx": centre, "radius_nm": round(float(radius_nm), 1)})
        if not drawn:
            objects[-1]["drawn"] = False


def _flagellum_path(rng, start: np.ndarray, direction: np.ndarray, voxel_nm: float, shape) -> np.ndarray:
    """A gently curving 3D polyline (voxels) starting at ``start``; flagella stay roughly in the ice plane."""
    length_nm = rng.uniform(150.0, 800.0)
    step_nm = 20.0
    d = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
    turn = rng.normal(0, 0.06, size=3)
    pts = [np.asarray(start, dtype=np.float64)]
    for _ in range(int(length_nm / step_nm)):
        d = d + turn + rng.normal(0, 0.03, size=3)
        d[0] *= 0.8
        d /= np.linalg.norm(d)
        nxt = pts[-1] + d * step_nm / voxel_nm
        if not (0 <= nxt[0] < shape[0] and 0 <= nxt[1] < shape[1] and 0 <= nxt[2] < shape[2]):
            break
        pts.append(nxt)
    return np.array(pts)


def _random_points_in_cell(rng, cell: CellSpec, n: int, shape, spacing_a: float, max_sdf_nm: float):
    """Up to ``n`` voxel points inside ``cell`` deeper than ``-max_sdf_nm`` (rejection sampling)."""
    voxel_nm = _voxel_nm(spacing_a)
    r_vox = cell.radius_nm / voxel_nm
    lo = np.maximum([cell.z_vox - r_vox / cell.z_squash, *(cell.path_yx.min(0) - r_vox)], 0)
    hi = np.minimum([cell.z_vox + r_vox / cell.z_squash, *(cell.path_yx.max(0) + r_vox)], np.array(shape) - 1)
    if np.any(hi <= lo):
        return np.zeros((0, 3))
    pts = rng.uniform(lo, hi, size=(4 * n, 3))
    sdf, _ = cell_sdf_at(cell, pts, spacing_a)
    return pts[sdf < -max_sdf_nm][:n]


def _outside_cells(pts: np.ndarray, cells, spacing_a: float, margin_nm: float) -> np.ndarray:
    keep = np.ones(len(pts), dtype=bool)
    for c in cells:
        keep &= cell_sdf_at(c, pts, spacing_a)[0] > margin_nm
    return pts[keep]


def add_cell_contents(
    vol: np.ndarray,
    cells: list[CellSpec],
    rng: np.random.Generator,
    spacing_a: float,
    objects: list[dict] | None,
    without: tuple[str, ...],
) -> None:
    """Ribosome-like blobs in every cell, sometimes storage granules and a ring-only decoy (in place).

    Kinds in ``without`` are recorded with ``"drawn": False`` and not drawn; their random numbers are.
    """
    shape = vol.shape
    draw_granules, draw_decoys = "granule" not in without, "decoy" not in without
    for cell in cells:
        for p in _random_points_in_cell(rng, cell, int(rng.integers(30, 120)), shape, spacing_a, 50.0):
            blob(vol, p, rng.uniform(4.0, 7.0), spacing_a, rng.uniform(0.2, 0.4))
        if rng.random() < 0.35:
            for p in _random_points_in_cell(rng, cell, int(rng.integers(1, 4)), shape, spacing_a, 120.0):
                radius = rng.uniform(20.0, 60.0)
                amplitude = rng.uniform(0.4, 0.8)
                if draw_granules:
                    sphere(vol, p, radius, spacing_a, amplitude)
                _record(objects, "granule", p, radius, drawn=draw_granules)
        if rng.random() < 0.12:
            for p in _random_points_in_cell(rng, cell, 1, shape, spacing_a, 90.0):
                normal = rng.normal(size=3)
                ring = rng.uniform(*RING_RADIUS_NM)
                if draw_decoys:
                    render_motor(vol, p, normal, spacing_a, 0.8, ring, 30.0, False)
                _record(objects, "decoy", p, ring, drawn=draw_decoys)


def add_free_objects(
    vol: np.ndarray,
    cells: list[CellSpec],
    rng: np.random.Generator,
    spacing_a: float,
    ice_z: tuple[float, float],
    objects: list[dict] | None,
) -> None:
    """Loose flagella and vesicles outside the cells, gold fiducials on the ice surfaces ``ice_z`` (in place)."""
    shape = vol.shape
    nz, ny, nx = shape
    voxel_nm = _voxel_nm(spacing_a)
    z_top, z_bot = ice_z
    n_loose = int(rng.random() < 0.3) * int(rng.integers(1, 3))
    starts = _outside_cells(rng.uniform(0, 1, size=(n_loose, 3)) * shape, cells, spacing_a, 30.0)
    for p in starts:
        path = _flagellum_path(rng, p, rng.normal(size=3), voxel_nm, shape)
        if len(path) > 1:
            filament(vol, path, 10.0, spacing_a, rng.uniform(0.5, 0.8))
    n_ves = int(rng.poisson(1.0))
    pts = rng.uniform([0.2, 0, 0], [0.8, 1, 1], size=(n_ves, 3)) * shape
    for p in _outside_cells(pts, cells, spacing_a, 100.0):
        radius = rng.uniform(20.0, 80.0)
        sphere(vol, p, radius, spacing_a, rng.uniform(0.6, 1.0), shell_nm=4.0)
        _record(objects, "vesicle", p, radius)
    if rng.random() < 0.7:
        n_gold = int(rng.poisson(10))
        gz = np.where(rng.random(n_gold) < 0.5, z_top, z_bot) + rng.normal(0, 10.0 / voxel_nm, n_gold)
        gz = np.clip(gz, 0, nz - 1)
        gyx = rng.uniform(0, 1, size=(n_gold, 2)) * (ny - 1, nx - 1)
        for z, (y, x) in zip(gz, gyx):
            gold(vol, np.array([z, y, x]), spacing_a, rng.uniform(4.0, 6.0), rng)
            _record(objects, "gold", (z, y, x), 5.0)
