"""Benchmark: does the seed's training loader keep ahead of the seed member it feeds? One run prints both rates.

- model: training patches/s of PRESET (default ``seed_resnext50``) at its patch and micro-batch, random weights,
  fp16 autocast with a gradient scaler on CUDA (float32 on the CPU): forward + BCE + backward + AdamW on one
  batch. A 2D member (e.g. ``seed_maxvit_tiny_2d``) trains on slice triplets ``[B, 3, H, W]``.
- loader: patches/s of a DataLoader over the preset's training dataset (``train.inputs.make_dataset``: the seed's
  windows with the full seed augmentation set, or a 2D member's slice triplets with its 2D set), with
  ``train.resample_once`` from one random tomogram of 313 x 782 x 782 voxels at 13.1 A (the extent of a
  256 x 640 x 640 volume at 16 A), for each worker count given.

The ratio loader / model above 1 means the GPU is fed. Loader workers are single-threaded processes, so
``--workers 4`` stands for Kaggle's 4-core host.

    python bench/seed_loader_vs_model.py [--preset seed_resnext50] [--device cuda] [--workers 4 15]
    python bench/seed_loader_vs_model.py --preset tiny --device cpu --patch 32 64 64 --volume 40 96 96 --workers 1 2
    python bench/seed_loader_vs_model.py --preset tiny_2d --device cpu --patch 3 64 64 --volume 40 96 96 --workers 1
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from byu_motor.data.cache import CachedVolume
from byu_motor.data.dataset import collate_patches
from byu_motor.data.grid import Grid
from byu_motor.data.normalize import Normalizer
from byu_motor.models import create_model
from byu_motor.presets import get_preset
from byu_motor.train.inputs import make_dataset
from byu_motor.train.optim import build_optimizer


def model_rate(cfg, device: torch.device, steps: int) -> tuple[float, tuple[int, ...]]:
    """Training patches/s of ``cfg``'s model on one random micro-batch (``train.batch_size``) at its patch size
    (a 2D member: slice triplets ``[B, in_channels, H, W]``)."""
    model = create_model(cfg.model).to(device).train()
    opt = build_optimizer(model, cfg)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    b = cfg.train.batch_size
    if cfg.model.dims == 2:
        x = torch.rand(b, cfg.model.in_channels, *cfg.data.patch_size[1:], device=device)
    else:
        x = torch.rand(b, 1, *cfg.data.patch_size, device=device)
    with torch.no_grad():
        shape = model(x[:1]).shape[2:]
    y = torch.rand(b, 1, *shape, device=device)

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
    return steps * b / (time.perf_counter() - t0), tuple(model.stride)


def loader_rate(ds: Dataset, workers: int, batches: int, batch: int) -> float:
    """Patches/s a DataLoader of ``workers`` processes delivers (``batch`` per batch), after its first batch."""
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=collate_patches, drop_last=True)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    n = 0
    for _, items in zip(range(batches), it):
        n += items["image"].shape[0]
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
    b = cfg.train.batch_size
    print(f"model: {m_rate:.2f} training patches/s (batch {b})")

    shape = tuple(args.volume)
    vol = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    grid = Grid(shape, 13.1)
    motors = np.array([[n / 2.0 for n in shape]])
    volume = CachedVolume("bench", vol, grid, grid, motors, Normalizer("fixed", 0.0, 1.0))
    t = cfg.train
    t.sampler, t.augment_set, t.resample_once, t.hard_negative_ratio = "seed", "seed", True, 0.0
    n = (max(args.workers) + 1) * (args.batches + 2) * b + 2
    ds = make_dataset([volume], cfg, stride, n)
    for w in args.workers:
        rate = loader_rate(ds, w, args.batches, b)
        print(f"loader, {w:>2} workers: {rate:.2f} patches/s, loader / model = {rate / m_rate:.2f}")


if __name__ == "__main__":
    main()
