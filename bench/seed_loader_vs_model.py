"""Benchmark: does the seed's training loader keep ahead of the seed member it feeds? One run prints both rates.

- model: training patches/s of PRESET (default ``seed_resnext50``) at its patch, batch 2, random weights, fp16
  autocast with a gradient scaler on CUDA (float32 on the CPU): forward + BCE + backward + AdamW on one batch.
- loader: patches/s of a DataLoader over ``SeedWindowDataset`` with the preset's sampler settings and the full
  seed augmentation set, ``train.resample_once`` from one random tomogram of 313 x 782 x 782 voxels at 13.1 A
  (the extent of a 256 x 640 x 640 volume at 16 A), for each worker count given.

The ratio loader / model above 1 means the GPU is fed. Loader workers are single-threaded processes, so
``--workers 4`` stands for Kaggle's 4-core host.

    python bench/seed_loader_vs_model.py [--preset seed_resnext50] [--device cuda] [--workers 4 15]
    python bench/seed_loader_vs_model.py --preset tiny --device cpu --patch 32 64 64 --volume 40 96 96 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import DataLoader

from byu_motor.data.cache import CachedVolume
from byu_motor.data.dataset import collate_patches
from byu_motor.data.grid import Grid
from byu_motor.data.normalize import Normalizer
from byu_motor.data.seed_sampler import SeedWindowDataset
from byu_motor.models import create_model
from byu_motor.presets import get_preset
from byu_motor.train.optim import build_optimizer


def model_rate(cfg, device: torch.device, steps: int) -> tuple[float, tuple[int, ...]]:
    """Training patches/s of ``cfg``'s model on one random batch of 2 at its patch size."""
    model = create_model(cfg.model).to(device).train()
    opt = build_optimizer(model, cfg)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    x = torch.rand(2, 1, *cfg.data.patch_size, device=device)
    with torch.no_grad():
        shape = model(x[:1]).shape[2:]
    y = torch.rand(2, 1, *shape, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(2):  # warm-up: kernel choice, allocations
        step()
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    return steps * 2 / (time.perf_counter() - t0), tuple(model.stride)


def loader_rate(ds: SeedWindowDataset, workers: int, batches: int) -> float:
    """Patches/s a DataLoader of ``workers`` processes delivers (batch 2), after its first batch."""
    loader = DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate_patches, drop_last=True)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    n = 0
    for _, batch in zip(range(batches), it):
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="seed_resnext50")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--patch", type=int, nargs=3, default=None, help="default: the preset's training patch")
    p.add_argument("--volume", type=int, nargs=3, default=(313, 782, 782), help="voxels at 13.1 A")
    p.add_argument("--workers", type=int, nargs="+", default=[4, max(1, (os.cpu_count() or 2) - 1)])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batches", type=int, default=10, help="loader batches timed per worker count")
    args = p.parse_args()
    cfg = get_preset(args.preset)
    if args.patch:
        cfg.data.patch_size = tuple(args.patch)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.preset} at {'x'.join(map(str, cfg.data.patch_size))}, {name}, {os.cpu_count()} host cores")
    m_rate, stride = model_rate(cfg, device, args.steps)
    print(f"model: {m_rate:.2f} training patches/s (batch 2)")

    shape = tuple(args.volume)
    vol = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    grid = Grid(shape, 13.1)
    motors = np.array([[n / 2.0 for n in shape]])
    volume = CachedVolume("bench", vol, grid, grid, motors, Normalizer("fixed", 0.0, 1.0))
    t = SimpleNamespace(
        **{**vars(cfg.train), "sampler": "seed", "augment_set": "seed", "resample_once": True}
    )
    n = (max(args.workers) + 1) * (args.batches + 2) * 2 + 2
    ds = SeedWindowDataset(
        [volume], cfg.data.patch_size, t, stride, n, seed=0, target_spacing_a=cfg.data.spacing_a
    )
    for w in args.workers:
        rate = loader_rate(ds, w, args.batches)
        print(f"loader, {w:>2} workers: {rate:.2f} patches/s, loader / model = {rate / m_rate:.2f}")


if __name__ == "__main__":
    main()
