"""Benchmark: DataLoader patches/s (2 workers) next to the model's training patches/s, and their ratio; then the
seed's window sampler with its full augmentation set, in patches/s per loader worker.

A ratio loader/model above 1 means the input pipeline keeps the model busy; below 1 the model waits for
data. Measured on the same machine in one run for the ``tiny`` preset and for one production preset at a
small patch (both read the same cached synthetic volumes, resampled to 64 A so one cache serves both).
First it prints the peak memory of each training memory mode (``full``, ``16gb``) of each seed member: the
no-GPU lower bound of :func:`byu_motor.train.memory_estimate.estimate_training_memory` (as ``bench/memory.py``;
``--memory-members`` with no name skips it).

    python bench/throughput.py [--data DIR] [--batches 20] [--steps 10] [--workers 2]
        [--production resnet18_unet_s16] [--patch 64 128 128] [--seed-items 6] [--big-items 3]
        [--memory-members seed_resnext50 seed_densenet121 seed_x3d_m]

The seed rows build items in this process (what one DataLoader worker does, less the collate): at ``--patch``
from the cached volumes, and at the seed's (224, 448, 448) from one random 256 x 640 x 640 volume at 16 A and
from the same extent at 13.1 A kept at its spacing (``train.resample_once``: spacing, zoom, affine and view in
one resampling per window); ``--big-items 0`` skips both. Last, the seed's 2D member samples
(``seed_maxvit_tiny_2d``: 3 x 896 x 896 with its full 2D augmentation) from the same extent cached at
(32, 16, 16) A and kept at 13.1 A (``train.resample_once``: original slices 32 A apart, resized in the one
warp); ``--items-2d 0`` skips them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import DataLoader

from byu_motor.config import Config
from byu_motor.data.cache import CachedVolume, VolumeCache
from byu_motor.data.dataset import PatchDataset, collate_patches
from byu_motor.data.grid import Grid
from byu_motor.data.layout import read_labels
from byu_motor.data.normalize import Normalizer
from byu_motor.data.seed_sampler import SeedWindowDataset
from byu_motor.data.slices2d import SliceDataset
from byu_motor.models import create_model
from byu_motor.presets import get_preset
from byu_motor.synth import generate_dataset
from byu_motor.train.engine import build_optimizer
from byu_motor.train.losses import HeatmapLoss
from byu_motor.train.memory_estimate import estimate_modes

SEED_MEMBERS = ("seed_resnext50", "seed_densenet121", "seed_x3d_m")


def loader_rate(cfg: Config, volumes: list, stride, batches: int, workers: int) -> float:
    """Patches per second delivered by a DataLoader over ``PatchDataset`` (after one warm-up batch)."""
    bs = cfg.train.batch_size
    ds = PatchDataset(volumes, cfg.data, cfg.train, stride, length=(batches + 1) * bs, seed=0, augment=True)
    loader = DataLoader(ds, batch_size=bs, num_workers=workers, collate_fn=collate_patches, drop_last=True)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    n = 0
    for batch in it:
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - t0)


def model_rate(cfg: Config, volumes: list, steps: int) -> tuple[float, tuple[int, int, int]]:
    """Training patches per second of forward + loss + backward + AdamW on one fixed batch (CPU)."""
    model = create_model(cfg.model).train()
    stride = tuple(model.stride)
    bs = cfg.train.batch_size
    ds = PatchDataset(volumes, cfg.data, cfg.train, stride, length=bs, seed=0, augment=False)
    batch = collate_patches([ds[i] for i in range(bs)])
    opt = build_optimizer(model, cfg)
    crit = HeatmapLoss(cfg.train)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss, _ = crit(model(batch["image"]), batch["target"])
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, oneDNN kernels)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * bs / (time.perf_counter() - t0), stride  # type: ignore[return-value]


def items_per_s(ds, items: int) -> float:
    """Items per second of one worker building ``ds[1] .. ds[items]`` after a warm-up ``ds[0]`` (imports, first
    allocations)."""
    ds[0]
    t0 = time.perf_counter()
    for i in range(1, items + 1):
        ds[i]
    return items / (time.perf_counter() - t0)


def seed_rate(volumes: list, patch, train_cfg, items: int, target_spacing_a: float | None = None) -> float:
    """Patches per second of one worker building ``SeedWindowDataset`` items (after one warm-up item)."""
    ds = SeedWindowDataset(
        volumes, patch, train_cfg, 16, length=items + 1, seed=0, target_spacing_a=target_spacing_a
    )
    return items_per_s(ds, items)


def big_volume(spacing_a: float | tuple[float, float, float] = 16.0) -> CachedVolume:
    """A random uint8 tomogram of 256 x 640 x 640 voxels at 16 A (a typical resampled size), or the same extent
    at ``spacing_a`` (as cached with ``train.resample_once``), with one motor in the middle."""
    spacing = np.broadcast_to(np.asarray(spacing_a, dtype=np.float64), (3,))
    shape = tuple(int(round(n * 16.0 / s)) for n, s in zip((256, 640, 640), spacing))
    vol = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    grid = Grid(shape, tuple(float(s) for s in spacing))
    return CachedVolume("big", vol, grid, grid, (np.array([shape]) - 1) / 2.0, Normalizer())


def print_seed_rates(tiny: Config, volumes: list, patch, seed_items: int, big_items: int) -> None:
    """The seed sampler + full seed augmentation set, patches/s per worker at ``patch`` and (224, 448, 448)."""
    t = SimpleNamespace(**{**vars(tiny.train), "sampler": "seed", "augment_set": "seed"})
    print("\nseed sampler + seed augmentation set, one worker (in-process)")
    print(f"{'patch':<14} {'cache':<22} {'items':>5} {'patches/s per worker':>21} {'s/patch':>8}")
    rows = [(tuple(patch), "resampled", volumes, seed_items, t, None)]
    if big_items > 0:
        once = SimpleNamespace(**{**vars(t), "resample_once": True})
        rows.append(((224, 448, 448), "resampled (16 A)", [big_volume()], big_items, t, None))
        rows.append(((224, 448, 448), "13.1 A, resample_once", [big_volume(13.1)], big_items, once, 16.0))
    for size, cache, vols, n, train_cfg, target in rows:
        rate = seed_rate(vols, size, train_cfg, n, target)
        print(f"{'x'.join(map(str, size)):<14} {cache:<22} {n:>5} {rate:>21.3f} {1.0 / rate:>8.2f}")


def print_2d_rates(items: int) -> None:
    """Samples/s of one worker building the seed's 2D member samples, from a (32, 16, 16) A cache and from the
    tomogram at 13.1 A (``train.resample_once``)."""
    if items <= 0:
        return
    cfg = get_preset("seed_maxvit_tiny_2d")
    print("\nseed 2D member samples (3 x 896 x 896, full 2D augmentation), one worker (in-process)")
    for cache, vol, target in (
        ("(32, 16, 16) A cache", big_volume((32.0, 16.0, 16.0)), None),
        ("13.1 A, resample_once", big_volume(13.1), cfg.data.spacing_a),
    ):
        ds = SliceDataset([vol], cfg.data, cfg.train, 16, items + 1, seed=0, target_spacing_a=target)
        print(f"{cache:<24} {items:>5} items  {items_per_s(ds, items):8.2f} samples/s per worker")


def print_memory_modes(members: list[str]) -> None:
    """Peak memory of one fp16 training micro-batch per (member, memory mode), at the preset's patch and batch."""
    if not members:
        return
    print("training memory per mode (meta-device estimate at the preset's patch, fp16, no GPU)")
    for member, mode, e in estimate_modes(members):
        print(f"{member:18s} {mode:5s} {e.line()}", flush=True)
    print()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("/tmp/byu_bench/synth_s025_40_20"))
    p.add_argument("--n-volumes", type=int, default=6, help="cached training volumes to sample from")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--production", default="resnet18_unet_s16")
    p.add_argument("--patch", type=int, nargs=3, default=[64, 128, 128])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--seed-items", type=int, default=6, help="seed-sampler items timed at --patch (default 6)"
    )
    p.add_argument(
        "--big-items",
        type=int,
        default=3,
        help="seed-sampler items timed at 224x448x448, 0: skip (default 3)",
    )
    p.add_argument(
        "--items-2d", type=int, default=20, help="2D member samples timed per cache, 0: skip (default 20)"
    )
    p.add_argument(
        "--memory-members",
        nargs="*",
        default=list(SEED_MEMBERS),
        help="presets whose training memory per mode is estimated first, none: skip (default: the seed's three)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print_memory_modes(args.memory_members)

    if not (args.data / "train_labels.csv").exists():
        generate_dataset(args.data, max(args.n_volumes, 4), 0, scale=0.25, seed=0, workers=args.threads)
    records = list(read_labels(args.data / "train_labels.csv").values())[: args.n_volumes]

    tiny = get_preset("tiny").override(list(args.overrides))
    prod = get_preset(args.production).override(
        [
            "data.spacing_a=" + ",".join(map(str, tiny.data.spacing_a)),
            "data.patch_size=" + ",".join(map(str, args.patch)),
        ]
    )
    prod.override(list(args.overrides))
    prod.train.batch_size = 2
    cache = VolumeCache(args.data / ".byu_cache", tiny.data)
    volumes = [cache.get(args.data / "train" / r.tomo_id, r) for r in records]

    print(f"threads {args.threads}, loader workers {args.workers}, {len(volumes)} cached volumes")
    print(
        f"{'preset':<28} {'patch':<14} {'batch':>5} {'loader p/s':>11} {'model p/s':>10} {'loader/model':>13}"
    )
    for name, cfg in (("tiny", tiny), (f"{args.production} (small)", prod)):
        m_rate, stride = model_rate(cfg, volumes, args.steps)
        l_rate = loader_rate(cfg, volumes, stride, args.batches, args.workers)
        patch = "x".join(map(str, cfg.data.patch_size))
        print(
            f"{name:<28} {patch:<14} {cfg.train.batch_size:>5} {l_rate:>11.1f} {m_rate:>10.2f} {l_rate / m_rate:>13.2f}"
        )
    print_seed_rates(tiny, volumes, args.patch, args.seed_items, args.big_items)
    print_2d_rates(args.items_2d)


if __name__ == "__main__":
    main()
