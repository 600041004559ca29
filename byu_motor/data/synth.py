"""Synthetic cryo-ET tomograms with known flagellar motors, written in the competition layout.

A tomogram is rendered as a density volume (dense = positive): rod-shaped cells with a double membrane
whose pole carries the motors (bell-shaped, oriented along the membrane normal, often with a flagellum),
plus distractors (ribosome-like blobs, storage granules, vesicles, loose flagella, rare ring-only
decoys, gold fiducials with streaks). Then the missing wedge (z elongation and blur), a CTF-like
band-pass, correlated noise scaled by ``difficulty``, ice gradient and reconstruction edge bands, and a
per-tomogram percentile stretch to uint8 with dense = dark. Distributions of shapes, spacings, motor
counts and positions are those of the real train set (constants below, from COMPETITION.md).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from byu_motor.data import synth_render as R
from byu_motor.data.io import write_tomogram
from byu_motor.data.layout import LABEL_COLUMNS, SOLUTION_COLUMNS, SUBMISSION_COLUMNS

# (z, y, x, spacing_a, number of real train tomograms): the joint shape / spacing table of the real set.
SHAPE_SPACING_TABLE: tuple[tuple[int, int, int, float, int], ...] = (
    (300, 960, 928, 13.1, 145),
    (300, 960, 928, 15.6, 80),
    (300, 959, 928, 15.6, 70),
    (300, 960, 928, 16.8, 67),
    (800, 928, 960, 13.1, 59),
    (500, 924, 956, 19.7, 48),
    (300, 928, 928, 13.1, 24),
    (500, 928, 960, 13.1, 21),
    (800, 928, 960, 16.1, 21),
    (300, 928, 928, 15.6, 19),
    (500, 1024, 1440, 13.3, 18),
    (500, 924, 956, 16.1, 16),
    (300, 928, 928, 16.8, 12),
    (800, 927, 959, 13.1, 10),
    (800, 928, 928, 19.3, 9),
    (300, 960, 928, 19.2, 7),
    (500, 960, 928, 16.8, 6),
    (800, 928, 928, 13.1, 3),
    (500, 1912, 1847, 6.5, 3),
    (300, 928, 928, 13.2, 1),
    (400, 960, 928, 15.6, 1),
    (600, 928, 928, 19.3, 1),
    (300, 924, 956, 19.7, 1),
    (300, 960, 928, 16.1, 1),
)
# Motors per train tomogram in the real set (648 tomograms); test tomograms hold 0 or 1 (about half each).
TRAIN_MOTOR_COUNTS: dict[int, int] = {0: 286, 1: 317, 2: 26, 3: 6, 4: 9, 6: 3, 10: 1}
TEST_MOTOR_PROB = 0.5
# Competitors inferred the hidden test spacing to be about 13.1 A: most synthetic test tomograms use it.
TEST_SPACING_13_1_PROB = 0.7
TEST_SPACING_A = 13.1  # the common test spacing (before scaling)
INVERTED_PROB = 0.05
WRAPPED_PROB = 0.03
# Motor position: z fraction ~ N(0.47, 0.18) (real median 0.46, 5-95th pct 0.18-0.78); y/x fractions
# ~ N(0.52, 0.2) (real 5-95th pct 0.15-0.89); at least 37 nm from the XY edges; >= 45 nm apart.
MOTOR_Z_FRAC = (0.47, 0.18)
MOTOR_YX_FRAC = (0.52, 0.20)
MIN_EDGE_NM = 37.0
MIN_MOTOR_SEPARATION_NM = 45.0
CELL_RADIUS_NM = (150.0, 450.0)
PERIPLASM_NM = (25.0, 35.0)
RING_RADIUS_NM = (20.0, 28.0)
# Look-alike kinds that generate_tomogram(without=...) can leave out (same random numbers, not drawn).
ABLATABLE = ("granule", "decoy")
# Depth of the label point (middle of the bell) below the outer membrane = periplasm + this.
MOTOR_BELOW_INNER_NM = 10.5
# Noise std (density units, membrane peak ~1) at difficulty 1 on a 13.1 A grid; coarser grids average
# the noise down (partly: reconstruction noise is spatially correlated).
NOISE_STD_REF = 0.5
NOISE_REF_SPACING_A = 13.1


@dataclass
class SynthSpec:
    """Everything drawn for one synthetic tomogram before rendering.

    Args:
        tomo_id: ``tomo_`` + 6 hex characters.
        split: ``"train"`` or ``"test"``.
        shape: ``(Z, Y, X)`` voxels.
        spacing_a: voxel spacing, Angstrom.
        motors: ``(n, 3)`` float64 motor centres (z, y, x) in voxels (integers, as in real labels).
        cells: cells to draw; the motors sit in the envelope of a pole of one of them.
        inverted: contrast inverted (dense = bright).
        wrapped: wrongly quantised: stored = (correct - 127) mod 256.
    """

    tomo_id: str
    split: str
    shape: tuple[int, int, int]
    spacing_a: float
    motors: np.ndarray
    cells: list[R.CellSpec] = field(default_factory=list)
    inverted: bool = False
    wrapped: bool = False


def _voxel_nm(spacing_a: float) -> float:
    return spacing_a / 10.0


def _cell_path(
    rng: np.random.Generator, pole_yx: np.ndarray, axis_angle: float, voxel_nm: float
) -> np.ndarray:
    """Curved centre line (k, 2) starting at the pole cap centre and heading away from ``axis_angle``."""
    length_nm = rng.uniform(1500.0, 4000.0)
    step_nm = 60.0
    curvature = rng.choice([-1, 1]) / rng.uniform(1500.0, 6000.0)  # 1/nm
    heading = axis_angle + np.pi  # from the pole into the cell body
    pts = [np.asarray(pole_yx, dtype=np.float64)]
    for _ in range(int(length_nm / step_nm)):
        heading += curvature * step_nm
        pts.append(pts[-1] + step_nm / voxel_nm * np.array([np.sin(heading), np.cos(heading)]))
    return np.array(pts)


def _direction(axis_angle: float, azimuth: float, elevation: float) -> np.ndarray:
    """Unit vector (z, y, x) in the squashed frame: ``azimuth`` from the cell axis, ``elevation`` from XY."""
    ang = axis_angle + azimuth
    return np.array([np.sin(elevation), np.cos(elevation) * np.sin(ang), np.cos(elevation) * np.cos(ang)])


def _in_bounds(p: np.ndarray, shape: tuple[int, int, int], voxel_nm: float) -> bool:
    edge = MIN_EDGE_NM / voxel_nm
    z_ok = 0.05 * shape[0] <= p[0] <= 0.95 * shape[0] - 1
    y_ok = edge <= p[1] <= shape[1] - 1 - edge
    x_ok = edge <= p[2] <= shape[2] - 1 - edge
    return bool(z_ok and y_ok and x_ok)


def _sample_anchor(rng: np.random.Generator, shape: tuple[int, int, int], voxel_nm: float) -> np.ndarray:
    """A motor-like position drawn from the real position statistics (voxels, float)."""
    for _ in range(100):
        zf = np.clip(rng.normal(*MOTOR_Z_FRAC), 0.08, 0.92)
        yf, xf = rng.normal(*MOTOR_YX_FRAC, size=2)
        p = np.array([zf * (shape[0] - 1), yf * (shape[1] - 1), xf * (shape[2] - 1)])
        if _in_bounds(p, shape, voxel_nm):
            return p
    return (np.array(shape, dtype=np.float64) - 1) / 2


def _cell_radius_and_squash(rng: np.random.Generator, shape, voxel_nm: float) -> tuple[float, float]:
    radius_nm = rng.uniform(*CELL_RADIUS_NM)
    # cells are flattened in the ice: the z semi-axis stays within ~0.45 of the tomogram depth
    max_half_z_nm = 0.45 * shape[0] * voxel_nm
    squash = max(1.0, radius_nm / max_half_z_nm) * rng.uniform(1.0, 1.25)
    return radius_nm, squash


def _cell_for_motor(rng: np.random.Generator, anchor: np.ndarray, shape, voxel_nm: float):
    """A cell whose pole envelope passes through ``anchor``; returns (cell, axis_angle, az, el, r_nm)."""
    radius_nm, squash = _cell_radius_and_squash(rng, shape, voxel_nm)
    periplasm_nm = rng.uniform(*PERIPLASM_NM)
    r_nm = radius_nm - periplasm_nm - MOTOR_BELOW_INNER_NM  # label point to cap centre, squashed frame
    axis_angle = rng.uniform(0, 2 * np.pi)
    for _ in range(30):
        az = rng.uniform(-np.radians(70), np.radians(70))
        el = rng.uniform(-np.radians(40), np.radians(40))
        cz = anchor[0] - r_nm * np.sin(el) / squash / voxel_nm
        if 0.3 * shape[0] <= cz <= 0.7 * shape[0]:
            break
    else:
        el = 0.0
        cz = anchor[0]
    d = _direction(axis_angle, az, el)
    pole_yx = anchor[1:] - r_nm * d[1:] / voxel_nm
    cell = R.CellSpec(
        path_yx=_cell_path(rng, pole_yx, axis_angle, voxel_nm),
        z_vox=float(cz),
        radius_nm=float(radius_nm),
        z_squash=float(squash),
        periplasm_nm=float(periplasm_nm),
    )
    return cell, axis_angle, az, el, r_nm


def _cells_overlap(a: R.CellSpec, b: R.CellSpec, voxel_nm: float) -> bool:
    d, _ = R.segment_distance_2d(a.path_yx, b.path_yx)
    return bool(d.min() * voxel_nm < a.radius_nm + b.radius_nm + 40.0)


def _free_cell(rng: np.random.Generator, shape, voxel_nm: float) -> R.CellSpec:
    """A cell without motors, its pole somewhere in the field of view."""
    radius_nm, squash = _cell_radius_and_squash(rng, shape, voxel_nm)
    pole = np.array([rng.uniform(0.1, 0.9) * shape[1], rng.uniform(0.1, 0.9) * shape[2]])
    return R.CellSpec(
        path_yx=_cell_path(rng, pole, rng.uniform(0, 2 * np.pi), voxel_nm),
        z_vox=float(rng.uniform(0.38, 0.62) * shape[0]),
        radius_nm=float(radius_nm),
        z_squash=float(squash),
        periplasm_nm=float(rng.uniform(*PERIPLASM_NM)),
    )


def _far_enough(p: np.ndarray, others: list[np.ndarray], voxel_nm: float) -> bool:
    return all(np.linalg.norm(p - q) * voxel_nm >= MIN_MOTOR_SEPARATION_NM for q in others)


def _place_cluster(rng, n: int, shape, voxel_nm: float, cells: list, motors: list) -> None:
    """Add one cell carrying ``n`` motors clustered at its pole (fewer if they cannot be placed)."""
    for _ in range(30):
        anchor = np.rint(_sample_anchor(rng, shape, voxel_nm))
        if not _far_enough(anchor, motors, voxel_nm) or any(
            np.linalg.norm(anchor - m) * voxel_nm < 300.0 for m in motors
        ):
            continue
        cell, axis_angle, az, el, r_nm = _cell_for_motor(rng, anchor, shape, voxel_nm)
        if any(_cells_overlap(cell, c, voxel_nm) for c in cells):
            continue
        break
    else:
        return
    cells.append(cell)
    motors.append(anchor)
    centre = np.array([cell.z_vox, *cell.path_yx[0]])
    placed = 1
    for _ in range(400):
        if placed >= n:
            break
        az2 = np.clip(az + rng.normal(0, np.radians(25)), -np.radians(80), np.radians(80))
        el2 = np.clip(el + rng.normal(0, np.radians(20)), -np.radians(55), np.radians(55))
        d = _direction(axis_angle, az2, el2)
        p = centre + r_nm / voxel_nm * np.array([d[0] / cell.z_squash, d[1], d[2]])
        p = np.rint(p)
        if _in_bounds(p, shape, voxel_nm) and _far_enough(p, motors, voxel_nm):
            motors.append(p)
            placed += 1


def draw_spec(rng: np.random.Generator, scale: float = 1.0, split: str = "train") -> SynthSpec:
    """Draw a full synthetic tomogram description (shape, spacing, cells, motors, quirks).

    Args:
        rng: random generator (consumed).
        scale: every axis is shrunk by ``scale`` (shape ``round(real * scale)``) and the spacing becomes
            ``real_spacing / scale``: same physical extent on a coarser grid.
        split: ``"train"`` (real motor-count distribution) or ``"test"`` (0 or 1 motor).

    Returns:
        The :class:`SynthSpec`.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    tomo_id = f"tomo_{int(rng.integers(16**6)):06x}"
    table = SHAPE_SPACING_TABLE
    if split == "test" and rng.random() < TEST_SPACING_13_1_PROB:
        table = tuple(row for row in SHAPE_SPACING_TABLE if row[3] == TEST_SPACING_A)
    weights = np.array([row[4] for row in table], dtype=np.float64)
    row = table[int(rng.choice(len(table), p=weights / weights.sum()))]
    shape = tuple(max(8, int(round(s * scale))) for s in row[:3])
    spacing_a = float(row[3]) / scale
    voxel_nm = _voxel_nm(spacing_a)
    if split == "train":
        counts = np.array(list(TRAIN_MOTOR_COUNTS.values()), dtype=np.float64)
        n_motors = int(rng.choice(list(TRAIN_MOTOR_COUNTS), p=counts / counts.sum()))
    else:
        n_motors = int(rng.random() < TEST_MOTOR_PROB)
    inverted = bool(rng.random() < INVERTED_PROB)
    wrapped = bool(rng.random() < WRAPPED_PROB)

    cells: list[R.CellSpec] = []
    motors: list[np.ndarray] = []
    if n_motors == 0:
        n_free = 1 + int(rng.random() < 0.4)
    else:
        clusters = [n_motors]
        if n_motors >= 2 and rng.random() < 0.3:
            k = int(rng.integers(1, n_motors))
            clusters = [k, n_motors - k]
        for n in clusters:
            _place_cluster(rng, n, shape, voxel_nm, cells, motors)
        n_free = int(rng.random() < 0.3)
    for _ in range(n_free):
        for _ in range(20):
            cell = _free_cell(rng, shape, voxel_nm)
            if not any(_cells_overlap(cell, c, voxel_nm) for c in cells):
                cells.append(cell)
                break
    motor_arr = np.array(motors, dtype=np.float64).reshape(-1, 3)
    return SynthSpec(tomo_id, split, shape, spacing_a, motor_arr, cells, inverted, wrapped)


