"""Render one synthetic tomogram: ice, cells, motors and look-alikes, then imaging, noise and the uint8 stretch."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from byu_motor.synth.cells import CellSpec, cell_sdf_at, render_cell
from byu_motor.synth.distractors import (
    _flagellum_path,
    ablation_kinds,
    add_cell_contents,
    add_free_objects,
)
from byu_motor.synth.imaging import (
    binomial_blur,
    binomial_noise_gain,
    binomial_passes,
    block_expand,
    match_mean,
    percentile_stretch,
    subtract_lowpass,
)
from byu_motor.synth.shapes import filament, render_motor
from byu_motor.synth.spec import MOTOR_BELOW_INNER_NM, RING_RADIUS_NM, _voxel_nm, cells_for_motors

# Noise std (density units, membrane peak ~1) at difficulty 1 on a 13.1 A grid; coarser grids average
# the noise down (partly: reconstruction noise is spatially correlated).
NOISE_STD_REF = 0.5
NOISE_REF_SPACING_A = 13.1


def generate_tomogram(
    shape: tuple[int, int, int],
    spacing_a: float,
    motors: np.ndarray,
    rng: np.random.Generator,
    difficulty: float = 1.0,
    *,
    cells: list[CellSpec] | None = None,
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
    if cells is None:
        cells = cells_for_motors(motors, shape, spacing_a, rng)
    vol = np.zeros(shape, dtype=np.float32)
    ice_z = _add_ice_slab(vol, rng, spacing_a)
    _add_cells(vol, cells, rng, spacing_a)
    if distractors:
        add_cell_contents(vol, cells, rng, spacing_a, objects, without)
    _add_motors(vol, motors, cells, rng, spacing_a)
    if distractors:
        add_free_objects(vol, cells, rng, spacing_a, ice_z, objects)
    _add_imaging(vol, rng, spacing_a, difficulty)
    return _to_grey(vol, rng, spacing_a, objects, inverted, wrapped)


def _add_ice_slab(vol: np.ndarray, rng: np.random.Generator, spacing_a: float) -> tuple[float, float]:
    """Lighten the reconstruction above and below the ice (in place); returns the ice's (top, bottom) z."""
    nz = vol.shape[0]
    z_top, z_bot = rng.uniform(0.0, 0.12) * nz, rng.uniform(0.88, 1.0) * nz
    soft_z = max(1.0, 8.0 / _voxel_nm(spacing_a))
    zz = np.arange(nz, dtype=np.float32)
    slab = 0.5 * (np.tanh((zz - z_top) / (2 * soft_z)) - np.tanh((zz - z_bot) / (2 * soft_z)))
    vol += (0.3 * (slab - 1)).astype(np.float32)[:, None, None]
    return z_top, z_bot


def _add_cells(vol: np.ndarray, cells: list[CellSpec], rng: np.random.Generator, spacing_a: float) -> None:
    """Draw the cells, then a granular texture of the cytoplasm (in place)."""
    cyto, peri, membrane = rng.uniform(0.35, 0.6), rng.uniform(0.08, 0.18), rng.uniform(1.2, 1.6)
    for cell in cells:
        render_cell(vol, cell, spacing_a, (cyto, peri, membrane))

    # granular cytoplasm: multiplicative texture at ribosome scale, drawn on a ~3 nm grid (cheap)
    shape = vol.shape
    factor = max(1, int(round(3.0 / _voxel_nm(spacing_a))))
    coarse = tuple(-(-n // factor) for n in shape)
    texture = rng.standard_normal(coarse, dtype=np.float32)
    binomial_blur(texture, (1, 1, 1))
    texture *= np.float32(rng.uniform(0.35, 0.6) / binomial_noise_gain((1, 1, 1)))
    if factor > 1:
        texture = block_expand(texture, factor, shape)
    texture *= vol
    vol += texture


def _add_motors(
    vol: np.ndarray, motors: np.ndarray, cells: list[CellSpec], rng: np.random.Generator, spacing_a: float
) -> None:
    """Draw each motor along the normal of the nearest cell envelope, often with a flagellum (in place)."""
    voxel_nm = _voxel_nm(spacing_a)
    motor_amp = rng.uniform(0.75, 1.05)
    for m in motors:
        if cells:
            sdfs = [cell_sdf_at(c, m[None], spacing_a) for c in cells]
            best = int(np.argmin([abs(s[0][0]) for s in sdfs]))
            normal, periplasm_nm = sdfs[best][1][0], cells[best].periplasm_nm
        else:
            normal, periplasm_nm = rng.normal(size=3), 30.0
        amp = motor_amp * rng.uniform(0.85, 1.15)
        render_motor(vol, m, normal, spacing_a, amp, rng.uniform(*RING_RADIUS_NM), periplasm_nm)
        if rng.random() < 0.6:
            start = m + normal * (MOTOR_BELOW_INNER_NM + periplasm_nm + 5.0) / voxel_nm
            path = _flagellum_path(rng, start, normal, voxel_nm, vol.shape)
            if len(path) > 1:
                filament(vol, path, 10.0, spacing_a, rng.uniform(0.5, 0.8))


def _add_imaging(vol: np.ndarray, rng: np.random.Generator, spacing_a: float, difficulty: float) -> None:
    """CTF-like loss of low frequencies, noise, then finite resolution with the missing wedge (in place).

    The blur comes after the noise: the noise of a reconstruction is band-limited and anisotropic too.
    """
    voxel_nm = _voxel_nm(spacing_a)
    subtract_lowpass(vol, 25.0 / voxel_nm, rng.uniform(0.2, 0.45))
    s_xy = max(0.5, 1.2 / voxel_nm)
    passes = (binomial_passes(1.6 * s_xy), binomial_passes(s_xy), binomial_passes(s_xy))
    noise_std = NOISE_STD_REF * difficulty * rng.uniform(0.8, 1.2) * (NOISE_REF_SPACING_A / spacing_a) ** 0.75
    noise = rng.standard_normal(vol.shape, dtype=np.float32)
    noise *= np.float32(noise_std / binomial_noise_gain(passes))
    vol += noise
    binomial_blur(vol, passes, buffer=noise)


def _to_grey(
    vol: np.ndarray,
    rng: np.random.Generator,
    spacing_a: float,
    objects: list[dict] | None,
    inverted: bool,
    wrapped: bool,
) -> np.ndarray:
    """Density (consumed) to stored uint8 grey values: dense = dark, background, stretch, quirks."""
    image = vol
    np.negative(image, out=image)  # cryo-ET: dense = dark
    image += _background_2d(rng, vol.shape[1], vol.shape[2], _voxel_nm(spacing_a), objects)[None]
    out = match_mean(percentile_stretch(image), rng.uniform(114.0, 122.0))
    if inverted:
        out = 255 - out
    if wrapped:
        out += np.uint8(129)  # uint8 arithmetic wraps: (v - 127) mod 256
    return out


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
