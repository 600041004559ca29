"""What a training run reads: the train / validation split, the cached training volumes, the batch loader."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from byu_motor.config import Config, TrainConfig
from byu_motor.train.distributed import DistInfo, ShardedRangeSampler, barrier

if TYPE_CHECKING:
    from torch.utils.data import DataLoader, Dataset

    from byu_motor.data.cache import CachedVolume
    from byu_motor.data.layout import TomoRecord


def parse_label_source(spec: str, data_dir: Path) -> tuple[Path, Path]:
    """``"LABELS[:ROOT]"`` -> ``(labels file, data root)``; the root defaults to ``data_dir``.

    The text after the last ``:`` is a root only when the text before it names an existing file (so a path
    holding ``:`` still works as a plain label file).
    """
    head, sep, tail = spec.rpartition(":")
    if sep and tail and Path(head).is_file():
        return Path(head), Path(tail)
    return Path(spec), data_dir


def read_training_labels(
    data_dir: Path, sources: Sequence[str] = ()
) -> tuple[dict[str, TomoRecord], dict[str, Path]]:
    """Labels to train on and the slice folder of each tomogram, from one or several label files and roots.

    Args:
        data_dir: the run's data folder; with no ``sources`` its ``train_labels.csv`` is read.
        sources: ``"LABELS[:ROOT]"`` entries (``cfg.train.label_sources``): any label file
            :func:`byu_motor.data.label_formats.read_label_file` reads, whose tomograms lie in
            ``ROOT/train/<tomo_id>`` (``ROOT`` defaults to ``data_dir``).

    Returns:
        ``({tomo_id: TomoRecord}, {tomo_id: slice folder})`` in the order of the sources.

    Raises:
        ValueError: a tomo_id in two label files (naming both), a file without voxel spacings (an
            external grid list: convert it first) or an unreadable file (naming it).
    """
    from byu_motor.data.label_formats import read_label_file

    pairs = [parse_label_source(s, data_dir) for s in sources] or [(data_dir / "train_labels.csv", data_dir)]
    records: dict[str, TomoRecord] = {}
    folders: dict[str, Path] = {}
    origin: dict[str, Path] = {}
    for labels, root in pairs:
        for tid, rec in read_label_file(labels).items():
            if tid in records:
                raise ValueError(
                    f"{labels}: tomo_id {tid} is also in {origin[tid]}; each tomogram may come from one file"
                )
            if not rec.spacing_a > 0:
                raise ValueError(
                    f"{labels}: {tid} has no voxel spacing (an external list?); convert the volumes first"
                )
            records[tid], folders[tid], origin[tid] = rec, root / "train" / tid, labels
    return records, folders


def split_folds(
    records: dict[str, TomoRecord],
    cfg: Config,
    out_dir: Path,
    info: DistInfo,
    val_ids: Sequence[str] | None,
) -> tuple[list[str], list[str]]:
    """Train / validation tomo_ids: explicit ``val_ids``, else fold ``cfg.train.fold`` of ``train.folds_file``
    when set, else of ``folds.csv``.

    ``out_dir/folds.csv`` is written once by the main process (seeded by ``cfg.train.seed``) and read on every
    later run, so a resumed run validates on the same tomograms.

    Raises:
        ValueError: for ``val_ids`` not in ``records``, a ``folds.csv`` missing some of them, or a fold
            outside ``0..n_folds - 1``.
    """
    ids = list(records)
    if val_ids is not None:
        val = [tid for tid in ids if tid in set(val_ids)]
        missing = sorted(set(val_ids) - set(ids))
        if missing:
            raise ValueError(f"val_ids not in train_labels.csv: {missing[:5]}")
        return [tid for tid in ids if tid not in set(val)], val
    t = cfg.train
    if t.n_folds <= 1 or t.fold < 0:
        return ids, []
    from byu_motor.data.folds import held_out_ids, make_folds, read_folds, write_folds

    if t.folds_file:  # a given split (the seed's cv JSON): its fold's tomograms validate, every other trains
        held = held_out_ids(t.folds_file, t.fold)
        return [tid for tid in ids if tid not in held], [tid for tid in ids if tid in held]

    path = out_dir / "folds.csv"
    if info.is_main and not path.exists():
        write_folds(path, make_folds(records, t.n_folds, t.seed))
    barrier()
    folds = read_folds(path)
    unknown = sorted(set(ids) - set(folds))
    if unknown:
        raise ValueError(
            f"{path}: no fold for {len(unknown)} tomogram(s), e.g. {unknown[:3]}; delete it to re-split"
        )
    if not 0 <= t.fold < t.n_folds:
        raise ValueError(f"train.fold={t.fold} is outside 0..{t.n_folds - 1}")
    val = [tid for tid in ids if int(folds[tid]) == t.fold]
    return [tid for tid in ids if int(folds[tid]) != t.fold], val


def check_sampling(cfg: Config) -> None:
    """Refuse sampling settings that cannot work together, before any tomogram is read.

    Raises:
        ValueError: an unknown ``train.sampler``, ``train.resample_once`` for a 3D model without the seed
            sampler, or hard-negative mining with the seed sampler (it draws its own windows, so mined points
            would go unused) or for a 2D member.
    """
    t = cfg.train
    if t.sampler not in ("random", "seed"):
        raise ValueError(f"unknown train.sampler {t.sampler!r}; choose from ('random', 'seed')")
    if t.resample_once and cfg.model.dims == 3 and t.sampler != "seed":
        raise ValueError("train.resample_once needs train.sampler=seed for a 3D model (or a 2D member)")
    if t.hard_negative_ratio > 0 and cfg.model.dims == 2:
        raise ValueError("train.hard_negative_ratio must be 0 for a 2D member (its samples are slices)")
    if t.hard_negative_ratio > 0 and t.sampler == "seed":
        raise ValueError(
            "train.hard_negative_ratio must be 0 with train.sampler=seed (it draws its own windows)"
        )


def load_volumes(
    data_dir: Path,
    records: dict[str, TomoRecord],
    ids: list[str],
    cfg: Config,
    info: DistInfo,
    folders: Mapping[str, Path] | None = None,
) -> list[CachedVolume]:
    """Resampled cached volumes of the training tomograms (rank 0 fills the cache, the others then read it).

    ``folders`` gives a tomogram's slice folder (several data roots); by default ``data_dir/train/<tomo_id>``.
    The cache stays ``data_dir/.byu_cache`` for every root (tomo_ids are unique across roots). With
    ``train.resample_once`` the volumes stay at their own spacing (the seed sampler resamples each window, a
    2D member's slice dataset each slice triplet).
    """
    from byu_motor.data.cache import VolumeCache

    check_sampling(cfg)
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else data_dir / ".byu_cache"
    cache = VolumeCache(cache_dir, cfg.data, native=cfg.train.resample_once)
    folders = folders or {}

    def get_all(show: bool = False) -> list[CachedVolume]:
        items = [(folders.get(tid, data_dir / "train" / tid), records[tid]) for tid in ids]
        return cache.prepare(items, progress=show)

    if info.is_main:  # with a progress bar: a first run reads and resamples every tomogram
        vols = get_all(show=True)
    barrier()
    if not info.is_main:
        vols = get_all()
    return vols


def make_dataset(volumes: list[CachedVolume], cfg: Config, stride: Sequence[int], length: int) -> Dataset:
    """The training dataset of ``cfg``'s model: slice triplets for a 2D member (``model.dims == 2``); for a 3D
    model the seed's windows (``train.sampler == "seed"``:
    :class:`~byu_motor.data.seed_sampler.SeedWindowDataset`, every motor window in 16 views, with
    ``train.augment_set``) or random patches (:class:`~byu_motor.data.dataset.PatchDataset`).

    Args:
        volumes: cached training tomograms on ``cfg.data``'s grid; with ``train.resample_once`` at their own
            spacing, each window or slice triplet then resampled to ``data.spacing_a``.
        cfg: the experiment (``train.seed`` seeds the items).
        stride: the model's 3D output stride (a 2D member's samples use ``model.stride_2d`` instead).
        length: number of items.

    Raises:
        ValueError: settings :func:`check_sampling` refuses.
    """
    check_sampling(cfg)
    target = cfg.data.spacing_a if cfg.train.resample_once else None
    if cfg.model.dims == 2:
        from byu_motor.data.slices2d import SliceDataset

        m = cfg.model
        return SliceDataset(
            volumes,
            cfg.data,
            cfg.train,
            m.stride_2d,
            length,
            cfg.train.seed,
            slices=m.in_channels,
            target_spacing_a=target,
        )
    if cfg.train.sampler == "seed":
        from byu_motor.data.seed_sampler import SeedWindowDataset

        patch = cfg.data.patch_size
        return SeedWindowDataset(
            volumes, patch, cfg.train, stride, length, cfg.train.seed, target_spacing_a=target
        )
    from byu_motor.data.dataset import PatchDataset

    return PatchDataset(
        volumes, cfg.data, cfg.train, stride, length=length, seed=cfg.train.seed, augment=True
    )


def make_loader(
    dataset: Dataset,
    train_cfg: TrainConfig,
    first_batch: int,
    n_batches: int,
    info: DistInfo,
    device: torch.device,
) -> DataLoader:
    """A loader of this process's micro-batches among global micro-batches ``first_batch .. n_batches - 1``
    of ``dataset`` (:func:`make_dataset`).

    Its workers are not persistent: each new loader's workers copy the dataset as it is then (e.g. after
    hard negatives were set).
    """
    from torch.utils.data import DataLoader

    from byu_motor.data.dataset import collate_patches

    sampler = ShardedRangeSampler(first_batch, n_batches, train_cfg.batch_size, info.rank, info.world_size)
    return DataLoader(
        dataset,
        batch_size=train_cfg.batch_size,
        sampler=sampler,
        num_workers=train_cfg.num_workers,
        collate_fn=collate_patches,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=False,
    )
