"""Training patches from cached tomograms: positive/negative sampling, augmentation, heatmap targets, batch mixing."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from byu_motor.data.augment import NO_AUGMENT, Augmenter, GeometryPlan, augment_settings, plan_for_matrix
from byu_motor.data.cache import CachedVolume
from byu_motor.data.grid import Grid, as_triple
from byu_motor.data.salient import salient_points
from byu_motor.data.targets import heatmap_coords, make_target

# Motors are placed uniformly in this central fraction of a positive patch (0.8 = central 80 %).
POSITIVE_CENTRAL_FRACTION = 0.8
# Attempts to find a negative crop with no motor inside before accepting one that has some.
NEGATIVE_TRIES = 8


def read_block(volume: np.ndarray, start: Sequence[int], shape: Sequence[int], fill: float) -> np.ndarray:
    """Copy ``volume[start : start + shape]`` (uint8), filling the part outside the volume with ``fill``.

    Only the requested block is read from a memmap, never the whole volume.

    Args:
        volume: ``(Z, Y, X)`` array (typically a read-only memmap).
        start: ``(3,)`` integer corner, may be negative or run past the end.
        shape: ``(3,)`` block shape.
        fill: grey value for voxels outside the volume.

    Returns:
        uint8 array ``shape``.
    """
    start = [int(s) for s in start]
    shape = [int(s) for s in shape]
    src = tuple(slice(max(0, a), min(n, a + s)) for a, s, n in zip(start, shape, volume.shape))
    if all(sl.stop - sl.start == s for sl, s in zip(src, shape)):
        return np.array(volume[src], dtype=np.uint8)
    out = np.full(shape, int(round(fill)), dtype=np.uint8)
    if all(sl.stop > sl.start for sl in src):
        dst = tuple(slice(sl.start - a, sl.stop - a) for sl, a in zip(src, start))
        out[dst] = volume[src]
    return out


class PatchDataset(Dataset):
    """Map-style dataset of random training patches; item ``i`` depends only on ``(seed, i)``.

    With probability ``train_cfg.pos_ratio`` a patch holds a random motor (a random positive tomogram, then
    a random motor of it) placed uniformly in the central 80 % of the patch; otherwise it is a random crop of
    a random tomogram, preferring crops without motors. A fraction ``train_cfg.salient_ratio`` of the negative
    crops is a hard negative instead: centred (within the central 80 %) on one of the tomogram's most
    blob-like objects away from its motors (:func:`byu_motor.data.salient.salient_points`, found once per
    tomogram when the dataset is built), and a fraction ``train_cfg.hard_negative_ratio`` is centred on the
    model's own mined false positives (:meth:`set_hard_negatives`), drawn first. The target is always built from ALL motors of the tomogram that reach
    the patch, so a negative crop that happens to hold a motor is still labelled.

    Args:
        volumes: cached training tomograms (:class:`byu_motor.data.cache.CachedVolume`).
        data_cfg: :class:`byu_motor.config.DataConfig` (``patch_size``).
        train_cfg: :class:`byu_motor.config.TrainConfig` (``pos_ratio``, ``salient_ratio``,
            ``salient_radius_a``, ``sigma_a``, ``target``, ``label_smoothing``, ``augment``, ``augment_set``:
            ``"seed"`` draws the seed's geometry and voxel augmentations instead of ``augment``'s).
        stride: model output stride, scalar or ``(sz, sy, sx)``.
        length: number of items (e.g. ``steps * batch_size``).
        seed: base seed.
        augment: apply the augmentations of ``train_cfg.augment`` (``False``: plain crops).

    Items are dicts: ``image`` float32 ``[1, D, H, W]`` (normalised), ``target`` float32
    ``[1, ceil(D/sz), ceil(H/sy), ceil(W/sx)]``, ``motors`` float32 ``[max_n, 3]`` in patch voxels (padded
    with -1), ``n_motors`` int64, ``stride`` int64 ``[3]``, ``positive`` bool, ``tomo_id`` str.
    """

    def __init__(
        self,
        volumes: Sequence[CachedVolume],
        data_cfg: Any,
        train_cfg: Any,
        stride: int | Sequence[int],
        length: int,
        seed: int = 0,
        augment: bool = True,
    ):
        if not volumes:
            raise ValueError("PatchDataset needs at least one volume")
        self.volumes = list(volumes)
        self.patch_size = tuple(int(v) for v in data_cfg.patch_size)
        self.stride = tuple(int(v) for v in as_triple(stride, "stride"))
        self.length = int(length)
        self.seed = int(seed)
        self.pos_ratio = float(train_cfg.pos_ratio)
        self.sigma_a = float(train_cfg.sigma_a)
        self.target_kind = str(train_cfg.target)
        self.label_smoothing = float(train_cfg.label_smoothing)
        self.target_radius_a = getattr(train_cfg, "target_radius_a", None)
        self.augmenter = Augmenter(train_cfg.augment if augment else NO_AUGMENT)
        # "seed": the seed's zoom / affine / 16 views and MONAI voxel set (byu_motor.data.seed_augment)
        self.augment_set = str(getattr(train_cfg, "augment_set", "ours")) if augment else "ours"
        if self.augment_set not in ("ours", "seed"):
            raise ValueError(f"unknown train.augment_set {self.augment_set!r}; choose from ('ours', 'seed')")
        self._seed_pixel: dict[tuple[float, ...], Any] = {}
        if not augment:
            augment_settings(train_cfg.augment)  # still validate the keys
        self._motors = [v.motors for v in self.volumes]
        self.positives = [i for i, v in enumerate(self.volumes) if len(v.motors)]
        self.max_motors = max(1, max(len(v.motors) for v in self.volumes))
        self.salient_ratio = float(getattr(train_cfg, "salient_ratio", 0.0))
        self.salient: list[np.ndarray] = []
        if self.salient_ratio > 0:
            radius = float(getattr(train_cfg, "salient_radius_a", 250.0))
            self.salient = [
                salient_points(v.volume, v.grid.spacing_a, radius, exclude=v.motors, exclude_a=4 * radius)
                for v in self.volumes
            ]
        self.with_salient = [i for i, pts in enumerate(self.salient) if len(pts)]
        self.hard_ratio = float(getattr(train_cfg, "hard_negative_ratio", 0.0))
        self.hard: list[np.ndarray] = []
        self.with_hard: list[int] = []

    def set_hard_negatives(self, points: Sequence[np.ndarray]) -> None:
        """Mined hard negatives: one ``(k, 3)`` array of voxel positions per volume (see ``train.mining``).

        A fraction ``train_cfg.hard_negative_ratio`` of the negative crops is then centred on one of them.
        Set it before the DataLoader's workers start (they copy the dataset).
        """
        if len(points) != len(self.volumes):
            raise ValueError(
                f"got hard negatives for {len(points)} volumes, the dataset has {len(self.volumes)}"
            )
        self.hard = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in points]
        self.with_hard = [i for i, pts in enumerate(self.hard) if len(pts)]

    def __len__(self) -> int:
        return self.length

    def _start(self, v: CachedVolume, plan: GeometryPlan, rng: np.random.Generator, motor: np.ndarray | None):
        """Corner of the input block in volume voxels."""
        shape = np.asarray(v.volume.shape)
        e = np.asarray(plan.in_shape)
        lo, hi = np.minimum(0, shape - e), np.maximum(0, shape - e)  # whole block inside, or volume inside it
        if motor is None:
            # a uniform CENTRE, then the block clamped inside: border voxels (reconstruction edges, the ice
            # surfaces) are seen about as often as inner ones. A uniform corner would show a border voxel
            # in only 1 of (n - e + 1) crops, and the model would then fire on borders at inference.
            centre = rng.uniform(0, shape)
            return np.clip(np.floor(centre - e / 2.0).astype(np.int64), lo, hi)
        p = np.asarray(plan.out_shape, dtype=np.float64)
        margin = (1.0 - POSITIVE_CENTRAL_FRACTION) / 2.0
        u = rng.uniform(margin * p - 0.5, (1.0 - margin) * p - 0.5)  # wanted motor position in the output
        want_in = (e - 1) / 2.0 + plan.matrix @ (u - (p - 1) / 2.0)  # ... and in the input block
        return np.clip(np.rint(motor - want_in).astype(np.int64), lo, hi)

    def _around(
        self,
        having: Sequence[int],
        points: Sequence[np.ndarray],
        plan: GeometryPlan,
        rng: np.random.Generator,
    ) -> tuple[CachedVolume, np.ndarray]:
        """A random volume among ``having``, then a random one of its ``points``; the block corner around it."""
        k = having[int(rng.integers(len(having)))]
        v, pts = self.volumes[k], points[k]
        return v, self._start(v, plan, rng, pts[int(rng.integers(len(pts)))])

    def _plan(self, rng: np.random.Generator) -> GeometryPlan:
        if self.augment_set == "ours":
            return self.augmenter.plan(self.patch_size, rng)
        from byu_motor.data.seed_augment import dihedral_views, sample_seed_matrix

        view = dihedral_views()[int(rng.integers(16))]
        return plan_for_matrix(sample_seed_matrix(rng) @ view, self.patch_size)

    def _intensity(
        self, v: CachedVolume, patch: torch.Tensor, motors: np.ndarray, rng: np.random.Generator
    ) -> torch.Tensor:
        if self.augment_set == "ours":
            return self.augmenter.intensity(patch, rng)
        from byu_motor.data.seed_augment import SeedPixelAugment

        key = tuple(float(s) for s in v.grid.spacing_a)
        if key not in self._seed_pixel:
            self._seed_pixel[key] = SeedPixelAugment(key)
        margin = self.sigma_a / min(key)  # dropout holes keep a target sigma away from every motor
        return self._seed_pixel[key](patch, motors, rng, margin_vox=margin)

    def sample(self, i: int) -> dict[str, Any]:
        """Build item ``i`` (see the class docstring)."""
        rng = np.random.default_rng([self.seed, int(i)])
        plan = self._plan(rng)
        positive = bool(self.positives) and rng.random() < self.pos_ratio
        if positive:
            v, start = self._around(self.positives, self._motors, plan, rng)
        elif self.with_hard and rng.random() < self.hard_ratio:
            v, start = self._around(self.with_hard, self.hard, plan, rng)
        elif self.with_salient and rng.random() < self.salient_ratio:
            v, start = self._around(self.with_salient, self.salient, plan, rng)
        else:
            v = self.volumes[int(rng.integers(len(self.volumes)))]
            for _ in range(NEGATIVE_TRIES):
                start = self._start(v, plan, rng, None)
                inside = plan.map_points(v.motors - start)
                if not np.any(
                    np.all((inside >= -0.5) & (inside < np.asarray(self.patch_size) - 0.5), axis=1)
                ):
                    break
        # Outside the tomogram pad with its mean grey, not 0: 0 is the saturated dark of gold fiducials, so a
        # zero slab is a hard artificial edge the model could learn as a cue, while mean grey normalises to
        # about 0, which is what zero padding of the normalised input looks like at inference.
        block = read_block(v.volume, start, plan.in_shape, v.mean_grey)
        patch, motors = self.augmenter.apply_geometry(block, v.motors - start, plan)
        patch = torch.as_tensor(patch).float()
        patch = self._intensity(v, patch, motors, rng)
        image = v.normalizer(patch)[None]
        target = self.target_for(v.grid, motors)
        inside = np.all((motors >= -0.5) & (motors < np.asarray(self.patch_size) - 0.5), axis=1)
        kept = motors[inside]
        padded = np.full((self.max_motors, 3), -1.0, dtype=np.float32)
        padded[: len(kept)] = kept
        return {
            "image": image.contiguous(),
            "target": torch.from_numpy(target)[None],
            "motors": torch.from_numpy(padded),
            "n_motors": torch.tensor(len(kept), dtype=torch.int64),
            "stride": torch.tensor(self.stride, dtype=torch.int64),
            "positive": torch.tensor(positive),
            "tomo_id": v.tomo_id,
        }

    def target_for(self, volume_grid: Grid, motors_patch_vox: np.ndarray) -> np.ndarray:
        """Target ``(d, h, w)`` of a patch for motors ``(n, 3)`` in patch voxels (outside ones give tails).

        The patch grid takes the volume's spacing, so ``sigma_a`` is in Angstrom of the target grid.
        """
        patch_grid = Grid(self.patch_size, volume_grid.spacing_a)
        heat, cells = heatmap_coords(patch_grid, self.stride, motors_patch_vox)
        return make_target(
            self.target_kind,
            heat,
            cells,
            self.sigma_a,
            label_smoothing=self.label_smoothing,
            radius_a=self.target_radius_a,
        )

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for PatchDataset of length {self.length}")
        return self.sample(i)


def collate_patches(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack dataset items into a batch: tensors stacked along a new dim 0, strings kept as lists."""
    if not items:
        raise ValueError("collate_patches got an empty list")
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else list(values)
    return out


