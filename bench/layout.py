"""Benchmark: contiguous (NCDHW) against ``channels_last_3d`` (NDHWC) memory layout, per preset, on this machine.

For each preset's model it times, in one run and on the same random batch, a training step (forward, focal
loss, backward, AdamW) and an inference forward pass (no grad) in both layouts, and prints steps/s and the
ratio channels_last / contiguous. A ratio above 1 means ``train.channels_last`` (off by default, on in
``tiny_fine``) or ``infer.channels_last`` (off by default, on in the tiny presets and densenet121) pays off
for that model on this device.

    python bench/layout.py [--presets tiny,tiny_fine,...] [--patch 32 64 64] [--batch 2] [--steps 8]
        [--threads 2] [--device cpu] [--amp bf16]

``tiny`` and ``tiny_fine`` run at their own patch and batch; the production presets at ``--patch`` and
``--batch`` (their own 224x448x448 is out of reach on a CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence

import torch

from byu_motor.config import Config
from byu_motor.models import create_model
from byu_motor.presets import get_preset, list_presets
from byu_motor.train.engine import build_optimizer
from byu_motor.train.losses import HeatmapLoss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rates(
    cfg: Config,
    patch: Sequence[int],
    bs: int,
    steps: int,
    layout: torch.memory_format,
    device: torch.device,
    amp: bool = False,
) -> tuple[float, float]:
    """(training steps/s, inference batches/s) of ``cfg``'s model in memory ``layout`` (one warm-up each).

    ``patch``: ``(D, H, W)`` input voxels; ``bs``: patches per batch; ``amp``: bf16 autocast around the
    forward passes (as the GPU presets train). The loss is focal whatever ``cfg`` says.
    """
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, losses={"focal": 1.0}))
    torch.manual_seed(0)
    model = create_model(cfg.model).to(device).to(memory_format=layout).train()
    x = torch.randn(bs, cfg.model.in_channels, *patch, device=device).contiguous(memory_format=layout)
    cells = [p // s for p, s in zip(patch, model.stride)]
    y = (torch.rand(bs, 1, *cells, device=device) > 0.99).float()
    opt = build_optimizer(model, cfg)
    crit = HeatmapLoss(cfg.train)

    def forward() -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            return model(x)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss, _ = crit(forward(), y)
        loss.backward()
        opt.step()

    def timed(fn) -> float:
        fn()  # warm-up: allocations, oneDNN / cuDNN kernel choice
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        return steps / (time.perf_counter() - t0)

    train_rate = timed(train_step)
    model.eval()
    with torch.inference_mode():
        infer_rate = timed(forward)
    return train_rate, infer_rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    three_d = [n for n in list_presets() if not n.endswith("_gpu") and get_preset(n).model.dims == 3]
    p.add_argument("--presets", default=",".join(three_d), help="3D presets (default: all but *_gpu)")
    p.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64], help="production presets' patch")
    p.add_argument("--batch", type=int, default=2, help="production presets' batch")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=("none", "bf16"), default="none")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    amp = args.amp == "bf16"
    print(f"device {device}, threads {args.threads}, amp {args.amp}, torch {torch.__version__}")
    print(
        f"{'preset':<24} {'patch':<12} {'batch':>5} {'train it/s NCDHW':>17} {'NDHWC':>7} {'ratio':>6}"
        f" {'infer it/s NCDHW':>17} {'NDHWC':>7} {'ratio':>6}"
    )
    for name in args.presets.split(","):
        cfg = get_preset(name)
        own = name.startswith("tiny")  # the tiny presets at their own patch and batch
        patch = tuple(cfg.data.patch_size) if own else tuple(args.patch)
        bs = cfg.train.batch_size if own else args.batch
        t0, i0 = rates(cfg, patch, bs, args.steps, torch.contiguous_format, device, amp)
        t1, i1 = rates(cfg, patch, bs, args.steps, torch.channels_last_3d, device, amp)
        shown = "x".join(map(str, patch))
        print(
            f"{name:<24} {shown:<12} {bs:>5} {t0:>17.2f} {t1:>7.2f} {t1 / t0:>6.2f}"
            f" {i0:>17.2f} {i1:>7.2f} {i1 / i0:>6.2f}"
        )


if __name__ == "__main__":
    main()
