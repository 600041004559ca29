"""The seed's window sampling: epochs of every foreground window in all 16 dihedral views plus weighted background windows.

Each cached tomogram is tiled into windows of the patch size without overlap (the last one flush with the far
edge). A window is *foreground* when a motor lies inside it (before augmentation). One epoch is every
foreground window in each of the 16 views of :func:`byu_motor.data.seed_augment.dihedral_views`, plus
``round(bg_ratio * that)`` background windows, each with a random view, drawn with replacement: every window
of a negative tomogram weighs 1, and the background windows of positive tomograms share a total weight of
``bg_from_pos`` times that of the negative ones (the seed's ``bg_from_pos_ratio``; their share of the
background is ``bg_from_pos / (1 + bg_from_pos)``). Epochs are shuffled; item ``i`` depends only on
``(seed, i)``, so the usual ``ShardedRangeSampler`` shards it across DDP ranks and resumes it mid-epoch.

With ``target_spacing_a`` the cached volumes may stay at their own spacing (``train.resample_once``): windows
then tile the grid the volume would have at the target spacing (the same tiles as a resampled cache), and the
spacing change joins zoom and affine in the one resampling of each window, as the seed's MONAI lazy resampling
did (one interpolation of the original voxels instead of two).

An item follows the seed's order: a window larger than the tomogram along an axis is cropped to the tomogram
(the seed's window starts at ``n - P < 0``), the crop is resampled (zoom, affine) about its own centre and
intensity-augmented, zeros are padded at the low end up to the window (they stay exactly 0 and no augmentation
statistic sees them), and the dihedral view comes last, as an exact permutation. Only the motors inside the
final window are listed and rendered in its target, the seed's keypoint crop; with the seed set the window's
grey levels are floored as the seed's uint8 crop was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from byu_motor.data.augment import Augmenter, plan_for_matrix
from byu_motor.data.cache import CachedVolume
from byu_motor.data.grid import Grid, as_triple
from byu_motor.data.seed_augment import (
    AUGMENT_SETS,
    SeedPixelAugment,
    dihedral_views,
    map_motors,
    motor_covariance,
    quantise_grey,
    resample_window,
)
from byu_motor.data.seed_dropout import seed_dropout_margins
from byu_motor.data.seed_geometry import sample_seed_matrix
from byu_motor.data.targets import inside_window, peak_gaussian_heatmap

N_VIEWS = 16


def tile_starts(size: int, window: int) -> list[int]:
    """Window starts along one axis: ``0, w, 2w, ...`` without overlap, the last flush with the end (or 0)."""
    last = max(size - window, 0)
    return sorted(set(range(0, last, window)) | {last})


@dataclass(frozen=True)
class Window:
    """One tile: volume index, corner ``(3,)`` in volume voxels, whether it holds a motor."""

    volume: int
    start: tuple[int, int, int]
    foreground: bool


def tile_windows(frames: Sequence[tuple[Sequence[int], np.ndarray]], patch: Sequence[int]) -> list[Window]:
    """All tiles of all volumes (row-major per volume), marked foreground when a motor is inside.

    Args:
        frames: per volume, the ``(Z, Y, X)`` shape of the grid to tile and its motors ``(n, 3)`` in that grid's voxels.
        patch: window ``(D, H, W)``.
    """
    out = []
    p = np.asarray(patch)
    for k, (shape, motors) in enumerate(frames):
        starts = [tile_starts(int(n), int(w)) for n, w in zip(shape, p)]
        for z in starts[0]:
            for y in starts[1]:
                for x in starts[2]:
                    s = np.array([z, y, x])
                    fg = bool(np.any(np.all((motors >= s - 0.5) & (motors < s + p - 0.5), axis=1)))
                    out.append(Window(k, (int(z), int(y), int(x)), fg))
    return out


def background_weights(
    windows: Sequence[Window], positive_volumes: set[int], bg_from_pos: float
) -> np.ndarray:
    """Draw probabilities of the background windows (``foreground`` False), in order; empty if there are none."""
    bg = [w for w in windows if not w.foreground]
    from_pos = np.array([w.volume in positive_volumes for w in bg], dtype=bool)
    n_pos, n_neg = int(from_pos.sum()), int((~from_pos).sum())
    if n_neg == 0 or n_pos == 0:
        return np.full(len(bg), 1.0 / max(len(bg), 1))
    wts = np.where(from_pos, bg_from_pos * n_neg / n_pos, 1.0)
    return wts / wts.sum()


class SeedWindowDataset(Dataset):
    """Map-style dataset of the seed's windows (see the module docstring); same items as ``PatchDataset``.

    Args:
        volumes: cached training tomograms.
        patch_size: window ``(D, H, W)`` in cached voxels.
        train_cfg: :class:`byu_motor.config.TrainConfig` (``bg_ratio``, ``bg_from_pos``, ``augment_set``,
            ``sigma_rule``, ``sigma_a``, ``augment``).
        stride: model output stride, scalar or ``(sz, sy, sx)``.
        length: number of items (``steps * batch_size``); epochs repeat, each reshuffled.
        seed: base seed.
        augment: ``False``: views only (no zoom, affine or voxel augmentation).
        target_spacing_a: the spacing of the windows (Angstrom, scalar or ``(3,)``); None: each volume's own.

    Items: ``image`` float32 ``[1, D, H, W]`` (normalised; with the seed set, grey levels first clipped to
    ``[0, 255]`` and floored, the seed's uint8 crop), ``target`` float32 ``[1, d, h, w]`` (the blob of each motor
    inside the window, peaking at exactly 1.0, :func:`byu_motor.data.targets.peak_gaussian_heatmap`),
    ``motors`` float32 ``[max_n, 3]`` in patch voxels (padded with -1), ``n_motors``, ``stride``, ``positive``
    (a foreground window), ``tomo_id``. A motor is inside when it lies in ``[0, P - 1]`` on every axis after
    the window's geometry (:func:`byu_motor.data.targets.inside_window`, the seed's keypoint crop): a motor
    just outside leaves no tail in the target.
    """

    def __init__(
        self,
        volumes: Sequence[CachedVolume],
        patch_size: Sequence[int],
        train_cfg: Any,
        stride: int | Sequence[int],
        length: int,
        seed: int = 0,
        augment: bool = True,
        target_spacing_a: float | Sequence[float] | None = None,
    ):
        if not volumes:
            raise ValueError("SeedWindowDataset needs at least one volume")
        self.augment_set = str(train_cfg.augment_set)
        if self.augment_set not in AUGMENT_SETS:
            raise ValueError(f"unknown train.augment_set {self.augment_set!r}; choose from {AUGMENT_SETS}")
        if float(train_cfg.bg_ratio) < 0 or float(train_cfg.bg_from_pos) < 0:
            raise ValueError(
                f"train.bg_ratio and train.bg_from_pos must be >= 0, got {train_cfg.bg_ratio}, {train_cfg.bg_from_pos}"
            )
        self.volumes = list(volumes)
        self.patch_size = tuple(int(v) for v in as_triple(patch_size, "patch_size"))
        self.stride = tuple(int(v) for v in as_triple(stride, "stride"))
        self.length, self.seed, self.augment = int(length), int(seed), bool(augment)
        self.sigma_a = float(train_cfg.sigma_a)
        self.sigma_rule = str(train_cfg.sigma_rule)
        self.augmenter = Augmenter(train_cfg.augment)
        self.views = dihedral_views()
        # the grid each volume's windows live on, and its output-to-volume voxel scale (identity when cached there)
        self.grids = [
            v.grid if target_spacing_a is None else v.grid.resampled(target_spacing_a) for v in self.volumes
        ]
        self.scales = [
            np.diag(np.asarray(g.spacing_a) / np.asarray(v.grid.spacing_a)) for v, g in self._pairs()
        ]
        frames = [(g.shape, v.grid.map_to(g, v.motors)) for v, g in self._pairs()]
        self.windows = tile_windows(frames, self.patch_size)
        self.fg = [i for i, w in enumerate(self.windows) if w.foreground]
        self.bg = [i for i, w in enumerate(self.windows) if not w.foreground]
        positive = {k for k, v in enumerate(self.volumes) if len(v.motors)}
        self.bg_p = background_weights(self.windows, positive, float(train_cfg.bg_from_pos))
        n_fg = len(self.fg) * N_VIEWS
        self.n_bg = int(round(float(train_cfg.bg_ratio) * n_fg)) if n_fg else len(self.bg)
        if not self.bg:
            self.n_bg = 0
        self.epoch_len = n_fg + self.n_bg
        self.max_motors = max(1, max(len(v.motors) for v in self.volumes))
        self._pixel: dict[tuple[float, ...], SeedPixelAugment] = {}
        self._epochs: dict[int, np.ndarray] = {}

    def _pairs(self) -> list[tuple[CachedVolume, Grid]]:
        return list(zip(self.volumes, self.grids))

    def epoch(self, e: int) -> np.ndarray:
        """Epoch ``e`` as a shuffled ``(epoch_len, 2)`` int array of (window index, view index)."""
        if e not in self._epochs:
            rng = np.random.default_rng([self.seed, e, 16])
            fg = np.array([(w, v) for w in self.fg for v in range(N_VIEWS)], dtype=np.int64).reshape(-1, 2)
            bg = np.stack(
                [
                    np.asarray(self.bg, dtype=np.int64)[rng.choice(len(self.bg), self.n_bg, p=self.bg_p)]
                    if self.n_bg
                    else np.zeros(0, np.int64),
                    rng.integers(0, N_VIEWS, self.n_bg),
                ],
                axis=1,
            )
            items = np.concatenate([fg, bg])
            self._epochs = {e: items[rng.permutation(len(items))]}  # keep one: workers walk epochs in order
        return self._epochs[e]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for SeedWindowDataset of length {self.length}")
        w_idx, view = self.epoch(i // self.epoch_len)[i % self.epoch_len]
        return self.sample(self.windows[int(w_idx)], int(view), np.random.default_rng([self.seed, int(i)]))

    def _augmentation(self, size: Sequence[int], rng: np.random.Generator) -> np.ndarray:
        """The zoom/affine matrix ``(3, 3)`` of one item (output to input offsets), for a crop of ``size``."""
        if not self.augment:
            return np.eye(3)
        if self.augment_set == "seed":
            return sample_seed_matrix(rng, size)
        return self.augmenter.sample_matrix(rng)

    def sample(self, window: Window, view: int, rng: np.random.Generator) -> dict[str, Any]:
        """Build the item of ``window`` seen through dihedral view ``view`` (see the class docstring).

        In the seed's order: the crop (clipped to the tomogram where it is smaller than the window), its
        zoom / affine (with the spacing change, one resampling about the crop's centre), the voxel
        augmentations, zero padding at the low end up to the window, the target, then the view.
        """
        v, grid = self.volumes[window.volume], self.grids[window.volume]
        p = np.asarray(self.patch_size)
        size = np.minimum(np.asarray(grid.shape), p)  # the seed's window starts at n - P < 0: cropped to n
        m = self.scales[window.volume] @ self._augmentation(tuple(int(n) for n in size), rng)
        centre = grid.map_to(v.grid, np.asarray(window.start) + (size - 1) / 2.0)[0]
        patch, origin = resample_window(v.volume, centre, m, size)
        motors = map_motors(v.motors, origin, m, size)
        sigma_vox = self.sigma_a / np.asarray(v.grid.spacing_a, dtype=np.float64)  # volume voxels
        if self.augment and self.augment_set == "seed":
            key = tuple(float(s) for s in grid.spacing_a)
            if key not in self._pixel:
                self._pixel[key] = SeedPixelAugment(key)
            margins = seed_dropout_margins(motor_covariance(m, sigma_vox, "covariance"))  # output voxels
            patch = self._pixel[key](patch, motors, rng, margin_vox=margins)
        elif self.augment:
            patch = self.augmenter.intensity(patch, rng)
        if self.augment_set == "seed":
            patch = quantise_grey(patch)  # the seed's uint8 crop
        pad = p - size  # zeros at the low end, after the voxel augmentations: they stay exactly 0
        if pad.any():
            patch = F.pad(patch, (int(pad[2]), 0, int(pad[1]), 0, int(pad[0]), 0))
            motors = motors + pad
        view_m = self.views[view]  # last, an exact signed permutation about the window's centre
        patch = torch.from_numpy(plan_for_matrix(view_m, self.patch_size).apply(patch.numpy()))
        motors = map_motors(motors, (p - 1) / 2.0, view_m, self.patch_size)
        inside = inside_window(motors, self.patch_size)  # the seed keeps (and renders) only these
        cov = motor_covariance(m @ view_m, sigma_vox, self.sigma_rule)
        target = self.target_for(grid, motors[inside], cov)
        padded = np.full((self.max_motors, 3), -1.0, dtype=np.float32)
        padded[: int(inside.sum())] = motors[inside]
        return {
            "image": v.normalizer(patch)[None].contiguous(),
            "target": torch.from_numpy(target)[None],
            "motors": torch.from_numpy(padded),
            "n_motors": torch.tensor(int(inside.sum()), dtype=torch.int64),
            "stride": torch.tensor(self.stride, dtype=torch.int64),
            "positive": torch.tensor(window.foreground),
            "tomo_id": v.tomo_id,
        }

    def target_for(self, volume_grid: Grid, motors: np.ndarray, cov_vox: np.ndarray) -> np.ndarray:
        """Target ``(d, h, w)`` for motors ``(n, 3)`` in patch voxels with covariance ``(3, 3)`` in voxels^2."""
        patch_grid = Grid(self.patch_size, volume_grid.spacing_a)
        heat = patch_grid.strided(self.stride)
        cells = patch_grid.map_to(heat, motors)
        s = np.diag(1.0 / np.asarray(self.stride, dtype=np.float64))
        return peak_gaussian_heatmap(heat.shape, cells, s @ cov_vox @ s)
