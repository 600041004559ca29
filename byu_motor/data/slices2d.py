"""Training samples of the 2D members: slice triplets around motors or far from them, 2D augmentation, 2D targets.

By default the cached volumes are on the member's grid (e.g. (32, 16, 16) A), so the triplet ``(z - 1, z, z + 1)``
has its slices one grid step apart, exactly as at inference. With ``target_spacing_a`` (``train.resample_once``,
the seed's way) the volumes stay at their own spacing: the triplet is ``(z - s, z, z + s)`` of original slices
with ``s = round(32 A / slice spacing)``, and each slice is first resized to 16 A per pixel (bilinear, as the
seed's OpenCV resize); the augmentation's warp then resamples it a second time, as the seed's did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from byu_motor.data.augment_2d import apply_homography, draw_geometry_2d, pixels_2d, seed_crop, warp
from byu_motor.data.cache import CachedVolume
from byu_motor.data.grid import as_triple

# the 99.9 % contour of a 2D Gaussian: d^2 / sigma^2 <= chi2(2).ppf(0.999)
CHI2_2D_999 = -2.0 * math.log(1e-3)
#: the seed's 2D epoch (``train.sampler=seed``) holds every positive and negative slot this many times
SEED_DUP_PER_EPOCH = 50
#: grey value outside the slices after the geometry (the seed's Albumentations cval / pad value)
FILL_GREY = 128.0


def gaussian_target_2d(
    shape: Sequence[int], stride: int, points: np.ndarray, sigma_px: float | np.ndarray, peaks: np.ndarray
) -> np.ndarray:
    """Heatmap ``(ceil(H/s), ceil(W/s))`` of 2D Gaussians, each at its own peak height, merged by max.

    Cell ``k`` covers pixels ``[k*s, (k+1)*s)`` with centre ``k*s + (s-1)/2``; each blob is cut at its 99.9 %
    contour.

    Args:
        shape: ``(H, W)`` of the image, pixels.
        stride: heatmap stride in pixels.
        points: ``(n, 2)`` centres ``(y, x)`` in pixels.
        sigma_px: Gaussian sigma in pixels, one for all or ``(n,)``.
        peaks: ``(n,)`` peak heights in [0, 1].
    """
    h, w = (-(-int(n) // stride) for n in shape)
    out = np.zeros((h, w), dtype=np.float32)
    cy = np.arange(h) * stride + (stride - 1) / 2.0
    cx = np.arange(w) * stride + (stride - 1) / 2.0
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    sigmas = np.broadcast_to(np.asarray(sigma_px, dtype=np.float64), (len(pts),))
    for (y, x), peak, sigma in zip(pts, peaks, sigmas):
        d2 = ((cy[:, None] - y) ** 2 + (cx[None, :] - x) ** 2) / sigma**2
        blob = np.where(d2 <= CHI2_2D_999, peak * np.exp(-0.5 * d2), 0.0)
        np.maximum(out, blob.astype(np.float32), out=out)
    return out


def truncated_normal(rng: np.random.Generator, sd: float, bound: float = 1.0) -> float:
    """A draw from ``N(0, sd^2)`` truncated to ``[-bound * sd, bound * sd]`` (drawn again until inside, never
    clipped to the bound; the seed's ``scipy.stats.truncnorm``). ``sd <= 0``: 0."""
    if sd <= 0:
        return 0.0
    while True:
        x = float(rng.normal())
        if abs(x) <= bound:
            return x * sd


class SliceDataset(Dataset):
    """Map-style dataset of slice-triplet samples; item ``i`` depends only on ``(seed, i)``.

    A sample is positive with probability ``1 / (1 + bg_ratio)``: a random (tomogram, distinct motor z), the
    centre slice drawn from a normal around that z with sd ``z_jitter_sigma * sigma_a`` truncated at one sd;
    otherwise a random slice farther than ``bg_min_dist_a`` from every motor (any slice of a tomogram
    without motors). With ``train.sampler == "seed"`` the epochs are the seed's: every (tomogram, distinct
    rounded motor z) once and ``round(bg_ratio x`` that ``)`` negative slots, each held
    :data:`SEED_DUP_PER_EPOCH` times and shuffled, so every positive is seen equally often.

    As the seed's crop, it lies inside the (fitted) augmented slices wherever they are large
    enough, and keeps the chosen motor at least ``bg_min_dist_a`` (times the geometry's keypoint scale,
    :func:`~byu_motor.data.augment_2d.draw_geometry_2d`, at most a quarter of the crop) from its border; smaller
    slices sit at its top left, padded with grey 128. Every motor inside the crop and within one jitter sd
    (rounded to slices, + 1 slice) of the centre slice is drawn as a 2D Gaussian of ``sigma_a`` times the
    keypoint scale, whose peak is ``exp(-dz^2 / 2 sigma_a^2)`` (dz in Angstrom).

    Args:
        volumes: cached tomograms on the member's grid (z, y, x spacing in Angstrom).
        data_cfg: ``patch_size`` (its last two values are the crop ``(H, W)``).
        train_cfg: ``sigma_a``, ``bg_ratio``, ``bg_min_dist_a``, ``z_jitter_sigma``, ``sampler``.
        stride: stride of the 2D logits (pixels).
        length: number of items.
        seed: base seed.
        augment: apply the seed's 2D augmentation set (:mod:`byu_motor.data.augment_2d`) in its order: voxel
            groups on the whole slices, then the geometry; outside the slices is grey 128 (as without it).
        slices: slices per sample (odd).
        target_spacing_a: the member's ``(z, y, x)`` grid in Angstrom when ``volumes`` are at their own spacing:
            slices ``round(z / slice spacing)`` apart, first resized to ``(y, x)`` per pixel. ``None``: the volumes
            are already on the member's grid.

    Items: ``image`` float32 ``[slices, H, W]`` (normalised like the volume), ``target`` float32
    ``[1, ceil(H/s), ceil(W/s)]``, ``motors`` float32 ``[max_n, 3]`` (dz in the volume's slices, y, x in
    crop pixels; -1 padded), ``n_motors``, ``positive``, ``tomo_id``.
    """

    def __init__(
        self,
        volumes: Sequence[CachedVolume],
        data_cfg: Any,
        train_cfg: Any,
        stride: int,
        length: int,
        seed: int = 0,
        augment: bool = True,
        slices: int = 3,
        target_spacing_a: float | Sequence[float] | None = None,
    ):
        if not volumes:
            raise ValueError("SliceDataset needs at least one volume")
        self.target_a = None if target_spacing_a is None else as_triple(target_spacing_a, "target_spacing_a")
        self.volumes, self.stride, self.length, self.seed = list(volumes), int(stride), int(length), int(seed)
        self.crop = tuple(int(v) for v in data_cfg.patch_size[1:])
        self.augment, self.half = bool(augment), int(slices) // 2
        self.sigma_a = float(train_cfg.sigma_a)
        self.pos_share = 1.0 / (1.0 + float(train_cfg.bg_ratio))
        self.jitter_a = float(train_cfg.z_jitter_sigma) * self.sigma_a
        self.min_dist_a = float(train_cfg.bg_min_dist_a)
        self.epochs = getattr(train_cfg, "sampler", "random") == "seed"
        self.positives = [
            (k, float(z)) for k, v in enumerate(self.volumes) for z in np.unique(self._motor_z(v))
        ]
        self.negatives = [self._far_slices(v) for v in self.volumes]
        self.with_negatives = [k for k, s in enumerate(self.negatives) if len(s)]
        self.max_motors = max(1, max(len(v.motors) for v in self.volumes))
        n_neg = round(len(self.positives) * float(train_cfg.bg_ratio)) if self.positives else 1
        self.n_slots = (len(self.positives) + (n_neg if self.with_negatives else 0)) * SEED_DUP_PER_EPOCH
        self._epoch: tuple[int, np.ndarray] | None = None

    def _motor_z(self, v: CachedVolume) -> np.ndarray:
        """Each motor's z as a positive sample's centre: the nearest slice with the seed's epochs, else 0.1."""
        return np.rint(v.motors[:, 0]) if self.epochs else np.round(v.motors[:, 0], 1)

    def epoch_slots(self, e: int) -> np.ndarray:
        """Epoch ``e`` of the seed's epochs: shuffled slots, ``k < len(positives)`` a positive, others negative."""
        if self._epoch is None or self._epoch[0] != e:
            slots = np.arange(self.n_slots) // SEED_DUP_PER_EPOCH
            self._epoch = (e, np.random.default_rng([self.seed, e, 2]).permutation(slots))
        return self._epoch[1]

    def _far_slices(self, v: CachedVolume) -> np.ndarray:
        z = np.arange(v.volume.shape[0], dtype=np.float64)
        if not len(v.motors):
            return z.astype(np.int64)
        dist_a = np.abs(z[:, None] - v.motors[None, :, 0]).min(axis=1) * v.grid.spacing_a[0]
        return np.flatnonzero(dist_a > self.min_dist_a)

    def slice_step(self, v: CachedVolume) -> int:
        """Original slices between a sample's neighbouring slices: 1 on the member's grid, else
        ``round(target z spacing / slice spacing)`` (at least 1)."""
        if self.target_a is None:
            return 1
        return max(1, int(round(self.target_a[0] / v.grid.spacing_a[0])))

    def pixel_size_a(self, v: CachedVolume) -> float:
        """The member's pixel size in Angstrom: the target's y spacing, or the volume's when it is on the grid."""
        return float(v.grid.spacing_a[1] if self.target_a is None else self.target_a[1])

    def to_member_pixels(self, slices: np.ndarray, v: CachedVolume) -> tuple[torch.Tensor, np.ndarray]:
        """``slices [C, Y, X]`` resized to the member's pixels as the seed did first (OpenCV linear: bilinear,
        pixel centres aligned, no antialiasing, rounded to grey levels), and the ``(3, 3)`` map of ``(y, x)``
        from the volume's pixels to the resized ones (identity when the volume is on the member's grid).

        Returns:
            float32 ``[C, round(Y * sy / ty), round(X * sx / tx)]`` and the homography.
        """
        x = torch.from_numpy(np.ascontiguousarray(slices)).float()
        if self.target_a is None:
            return x, np.eye(3)
        size = [
            max(1, round(n * s / t)) for n, s, t in zip(x.shape[1:], v.grid.spacing_a[1:], self.target_a[1:])
        ]
        out = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=False)[0]
        f = [o / n for o, n in zip(size, x.shape[1:])]  # y -> (y + 0.5) * f - 0.5 (align_corners=False)
        m = np.array([[f[0], 0.0, 0.5 * f[0] - 0.5], [0.0, f[1], 0.5 * f[1] - 0.5], [0.0, 0.0, 1.0]])
        return out.round().clamp(0.0, 255.0), m

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for SliceDataset of length {self.length}")
        return self.sample(i)

    def _positive(self, i: int, rng: np.random.Generator) -> int | None:
        """Item ``i``'s index in ``positives``, or ``None`` for a negative."""
        if self.epochs and self.n_slots:
            slot = int(self.epoch_slots(i // self.n_slots)[i % self.n_slots])
            return slot if slot < len(self.positives) else None
        use_pos = self.positives and (not self.with_negatives or rng.random() < self.pos_share)
        return int(rng.integers(len(self.positives))) if use_pos else None

    def _pick(self, i: int, rng: np.random.Generator) -> tuple[int, float, int | None]:
        """(volume index, centre slice, index of the motor to keep in the crop or None) of item ``i``."""
        p = self._positive(i, rng)
        if p is not None:
            k, mz = self.positives[p]
            v = self.volumes[k]
            dz = truncated_normal(rng, self.jitter_a / v.grid.spacing_a[0])
            z = int(np.clip(np.rint(mz + dz), 0, v.volume.shape[0] - 1))
            at_z = np.flatnonzero(self._motor_z(v) == mz)
            return k, z, int(at_z[int(rng.integers(len(at_z)))])
        k = self.with_negatives[int(rng.integers(len(self.with_negatives)))]
        far = self.negatives[k]
        return k, int(far[int(rng.integers(len(far)))]), None

    def sample(self, i: int) -> dict[str, Any]:
        """Build item ``i`` (see the class docstring)."""
        rng = np.random.default_rng([self.seed, int(i)])
        k, z, keep = self._pick(i, rng)
        v = self.volumes[k]
        sz = v.grid.spacing_a[0]
        offsets = np.arange(-self.half, self.half + 1) * self.slice_step(v)
        slices = np.asarray(v.volume[np.clip(z + offsets, 0, v.volume.shape[0] - 1)])
        # the seed's order: resize to the member's pixels, voxel augmentations on the whole slices, then the
        # geometry (filled with 128) and crop
        resized, to_px = self.to_member_pixels(slices, v)
        source = pixels_2d(resized, rng) if self.augment else resized
        g, kp_scale = draw_geometry_2d(rng, source.shape[1:], self.augment)
        px_a = self.pixel_size_a(v)
        crop = np.asarray(self.crop, dtype=np.float64)
        anchor = None if keep is None else apply_homography(to_px, v.motors[keep, 1:])[0]
        margin = 0.0
        if anchor is not None:  # the seed's 1000 A, times its keypoint scale (at most a quarter of the crop)
            margin = min(self.min_dist_a / px_a * kp_scale, float(crop.min()) / 4.0)
        g = seed_crop(g, source.shape[1:], self.crop, rng, anchor, margin)
        image = warp(source, g, self.crop, FILL_GREY)
        dz_a = (v.motors[:, 0] - z) * sz if len(v.motors) else np.zeros(0)
        near = np.abs(dz_a) <= (round(self.jitter_a / sz) + 1) * sz  # the seed's round(jitter) + 1 slices
        pts = apply_homography(g @ to_px, v.motors[near, 1:]) if near.any() else np.zeros((0, 2))
        # the seed draws only the motors inside the crop (pixel edges -0.5 .. size - 0.5), with its sigma
        # (sigma_a in member pixels) times the keypoint scale
        inside = np.all((pts >= -0.5) & (pts <= crop - 0.5), axis=1)
        peaks = np.exp(-0.5 * (dz_a[near] / self.sigma_a) ** 2)
        sigma_px = self.sigma_a / px_a * kp_scale
        target = gaussian_target_2d(self.crop, self.stride, pts[inside], sigma_px, peaks[inside])
        motors = np.full((self.max_motors, 3), -1.0, dtype=np.float32)
        kept = np.column_stack([dz_a[near][inside] / sz, pts[inside]])
        motors[: len(kept)] = kept
        return {
            "image": v.normalizer(image).float().contiguous(),
            "target": torch.from_numpy(target)[None],
            "motors": torch.from_numpy(motors),
            "n_motors": torch.tensor(len(kept), dtype=torch.int64),
            "positive": torch.tensor(keep is not None),
            "tomo_id": v.tomo_id,
        }
