"""Objects stamped into a synthetic density volume: motors, blobs, spheres, filaments, gold fiducials."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Objects are drawn stretched along z by this factor: the missing wedge of a +-60 degree tilt series
# elongates small dense objects about 1.5x along the beam.
WEDGE_Z_STRETCH = 1.5


def _box(center: np.ndarray, half: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    """Slices of the voxel box ``center +- half`` clipped to ``shape`` (None if empty)."""
    lo = np.maximum(np.floor(center - half).astype(int), 0)
    hi = np.minimum(np.ceil(center + half).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _local_coords(box: tuple[slice, ...], center: np.ndarray, voxel_nm: float, z_stretch: float):
    """Open-grid offsets (nm) from ``center`` inside ``box``; z is divided by ``z_stretch``."""
    dz = (np.arange(box[0].start, box[0].stop, dtype=np.float32) - center[0]) * voxel_nm / z_stretch
    dy = (np.arange(box[1].start, box[1].stop, dtype=np.float32) - center[1]) * voxel_nm
    dx = (np.arange(box[2].start, box[2].stop, dtype=np.float32) - center[2]) * voxel_nm
    return dz[:, None, None], dy[None, :, None], dx[None, None, :]


def _window(x: np.ndarray, lo: float, hi: float, soft: float) -> np.ndarray:
    """Smooth box: ~1 for lo < x < hi, linear ramps of width ``soft`` at both ends."""
    return np.clip(np.minimum(x - lo, hi - x) / soft + 0.5, 0.0, 1.0)


def render_motor(
    vol: np.ndarray,
    center_zyx: np.ndarray,
    normal_zyx: np.ndarray,
    spacing_a: float,
    amplitude: float,
    ring_radius_nm: float,
    periplasm_nm: float,
    with_rod: bool = True,
) -> None:
    """Add a bell-shaped flagellar motor to ``vol`` in place.

    The motor axis follows ``normal_zyx`` (outward membrane normal). The label point ``center_zyx`` is
    the middle of the bell, 8 nm inside the inner membrane: the C-ring (diameter ``2 * ring_radius_nm``)
    sits below it in the cytoplasm, the MS ring in the inner membrane and the rod crosses the periplasm
    to the outer membrane (total height about 45-60 nm). ``with_rod=False`` draws a ring-only decoy.
    """
    voxel_nm = spacing_a / 10.0
    center = np.asarray(center_zyx, dtype=np.float64)
    n = np.asarray(normal_zyx, dtype=np.float64)
    n = n / np.linalg.norm(n)
    half_nm = max(ring_radius_nm + 12.0, periplasm_nm + 22.0)
    half = np.array([half_nm * WEDGE_Z_STRETCH, half_nm, half_nm]) / voxel_nm + 1
    box = _box(center, half, vol.shape)
    if box is None:
        return
    dz, dy, dx = _local_coords(box, center, voxel_nm, WEDGE_Z_STRETCH)
    a = dz * np.float32(n[0]) + dy * np.float32(n[1]) + dx * np.float32(n[2])
    r = np.sqrt(np.maximum(dz * dz + dy * dy + dx * dx - a * a, 0.0))
    soft = max(2.0, 0.6 * voxel_nm)
    s_ring = np.float32(max(4.5, 0.5 * voxel_nm))
    # C-ring: a thick torus in the cytoplasm below the bell's centre
    dens = 1.0 * np.exp(-((r - ring_radius_nm) ** 2 + (0.7 * (a + 14.0)) ** 2) / (2 * s_ring**2))
    # bell wall from the C-ring up to the MS ring, filled interior (the "bell")
    t = np.clip((a + 14.0) / 20.0, 0.0, 1.0)
    wall_r = ring_radius_nm * (1 - t) + 11.0 * t
    dens += 0.7 * np.exp(-((r - wall_r) ** 2) / (2 * 3.5**2)) * _window(a, -16.0, 8.0, soft)
    dens += 0.45 * _window(r, -1.0, ring_radius_nm - 5.0, soft) * _window(a, -18.0, 4.0, soft)
    if with_rod:
        dens += 0.9 * _window(r, -1.0, 12.0, soft) * _window(a, 0.0, 10.0, soft)  # MS ring
        rod_top = 8.0 + periplasm_nm + 6.0
        dens += 0.9 * _window(r, -1.0, 5.0, soft) * _window(a, 0.0, rod_top, soft)  # rod
        dens += 0.6 * _window(r, -1.0, 10.0, soft) * _window(a, rod_top - 12.0, rod_top - 3.0, soft)
    vol[box] += np.float32(amplitude) * dens.astype(np.float32)


@lru_cache(maxsize=64)
def _gauss_kernel(sigma_z: float, sigma_y: float, sigma_x: float) -> np.ndarray:
    """Normalised-peak (max 1) anisotropic Gaussian kernel cut at 3 sigma (float32)."""
    axes = []
    for s in (sigma_z, sigma_y, sigma_x):
        h = max(1, int(np.ceil(3 * s)))
        axes.append(np.exp(-0.5 * (np.arange(-h, h + 1) / max(s, 1e-3)) ** 2).astype(np.float32))
    return axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]


def stamp(vol: np.ndarray, center_zyx: np.ndarray, kernel: np.ndarray, amplitude: float) -> None:
    """Add ``amplitude * kernel`` centred at the nearest voxel of ``center_zyx`` (clipped at borders)."""
    c = np.rint(np.asarray(center_zyx, dtype=np.float64)).astype(int)
    h = np.array(kernel.shape) // 2
    lo, hi = c - h, c + h + 1
    vlo = np.maximum(lo, 0)
    vhi = np.minimum(hi, vol.shape)
    if np.any(vhi <= vlo):
        return
    klo = vlo - lo
    khi = klo + (vhi - vlo)
    vol[vlo[0] : vhi[0], vlo[1] : vhi[1], vlo[2] : vhi[2]] += (
        np.float32(amplitude) * kernel[klo[0] : khi[0], klo[1] : khi[1], klo[2] : khi[2]]
    )


def blob(
    vol: np.ndarray, center_zyx: np.ndarray, sigma_nm: float, spacing_a: float, amplitude: float
) -> None:
    """Add a Gaussian blob (z-stretched by the missing wedge) of ``sigma_nm`` at a voxel position."""
    s = max(sigma_nm / (spacing_a / 10.0), 0.6)
    stamp(vol, center_zyx, _gauss_kernel(round(s * WEDGE_Z_STRETCH, 2), round(s, 2), round(s, 2)), amplitude)


def sphere(
    vol: np.ndarray,
    center_zyx: np.ndarray,
    radius_nm: float,
    spacing_a: float,
    amplitude: float,
    shell_nm=None,
) -> None:
    """Add a solid sphere, or a membrane shell of width ``shell_nm`` (vesicle), z-stretched."""
    voxel_nm = spacing_a / 10.0
    center = np.asarray(center_zyx, dtype=np.float64)
    half = (radius_nm + 6.0) / voxel_nm * np.array([WEDGE_Z_STRETCH, 1.0, 1.0]) + 1
    box = _box(center, half, vol.shape)
    if box is None:
        return
    dz, dy, dx = _local_coords(box, center, voxel_nm, WEDGE_Z_STRETCH)
    r = np.sqrt(dz * dz + dy * dy + dx * dx)
    soft = max(1.5, 0.6 * voxel_nm)
    if shell_nm is None:
        dens = np.clip((radius_nm - r) / soft + 0.5, 0.0, 1.0)
    else:
        sigma = np.hypot(shell_nm / 2.0, 0.5 * voxel_nm)
        dens = (shell_nm / 2.0 / sigma) * np.exp(-0.5 * ((r - radius_nm) / sigma) ** 2)
    vol[box] += np.float32(amplitude) * dens.astype(np.float32)


def filament(
    vol: np.ndarray, points_zyx: np.ndarray, radius_nm: float, spacing_a: float, amplitude: float
) -> None:
    """Add a tube (flagellum) along a polyline by stamping Gaussians every half sigma."""
    voxel_nm = spacing_a / 10.0
    s = max(radius_nm / 1.5 / voxel_nm, 0.6)
    kernel = _gauss_kernel(round(s * WEDGE_Z_STRETCH, 2), round(s, 2), round(s, 2))
    pts = np.asarray(points_zyx, dtype=np.float64)
    step = max(0.5 * s, 0.5)
    # sum of Gaussians spaced `step` apart along a line ~ sqrt(2 pi) sigma / step times one Gaussian
    amp = amplitude * step / (np.sqrt(2 * np.pi) * s)
    for a, b in zip(pts[:-1], pts[1:]):
        n_steps = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        for t in np.arange(n_steps) / n_steps:
            stamp(vol, a + t * (b - a), kernel, amp)


def gold(vol: np.ndarray, center_zyx: np.ndarray, spacing_a: float, amplitude: float, rng) -> None:
    """Add a gold fiducial: a very dense 5 nm sphere with tilt-series streaks along x (tilt axis = y)."""
    voxel_nm = spacing_a / 10.0
    sphere(vol, center_zyx, 5.0, spacing_a, amplitude)
    s_y = max(2.0 / voxel_nm, 0.6)
    for sign in (-1, 1):
        length_nm = rng.uniform(15, 60)
        s_x = length_nm / voxel_nm / 2
        off = np.array([0.0, 0.0, sign * (s_x + 4.0 / voxel_nm)])
        k = _gauss_kernel(round(s_y * 2, 2), round(s_y, 2), round(s_x, 2))
        stamp(vol, np.asarray(center_zyx) + off, k, -0.25 * amplitude * rng.uniform(0.3, 1.0))
        stamp(vol, np.asarray(center_zyx) + 2.2 * off, k, 0.12 * amplitude * rng.uniform(0.3, 1.0))