def sample_tomogram_spec(
    rng: np.random.Generator, scale: float = 1.0, split: str = "train"
) -> tuple[str, tuple[int, int, int], float, np.ndarray]:
    """Draw a tomogram id, shape, spacing and motor positions from the real-data distributions.

    Args:
        rng: random generator (consumed).
        scale: grid shrink factor (see :func:`draw_spec`).
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(tomo_id, shape (Z, Y, X), spacing_a, motors (n, 3) float64 voxels)``.
    """
    spec = draw_spec(rng, scale, split)
    return spec.tomo_id, spec.shape, spec.spacing_a, spec.motors


def cells_for_motors(
    motors: np.ndarray, shape: tuple[int, int, int], spacing_a: float, rng: np.random.Generator
) -> list[R.CellSpec]:
    """Build cells for motors given without them: one cell per cluster (motors within 300 nm).

    The first motor of a cluster lies exactly on its cell's envelope; the others lie near it.
    """
    voxel_nm = _voxel_nm(spacing_a)
    motors = np.asarray(motors, dtype=np.float64).reshape(-1, 3)
    cells: list[R.CellSpec] = []
    assigned = np.full(len(motors), False)
    for i in range(len(motors)):
        if assigned[i]:
            continue
        near = np.linalg.norm(motors - motors[i], axis=1) * voxel_nm < 300.0
        assigned |= near
        cells.append(_cell_for_motor(rng, motors[i], shape, voxel_nm)[0])
    return cells


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