def _batch_stride(batch: Mapping[str, Any]) -> tuple[int, int, int]:
    if "stride" in batch:
        return tuple(int(s) for s in batch["stride"][0])  # type: ignore[return-value]
    image, target = batch["image"], batch["target"]
    return tuple(math.ceil(a / b) for a, b in zip(image.shape[2:], target.shape[2:]))  # type: ignore[return-value]


def mix_batch(batch: dict[str, Any], train_cfg: Any, rng: np.random.Generator) -> dict[str, Any]:
    """Mixup and/or cutmix across a batch (probabilities ``augment["mixup"]``, ``augment["cutmix"]``).

    Mixup: ``x = lam * x + (1 - lam) * x[perm]`` for image and target with one ``lam ~ Beta(a, a)``.
    Cutmix: a random box of heatmap cells (and the input voxels they cover, ``[k*s, (k+1)*s)``) is pasted
    from ``x[perm]`` into image and target, so target cells stay aligned with their voxels. ``motors`` and
    ``tomo_id`` keep describing the un-mixed sample.

    Args:
        batch: output of :func:`collate_patches` (``image`` ``[B, 1, D, H, W]``, ``target``
            ``[B, 1, d, h, w]``; ``stride`` if present, else inferred from the shapes).
        train_cfg: :class:`byu_motor.config.TrainConfig` (its ``augment`` dict).
        rng: random generator.

    Returns:
        The same dict with ``image`` and ``target`` replaced (new tensors).
    """
    cfg = augment_settings(train_cfg.augment)
    image, target = batch["image"], batch["target"]
    b = image.shape[0]
    if b < 2:
        return batch
    if rng.random() < cfg["mixup"]:
        lam = float(rng.beta(cfg["mixup_alpha"], cfg["mixup_alpha"]))
        perm = torch.from_numpy(rng.permutation(b))
        image = lam * image + (1.0 - lam) * image[perm]
        target = lam * target + (1.0 - lam) * target[perm]
    if rng.random() < cfg["cutmix"]:
        lam = float(rng.beta(cfg["cutmix_alpha"], cfg["cutmix_alpha"]))
        perm = torch.from_numpy(rng.permutation(b))
        stride = _batch_stride(batch)
        cells = target.shape[2:]
        frac = (1.0 - lam) ** (1.0 / 3.0)  # box volume fraction 1 - lam
        size = [max(1, int(round(n * frac))) for n in cells]
        lo = [int(rng.integers(0, n - s + 1)) for n, s in zip(cells, size)]
        tsl = tuple(slice(a, a + s) for a, s in zip(lo, size))
        isl = tuple(slice(a * st, (a + s) * st) for a, s, st in zip(lo, size, stride))
        image, target = image.clone(), target.clone()
        image[(..., *isl)] = image[perm][(..., *isl)]
        target[(..., *tsl)] = target[perm][(..., *tsl)]
    out = dict(batch)
    out["image"], out["target"] = image, target
    return out
