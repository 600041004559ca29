"""Benchmark: DataLoader patches/s (2 workers) next to the model's training patches/s, and their ratio.

A ratio loader/model above 1 means the input pipeline keeps the model busy; below 1 the model waits for
data. Measured on the same machine in one run for the ``tiny`` preset and for one production preset at a
small patch (both read the same cached synthetic volumes, resampled to 64 A so one cache serves both).

    python bench/throughput.py [--data DIR] [--batches 20] [--steps 10] [--workers 2]
        [--production resnet18_unet_s16] [--patch 64 128 128]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from byu_motor.config import Config
from byu_motor.data.cache import VolumeCache
from byu_motor.data.dataset import PatchDataset, collate_patches
from byu_motor.data.layout import read_labels
from byu_motor.models import create_model
from byu_motor.presets import get_preset
from byu_motor.synth import generate_dataset
from byu_motor.train.engine import build_optimizer
from byu_motor.train.losses import HeatmapLoss


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
    args = p.parse_args()
    torch.set_num_threads(args.threads)

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


if __name__ == "__main__":
    main()
