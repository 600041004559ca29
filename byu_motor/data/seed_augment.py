"""The seed's 3-D augmentation set: zoom and affine in one resampling of the tomogram, MONAI intensity,
low-resolution simulation and motor-safe coarse dropout, with the motors (mean and covariance) moved exactly.

Geometry follows :mod:`byu_motor.data.augment`: one ``(3, 3)`` matrix ``M`` from output offsets to input offsets
about the window centre, ``in - c_in = M @ (out - c_out)``, ``c_out = (P - 1) / 2``. ``M = Z @ A`` composes
the seed's zoom ``Z`` and affine ``A`` (rotation @ shear @ scale, built as MONAI 1.4.0 built them in its XYZ
order, see :mod:`byu_motor.data.seed_geometry`); the sample's dihedral view ``V`` (:func:`dihedral_views`) is
applied last by :class:`~byu_motor.data.seed_sampler.SeedWindowDataset`, an exact permutation. The image is
sampled once, trilinearly with zero padding, straight from the cached (already resampled) tomogram, so rotated
and zoomed-out windows show real context. Motors are mapped with ``M^-1`` and their covariance with
``M^-1 C M^-T``: nothing is re-detected.

A MONAI ``RandAffine`` would need the whole tomogram as a tensor for every window; reading only the footprint of
the output from the memory-mapped volume costs a fraction of that, so the resampling itself is one
``torch.nn.functional.grid_sample`` here. The coarse dropout is the seed's own (:mod:`byu_motor.data.seed_dropout`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from byu_motor.data.augment import plan_for_matrix
from byu_motor.data.dataset import read_block
from byu_motor.data.seed_dropout import draw_holes, fill_holes, hole_size_bounds
from byu_motor.data.seed_geometry import sample_seed_matrix

__all__ = [
    "AUGMENT_SETS",
    "SIGMA_RULES",
    "SeedPixelAugment",
    "dihedral_views",
    "map_motors",
    "motor_covariance",
    "quantise_grey",
    "resample_window",
    "sample_seed_matrix",
]

AUGMENT_SETS = ("ours", "seed")
SIGMA_RULES = ("same", "covariance")

# Section 5.3 of the seed recipe.
LOWRES_P, LOWRES_ZOOM = 0.2, (0.6, 0.9)
LOWRES_MODES = (
    (("trilinear", "trilinear"), 0.4),
    (("trilinear", "nearest"), 0.1),
    (("area", "trilinear"), 0.1),
    (("area", "nearest"), 0.1),
    (("nearest", "trilinear"), 0.2),
    (("nearest", "nearest"), 0.1),
)
DROPOUT_P = 0.1


def dihedral_views() -> list[np.ndarray]:
    """The 16 dihedral views as output-to-input matrices ``(3, 3)``: (identity, rot90 in y-x) x 8 flip sets.

    View 0 is the identity. Each is a signed permutation, so applying it alone needs no interpolation.
    """
    rot = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    views = []
    for k in (0, 1):
        for flips in itertools.product((1.0, -1.0), repeat=3):
            views.append(np.linalg.matrix_power(rot, k) @ np.diag(flips))
    return views


# largest input block (voxels) one grid_sample call reads; bigger footprints are split (~64 MiB as float32)
MAX_BLOCK_VOXELS = 2**24


def resample_window(
    volume: np.ndarray,
    centre: Sequence[float],
    matrix: np.ndarray,
    out_shape: Sequence[int],
    max_block_voxels: int = MAX_BLOCK_VOXELS,
) -> tuple[torch.Tensor, np.ndarray]:
    """Sample a window of ``out_shape`` around ``centre`` of ``volume`` through ``matrix``, zeros outside.

    Args:
        volume: ``(Z, Y, X)`` grey volume (uint8 memmap).
        centre: ``(3,)`` window centre in volume voxels (``start + (P - 1) / 2`` for a tile at ``start``).
        matrix: ``(3, 3)`` output-to-input offsets (it may include a spacing change: output voxels of another
            size than the volume's, see :class:`byu_motor.data.seed_sampler.SeedWindowDataset`).
        out_shape: output ``(D, H, W)``.
        max_block_voxels: the output is split into boxes whose input footprint stays under this many voxels
            (memory bound: rotated or zoomed-out windows of a large native-spacing tomogram); the values do not
            depend on it beyond float rounding of the sampling coordinates.

    Returns:
        ``(float32 tensor out_shape in grey units, origin (3,))`` where ``origin`` is the volume position that
        plays the role of ``c_in``: a volume point ``x`` lands at ``c_out + M^-1 (x - origin)``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    c = np.asarray(centre, dtype=np.float64)
    plan = plan_for_matrix(m, out_shape)
    if plan.is_permutation:  # exact: read the block and permute it
        e = np.asarray(plan.in_shape)
        start = np.floor(c - (e - 1) / 2.0).astype(np.int64)
        block = read_block(volume, start, plan.in_shape, 0.0)
        return torch.from_numpy(np.asarray(plan.apply(block))).float(), start + (e - 1) / 2.0
    return _resample_split(volume, c, m, np.asarray(out_shape, dtype=np.int64), int(max_block_voxels)), c


def _footprint(
    volume_shape: Sequence[int], c: np.ndarray, m: np.ndarray, p: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Input block ``[lo, hi)`` (clipped to the volume) that sampling ``p`` output voxels around ``c`` reads."""
    half = np.abs(m) @ (p - 1.0) / 2.0  # footprint of the output voxel centres
    shape = np.asarray(volume_shape)
    lo = np.clip(np.floor(c - half).astype(np.int64) - 1, 0, shape)
    hi = np.clip(np.ceil(c + half).astype(np.int64) + 2, 0, shape)
    return lo, hi


def _resample_split(
    volume: np.ndarray, c: np.ndarray, m: np.ndarray, p: np.ndarray, budget: int
) -> torch.Tensor:
    """Sample ``p`` output voxels around ``c``; halve the longest output axis while the footprint is too large.

    Each half is the same map ``x = c + M (o - c_out)`` restricted to its outputs: its centre moves by ``M d``,
    ``d`` the offset of the half's centre from the whole window's.
    """
    lo, hi = _footprint(volume.shape, c, m, p.astype(np.float64))
    if np.any(hi <= lo):
        return torch.zeros(tuple(int(v) for v in p))
    if np.prod(hi - lo) > budget and p.max() > 8:
        axis = int(np.argmax(p))
        n0 = int(p[axis]) // 2
        parts = []
        for start, n in ((0, n0), (n0, int(p[axis]) - n0)):
            q = p.copy()
            q[axis] = n
            d = np.zeros(3)
            d[axis] = start + (n - 1) / 2.0 - (p[axis] - 1) / 2.0
            parts.append(_resample_split(volume, c + m @ d, m, q, budget))
        return torch.cat(parts, dim=axis)
    pf = p.astype(np.float64)
    if np.all(np.abs(m[0, 1:]) < 1e-12) and np.all(np.abs(m[1:, 0]) < 1e-12):
        return _resample_z_apart(volume, c, m, pf, lo, hi)
    block = torch.from_numpy(
        np.asarray(volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], dtype=np.float32)
    )
    e = (hi - lo).astype(np.float64)
    # normalised coordinates (align_corners=False): n_in = diag(2/E) M diag(P/2) n_out + (2 (c - lo) + 1) / E - 1
    lin = np.diag(2.0 / e) @ m @ np.diag(pf / 2.0)
    shift = (2.0 * (c - lo) + 1.0) / e - 1.0
    theta = np.zeros((1, 3, 4), dtype=np.float32)
    theta[0, :, :3] = lin[::-1, ::-1]  # affine_grid orders axes (x, y, z)
    theta[0, :, 3] = shift[::-1]
    grid = F.affine_grid(torch.from_numpy(theta), [1, 1, *(int(v) for v in p)], align_corners=False)
    out = F.grid_sample(block[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0, 0]


def _affine_2d(a: np.ndarray, c: np.ndarray, p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> torch.Tensor:
    """``affine_grid`` sampling grid ``(1, *p, 2)`` of ``x = c + a (o - c_out)`` in the block ``[lo, hi)``."""
    e = (hi - lo).astype(np.float64)
    theta = np.zeros((1, 2, 3), dtype=np.float32)
    theta[0, :, :2] = (np.diag(2.0 / e) @ a @ np.diag(p / 2.0))[::-1, ::-1]
    theta[0, :, 2] = ((2.0 * (c - lo) + 1.0) / e - 1.0)[::-1]
    return F.affine_grid(torch.from_numpy(theta), [1, 1, *(int(v) for v in p)], align_corners=False)


def _resample_z_apart(
    volume: np.ndarray, c: np.ndarray, m: np.ndarray, p: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> torch.Tensor:
    """:func:`resample_window` for a matrix that keeps z apart from y-x (zoom, in-plane rotation, views).

    Trilinear is separable: z is interpolated linearly (zeros outside the volume), then all slices share one
    2-D bilinear ``grid_sample``. Same values as the 3-D path, without its ``D x H x W x 3`` sampling grid:
    measured about 4x faster at 224 x 448 x 448.
    """
    wz = c[0] + m[0, 0] * (np.arange(int(p[0])) - (p[0] - 1.0) / 2.0)
    z0 = np.floor(wz).astype(np.int64)
    frac = torch.from_numpy((wz - z0).astype(np.float32))[:, None, None]
    planes = np.unique(np.concatenate([z0, z0 + 1]))
    planes = planes[(planes >= 0) & (planes < volume.shape[0])]
    stack = torch.zeros((len(planes) + 1, int(hi[1] - lo[1]), int(hi[2] - lo[2])))  # last: the zero plane
    if len(planes):
        stack[:-1] = torch.from_numpy(
            np.asarray(volume[planes, lo[1] : hi[1], lo[2] : hi[2]], dtype=np.float32)
        )

    def rows(z: np.ndarray) -> torch.Tensor:
        k = np.searchsorted(planes, z)
        ok = (z >= 0) & (z < volume.shape[0])
        return stack[torch.from_numpy(np.where(ok, k, len(planes)))]

    t = torch.lerp(rows(z0), rows(z0 + 1), frac)
    grid = _affine_2d(m[1:, 1:], c[1:], p[1:], lo[1:], hi[1:])
    return F.grid_sample(t[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def map_motors(
    motors: np.ndarray, origin: np.ndarray, matrix: np.ndarray, out_shape: Sequence[int]
) -> np.ndarray:
    """Volume voxels ``(n, 3)`` -> output voxels ``(n, 3)`` of :func:`resample_window` (``c_out + M^-1 (x - o)``)."""
    c_out = (np.asarray(out_shape, dtype=np.float64) - 1.0) / 2.0
    x = np.asarray(motors, dtype=np.float64).reshape(-1, 3) - np.asarray(origin)
    return x @ np.linalg.inv(matrix).T + c_out


def motor_covariance(matrix: np.ndarray, sigma_vox: Sequence[float], rule: str) -> np.ndarray:
    """Covariance ``(3, 3)`` in output voxels^2 of a motor of per-axis sigma ``sigma_vox`` (input voxels).

    ``rule="covariance"``: ``M^-1 diag(sigma^2) M^-T``, the transformed Gaussian itself. ``rule="same"`` (the
    seed's ``heatmap_same_std``): an isotropic Gaussian whose sigma is the smallest principal std of that.
    """
    inv = np.linalg.inv(np.asarray(matrix, dtype=np.float64))
    cov = inv @ np.diag(np.asarray(sigma_vox, dtype=np.float64) ** 2) @ inv.T
    if rule == "covariance":
        return cov
    if rule == "same":
        return np.eye(3) * float(np.linalg.eigvalsh(cov).min())
    raise ValueError(f"unknown train.sigma_rule {rule!r}; choose from {SIGMA_RULES}")


def _as_tensor(x: Any) -> torch.Tensor:
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


class SeedPixelAugment:
    """The seed's voxel-wise augmentations, all MONAI transforms, seeded per call for reproducible items.

    Intensity (always one of, weights 0.4 / 0.2 / 0.3 / 0.1): (a) an additive ``U(-40, 80)`` or std-relative
    ``U(-0.7, 1.2)`` shift, then a fixed-mean contrast factor ``U(-0.6, 0)`` or ``U(0, 0.8)`` (weights 0.7 / 0.3),
    each step p ``1 - sqrt(0.5)``; (b) ``x (1 + U(-0.7, 0.7))`` p 0.5; (c) gamma ``U(0.25, 1.75)`` p 0.5;
    (d) histogram shift with 10-20 control points p 0.5. Low resolution (p 0.2): zoom ``U(0.6, 0.9)`` with a
    (down, up) interpolation pair drawn by the seed's weights. Coarse dropout (p 0.1): 3-8 holes of
    ``500 // s`` to ``2000 // s`` voxels per axis filled with uniform noise in ``[0, 255)``, each hole redrawn
    while it comes within a motor's margin (:func:`byu_motor.data.seed_dropout.draw_holes`), so no motor is
    ever covered.

    Args:
        spacing_a: ``(3,)`` voxel spacing of the patch in Angstrom (sizes the dropout holes).
    """

    def __init__(self, spacing_a: Sequence[float]):
        from monai.transforms import (
            Compose,
            OneOf,
            RandAdjustContrast,
            RandHistogramShift,
            RandScaleIntensity,
            RandScaleIntensityFixedMean,
            RandShiftIntensity,
            RandSimulateLowResolution,
            RandStdShiftIntensity,
        )

        p = 1.0 - math.sqrt(0.5)
        shift = OneOf([RandShiftIntensity((-40.0, 80.0), prob=p), RandStdShiftIntensity((-0.7, 1.2), prob=p)])
        contrast = OneOf(
            [RandScaleIntensityFixedMean(p, (-0.6, 0.0)), RandScaleIntensityFixedMean(p, (0.0, 0.8))],
            weights=(0.7, 0.3),
        )
        self.intensity = OneOf(
            [
                Compose([shift, contrast]),
                RandScaleIntensity((-0.7, 0.7), prob=0.5),
                RandAdjustContrast(prob=0.5, gamma=(0.25, 1.75)),
                RandHistogramShift(num_control_points=(10, 20), prob=0.5),
            ],
            weights=(0.4, 0.2, 0.3, 0.1),
        )
        # align_corners only for an interpolating upsampling: MONAI 1.5 (the Kaggle image's, torch 2.6) passes
        # it on to a nearest F.interpolate, which raises; MONAI 1.6 drops it there itself (same voxels)
        self.lowres = OneOf(
            [
                RandSimulateLowResolution(
                    1.0, d, u, LOWRES_ZOOM, align_corners=None if u == "nearest" else False
                )
                for (d, u), _ in LOWRES_MODES
            ],
            weights=[w for _, w in LOWRES_MODES],
        )
        self.hole_bounds = hole_size_bounds(spacing_a)

    def __call__(
        self,
        patch: torch.Tensor,
        motors: np.ndarray,
        rng: np.random.Generator,
        margin_vox: float | np.ndarray = 0.0,
    ) -> torch.Tensor:
        """Augment a float patch ``(D, H, W)`` in grey units (0..255); motors ``(n, 3)`` in patch voxels.

        ``margin_vox``: the dropout's margin around each motor in voxels, a scalar, per axis ``(3,)`` or per
        motor and axis ``(n, 3)`` (the seed's: :func:`byu_motor.data.seed_dropout.seed_dropout_margins`).

        Returns a float32 tensor ``(D, H, W)`` clipped to ``[0, 255]``.
        """
        seeds = rng.integers(0, 2**31 - 1, size=3)
        self.intensity.set_random_state(seed=int(seeds[0]))
        t = _as_tensor(self.intensity(patch[None].float().clone()))  # MONAI may work in place
        if rng.random() < LOWRES_P:
            self.lowres.set_random_state(seed=int(seeds[1]))
            t = _as_tensor(self.lowres(t))
        if rng.random() < DROPOUT_P:
            t = self.dropout(t, motors, margin_vox, np.random.default_rng(int(seeds[2])))
        return t[0].float().clamp_(0.0, 255.0)

    def dropout(
        self, t: torch.Tensor, motors: np.ndarray, margin_vox: float | np.ndarray, rng: np.random.Generator
    ) -> torch.Tensor:
        """The seed's coarse dropout of ``t`` ``(C, D, H, W)`` (a copy) sparing motors ``(n, 3)`` in patch voxels."""
        pts = np.asarray(motors, dtype=np.float64).reshape(-1, 3)
        holes = draw_holes(t.shape[1:], pts, margin_vox, self.hole_bounds, rng)
        return fill_holes(t.clone(), holes, rng)


def quantise_grey(patch: torch.Tensor) -> torch.Tensor:
    """The seed's last step, ``clip(0, 255).to(uint8)`` (truncation), kept in ``patch``'s float dtype ``(D, H, W)``."""
    return torch.floor(patch.clamp(0.0, 255.0))