def _random_points_in_cell(rng, cell: R.CellSpec, n: int, shape, spacing_a: float, max_sdf_nm: float):
    """Up to ``n`` voxel points inside ``cell`` deeper than ``-max_sdf_nm`` (rejection sampling)."""
    voxel_nm = _voxel_nm(spacing_a)
    r_vox = cell.radius_nm / voxel_nm
    lo = np.maximum([cell.z_vox - r_vox / cell.z_squash, *(cell.path_yx.min(0) - r_vox)], 0)
    hi = np.minimum([cell.z_vox + r_vox / cell.z_squash, *(cell.path_yx.max(0) + r_vox)], np.array(shape) - 1)
    if np.any(hi <= lo):
        return np.zeros((0, 3))
    pts = rng.uniform(lo, hi, size=(4 * n, 3))
    sdf, _ = R.cell_sdf_at(cell, pts, spacing_a)
    return pts[sdf < -max_sdf_nm][:n]


def _outside_cells(pts: np.ndarray, cells, spacing_a: float, margin_nm: float) -> np.ndarray:
    keep = np.ones(len(pts), dtype=bool)
    for c in cells:
        keep &= R.cell_sdf_at(c, pts, spacing_a)[0] > margin_nm
    return pts[keep]


def generate_tomogram(
    shape: tuple[int, int, int],
    spacing_a: float,
    motors: np.ndarray,
    rng: np.random.Generator,
    difficulty: float = 1.0,
    *,
    cells: list[R.CellSpec] | None = None,
    inverted: bool = False,
    wrapped: bool = False,
    distractors: bool = True,
    objects: list[dict] | None = None,
    without: Collection[str] = (),
) -> np.ndarray:
    """Render a synthetic tomogram holding motors at the given positions.

    Args:
        shape: ``(Z, Y, X)`` voxels.
        spacing_a: voxel spacing in Angstrom (sets the size of everything in voxels).
        motors: ``(n, 3)`` motor centres (z, y, x) in voxels; may be empty.
        rng: random generator (consumed); the same generator state gives the same volume.
        difficulty: noise multiplier (1.0 = default realism; 0 = noise-free).
        cells: cells to draw (from :func:`draw_spec`); ``None`` builds cells around the motors.
        inverted: store inverted contrast (dense = bright).
        wrapped: store ``(correct - 127) mod 256`` (the real set's wraparound quantisation bug).
        distractors: draw ribosomes, granules, vesicles, gold, loose flagella and decoys.
        objects: when given, a list that receives what could pass for a motor, as dicts: ``{"kind":
            "granule" | "decoy" | "vesicle" | "gold", "zyx": [z, y, x] (voxels), "radius_nm": r}`` and
            ``{"kind": "edge_band", "side": "y0" | "y1" | "x0" | "x1", "width": w (voxels)}``. Recording
            draws no random numbers: the volume is the same with or without it.
        without: look-alike kinds (of :data:`ABLATABLE`: ``"granule"``, ``"decoy"``) to leave out. Their random
            numbers are still drawn, so everything else is placed as with them (an ablation of one kind on
            otherwise the same tomogram; the final contrast stretch still shifts the grey values a little).
            They are still recorded in ``objects``, with ``"drawn": False``.

    Returns:
        uint8 volume ``(Z, Y, X)``; dense matter is dark unless ``inverted``.
    """
    without = ablation_kinds(without)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be 3 positive ints (Z, Y, X), got {shape}")
    if not spacing_a > 0:
        raise ValueError(f"spacing_a must be > 0, got {spacing_a}")
    motors = np.asarray(motors, dtype=np.float64).reshape(-1, 3)
    voxel_nm = _voxel_nm(spacing_a)
    if cells is None:
        cells = cells_for_motors(motors, shape, spacing_a, rng)
    nz, ny, nx = shape
    vol = np.zeros(shape, dtype=np.float32)

    # ice slab: the reconstruction extends above and below the ice, which is lighter there
    z_top, z_bot = rng.uniform(0.0, 0.12) * nz, rng.uniform(0.88, 1.0) * nz
    soft_z = max(1.0, 8.0 / voxel_nm)
    zz = np.arange(nz, dtype=np.float32)
    slab = 0.5 * (np.tanh((zz - z_top) / (2 * soft_z)) - np.tanh((zz - z_bot) / (2 * soft_z)))
    vol += (0.3 * (slab - 1)).astype(np.float32)[:, None, None]

    cyto, peri, membrane = rng.uniform(0.35, 0.6), rng.uniform(0.08, 0.18), rng.uniform(1.2, 1.6)
    for cell in cells:
        R.render_cell(vol, cell, spacing_a, (cyto, peri, membrane))

    # granular cytoplasm: multiplicative texture at ribosome scale, drawn on a ~3 nm grid (cheap)
    factor = max(1, int(round(3.0 / voxel_nm)))
    coarse = tuple(-(-n // factor) for n in shape)
    texture = rng.standard_normal(coarse, dtype=np.float32)
    R.binomial_blur(texture, (1, 1, 1))
    texture *= np.float32(rng.uniform(0.35, 0.6) / R.binomial_noise_gain((1, 1, 1)))
    if factor > 1:
        texture = R.block_expand(texture, factor, shape)
    texture *= vol
    vol += texture
    del texture

    if distractors:
        draw_granules, draw_decoys = "granule" not in without, "decoy" not in without
        for cell in cells:
            for p in _random_points_in_cell(rng, cell, int(rng.integers(30, 120)), shape, spacing_a, 50.0):
                R.blob(vol, p, rng.uniform(4.0, 7.0), spacing_a, rng.uniform(0.2, 0.4))
            if rng.random() < 0.35:
                for p in _random_points_in_cell(rng, cell, int(rng.integers(1, 4)), shape, spacing_a, 120.0):
                    radius = rng.uniform(20.0, 60.0)
                    amplitude = rng.uniform(0.4, 0.8)
                    if draw_granules:
                        R.sphere(vol, p, radius, spacing_a, amplitude)
                    _record(objects, "granule", p, radius, drawn=draw_granules)
            if rng.random() < 0.12:
                for p in _random_points_in_cell(rng, cell, 1, shape, spacing_a, 90.0):
                    normal = rng.normal(size=3)
                    ring = rng.uniform(*RING_RADIUS_NM)
                    if draw_decoys:
                        R.render_motor(vol, p, normal, spacing_a, 0.8, ring, 30.0, False)
                    _record(objects, "decoy", p, ring, drawn=draw_decoys)

    motor_amp = rng.uniform(0.75, 1.05)
    for m in motors:
        if cells:
            sdfs = [R.cell_sdf_at(c, m[None], spacing_a) for c in cells]
            best = int(np.argmin([abs(s[0][0]) for s in sdfs]))
            normal, periplasm_nm = sdfs[best][1][0], cells[best].periplasm_nm
        else:
            normal, periplasm_nm = rng.normal(size=3), 30.0
        amp = motor_amp * rng.uniform(0.85, 1.15)
        R.render_motor(vol, m, normal, spacing_a, amp, rng.uniform(*RING_RADIUS_NM), periplasm_nm)
        if rng.random() < 0.6:
            start = m + normal * (MOTOR_BELOW_INNER_NM + periplasm_nm + 5.0) / voxel_nm
            path = _flagellum_path(rng, start, normal, voxel_nm, shape)
            if len(path) > 1:
                R.filament(vol, path, 10.0, spacing_a, rng.uniform(0.5, 0.8))

    if distractors:
        n_loose = int(rng.random() < 0.3) * int(rng.integers(1, 3))
        starts = _outside_cells(rng.uniform(0, 1, size=(n_loose, 3)) * shape, cells, spacing_a, 30.0)
        for p in starts:
            path = _flagellum_path(rng, p, rng.normal(size=3), voxel_nm, shape)
            if len(path) > 1:
                R.filament(vol, path, 10.0, spacing_a, rng.uniform(0.5, 0.8))
        n_ves = int(rng.poisson(1.0))
        pts = rng.uniform([0.2, 0, 0], [0.8, 1, 1], size=(n_ves, 3)) * shape
        for p in _outside_cells(pts, cells, spacing_a, 100.0):
            radius = rng.uniform(20.0, 80.0)
            R.sphere(vol, p, radius, spacing_a, rng.uniform(0.6, 1.0), shell_nm=4.0)
            _record(objects, "vesicle", p, radius)
        if rng.random() < 0.7:
            n_gold = int(rng.poisson(10))
            gz = np.where(rng.random(n_gold) < 0.5, z_top, z_bot) + rng.normal(0, 10.0 / voxel_nm, n_gold)
            gz = np.clip(gz, 0, nz - 1)
            gyx = rng.uniform(0, 1, size=(n_gold, 2)) * (ny - 1, nx - 1)
            for z, (y, x) in zip(gz, gyx):
                R.gold(vol, np.array([z, y, x]), spacing_a, rng.uniform(4.0, 6.0), rng)
                _record(objects, "gold", (z, y, x), 5.0)

    # imaging: CTF-like loss of low frequencies, noise, then finite resolution with the missing wedge
    # blurring along z (noise of a reconstruction is band-limited and anisotropic too)
    R.subtract_lowpass(vol, 25.0 / voxel_nm, rng.uniform(0.2, 0.45))
    s_xy = max(0.5, 1.2 / voxel_nm)
    passes = (R.binomial_passes(1.6 * s_xy), R.binomial_passes(s_xy), R.binomial_passes(s_xy))
    noise_std = NOISE_STD_REF * difficulty * rng.uniform(0.8, 1.2) * (NOISE_REF_SPACING_A / spacing_a) ** 0.75
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.float32(noise_std / R.binomial_noise_gain(passes))
    vol += noise
    R.binomial_blur(vol, passes, buffer=noise)
    del noise

    image = vol
    np.negative(image, out=image)  # cryo-ET: dense = dark
    image += _background_2d(rng, ny, nx, voxel_nm, objects)[None]
    out = R.match_mean(R.percentile_stretch(image), rng.uniform(114.0, 122.0))
    if inverted:
        out = 255 - out
    if wrapped:
        out += np.uint8(129)  # uint8 arithmetic wraps: (v - 127) mod 256
    return out


def _record(objects: list[dict] | None, kind: str, zyx, radius_nm: float, drawn: bool = True) -> None:
    """Append one distractor to ``objects`` (no-op for ``None``): voxel centre rounded to 0.1.

    ``drawn=False`` (left out by ``generate_tomogram(without=...)``) adds ``"drawn": False`` to the record.
    """
    if objects is not None:
        centre = [round(float(v), 1) for v in zyx]
        objects.append({"kind": kind, "zyx": centre, "radius_nm": round(float(radius_nm), 1)})
        if not drawn:
            objects[-1]["drawn"] = False


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


def _background_2d(
    rng: np.random.Generator, ny: int, nx: int, voxel_nm: float, objects: list[dict] | None = None
) -> np.ndarray:
    """Ice-thickness gradient, vignetting and reconstruction edge bands: a float32 (Y, X) offset.

    The edge bands drawn are appended to ``objects`` (when given) as ``{"kind": "edge_band", "side", "width"}``.
    """
    yy = np.linspace(-1, 1, ny, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, nx, dtype=np.float32)[None, :]
    gy, gx = rng.normal(0, 0.15, size=2)
    bg = gy * yy + gx * xx - rng.uniform(0.0, 0.25) * (yy**2 + xx**2)
    # edge bands: the border of the reconstructed area, brighter or darker, with stripes across it
    for side in range(4):
        if rng.random() >= 0.5:
            continue
        n_along, n_across = (nx, ny) if side < 2 else (ny, nx)
        width = max(1, int(rng.uniform(0.02, 0.07) * n_across))
        stripes = rng.normal(0, 0.25, n_along).astype(np.float32)
        stripes = np.convolve(stripes, np.ones(3, np.float32) / 3, mode="same")
        band = rng.uniform(-0.6, 0.6) + stripes
        if objects is not None:
            objects.append({"kind": "edge_band", "side": ("y0", "y1", "x0", "x1")[side], "width": width})
        if side == 0:
            bg[:width, :] += band[None, :]
        elif side == 1:
            bg[-width:, :] += band[None, :]
        elif side == 2:
            bg[:, :width] += band[:, None]
        else:
            bg[:, -width:] += band[:, None]
    return bg.astype(np.float32)


def _render_task(task: tuple) -> list[dict]:
    """Worker: render one spec with its own seed and write its JPEG slices; returns its distractors."""
    spec, seed_seq, difficulty, folder, without = task
    rng = np.random.default_rng(seed_seq)
    objects: list[dict] = []
    volume = generate_tomogram(
        spec.shape,
        spec.spacing_a,
        spec.motors,
        rng,
        difficulty,
        cells=spec.cells,
        inverted=spec.inverted,
        wrapped=spec.wrapped,
        objects=objects,
        without=without,
    )
    write_tomogram(volume, folder, quality=95)
    return objects


def _fmt_spacing(spacing_a: float) -> float:
    return float(round(spacing_a, 6))


def generate_dataset(
    out_dir: str | Path,
    n_train: int,
    n_test: int,
    scale: float = 1.0,
    seed: int = 0,
    difficulty: float = 1.0,
    workers: int = 1,
    without: Collection[str] = (),
) -> None:
    """Write a synthetic dataset in the competition layout.

    Writes ``train/<tomo_id>/slice_*.jpg``, ``test/<tomo_id>/...``, ``train_labels.csv``,
    ``sample_submission.csv``, ``test_labels.csv`` (hidden solution: ``tomo_id, Motor axis 0/1/2,
    Voxel spacing``, -1 when no motor) and ``synth_meta.json`` (per tomogram: split, shape, spacing, motors,
    polarity, seed, and ``distractors``: the motor look-alikes and edge bands drawn, as recorded by
    :func:`generate_tomogram`, for :mod:`byu_motor.data.synth_explain`). Every tomogram has its own child seed
    (``np.random.SeedSequence(seed).spawn``), so the bytes do not depend on ``workers``.

    Args:
        out_dir: output folder (created).
        n_train: number of train tomograms.
        n_test: number of test tomograms (0 or 1 motor each).
        scale: grid shrink factor per axis; spacing becomes ``real_spacing / scale``.
        seed: root seed.
        difficulty: noise multiplier (1.0 = default).
        workers: worker processes for rendering.
        without: look-alike kinds to leave out of every volume (see :func:`generate_tomogram`); the same
            ``seed`` with and without them gives the same motors, cells and other objects.
    """
    without = ablation_kinds(without)
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train}, {n_test}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(seed)
    id_seq, *children = root.spawn(1 + n_train + n_test)
    id_rng = np.random.default_rng(id_seq)
    used: set[str] = set()
    specs: list[SynthSpec] = []
    tasks = []
    for i, child in enumerate(children):
        split = "train" if i < n_train else "test"
        spec_seq, vol_seq = child.spawn(2)
        spec = draw_spec(np.random.default_rng(spec_seq), scale, split)
        while spec.tomo_id in used:
            spec = replace(spec, tomo_id=f"tomo_{int(id_rng.integers(16**6)):06x}")
        used.add(spec.tomo_id)
        specs.append(spec)
        tasks.append((spec, vol_seq, float(difficulty), out / split / spec.tomo_id, without))

    if workers > 1 and len(tasks) > 1:
        with multiprocessing.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
            distractors = list(pool.imap(_render_task, tasks))
    else:
        distractors = [_render_task(task) for task in tasks]

    train_rows, sub_rows, sol_rows, meta = [], [], [], {}
    for i, spec in enumerate(specs):
        spacing = _fmt_spacing(spec.spacing_a)
        coords = [[int(v) for v in m] for m in spec.motors] or [[-1, -1, -1]]
        if spec.split == "train":
            for c in coords:
                train_rows.append([len(train_rows), spec.tomo_id, *c, *spec.shape, spacing, len(spec.motors)])
        else:
            sub_rows.append([spec.tomo_id, -1, -1, -1])
            sol_rows.append([spec.tomo_id, *coords[0], spacing])
        meta[spec.tomo_id] = {
            "split": spec.split,
            "shape": list(spec.shape),
            "voxel_spacing": spacing,
            "motors": coords if len(spec.motors) else [],
            "inverted": spec.inverted,
            "wrapped": spec.wrapped,
            "difficulty": float(difficulty),
            "seed": int(seed),
            "index": i,
            "scale": float(scale),
            "distractors": distractors[i],
        }
        if without:
            meta[spec.tomo_id]["without"] = list(without)
    pd.DataFrame(train_rows, columns=list(LABEL_COLUMNS)).to_csv(out / "train_labels.csv", index=False)
    pd.DataFrame(sub_rows, columns=list(SUBMISSION_COLUMNS)).to_csv(
        out / "sample_submission.csv", index=False
    )
    pd.DataFrame(sol_rows, columns=list(SOLUTION_COLUMNS)).to_csv(out / "test_labels.csv", index=False)
    (out / "synth_meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
