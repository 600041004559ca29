"""Benchmark the production presets: parameters, GFLOPs per training patch, CPU (and GPU) forward time.

Run: ``python bench/models.py [--presets a,b] [--cpu-patch 64,128,128] [--repeats 3] [--gpu]``, e.g.
``--presets seed_resnext50,seed_densenet121,seed_x3d_m`` for the seed's members. CPU forward times are also
given relative to ``resnet18_unet_s16``, always measured first in the same run.
FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (no memory, no
compute); a multiply-add counts as 2 FLOPs. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from byu_motor.models import create_model
from byu_motor.presets import get_preset, list_presets

FLOP_PATCH = (224, 448, 448)


def count_gflops(model_cfg, patch: tuple[int, int, int]) -> tuple[float, str]:
    """GFLOPs of one forward on a [1, C, *patch] input, on the meta device.

    Falls back to a 4x smaller patch per axis on CPU, scaled by the voxel ratio, if meta fails.
    """
    try:
        with torch.device("meta"):
            model = create_model(model_cfg).eval()
            x = torch.empty(1, model_cfg.in_channels, *patch)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        return counter.get_total_flops() / 1e9, "meta"
    except Exception as err:  # pragma: no cover - depends on op support for meta tensors
        small = tuple(max(32, n // 4) for n in patch)
        model = create_model(model_cfg).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, model_cfg.in_channels, *small))
        ratio = math.prod(patch) / math.prod(small)
        return counter.get_total_flops() / 1e9 * ratio, f"scaled from {small} ({type(err).__name__})"


def time_forward(model: torch.nn.Module, x: torch.Tensor, repeats: int, sync=None) -> float:
    """Median wall time in ms of ``repeats`` forwards after one warm-up."""
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            if sync:
                sync()
            t0 = time.perf_counter()
            model(x)
            if sync:
                sync()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


BASELINE = "resnet18_unet_s16"


def measure(
    name: str, cpu_patch: tuple[int, int, int], repeats: int, use_gpu: bool
) -> tuple[list[str], float]:
    """One table row for preset ``name`` (without the relative column) and its CPU forward time in ms."""
    m = get_preset(name).model
    gflops, how = count_gflops(m, FLOP_PATCH)
    torch.manual_seed(0)
    model = create_model(m).eval()
    n_params = sum(p.numel() for p in model.parameters())
    cpu_ms = time_forward(model, torch.randn(1, m.in_channels, *cpu_patch), repeats)
    row = [name, m.encoder, m.neck, "x".join(map(str, model.stride)), f"{n_params / 1e6:.1f}"]
    row += [f"{gflops:.0f}", how, f"{cpu_ms:.0f}"]
    if use_gpu:
        gm = model.cuda().to(memory_format=torch.channels_last_3d)
        x = torch.randn(1, m.in_channels, *FLOP_PATCH, device="cuda")
        with torch.autocast("cuda", dtype=torch.float16):
            gpu_ms = time_forward(gm, x, repeats, sync=torch.cuda.synchronize)
        row.append(f"{gpu_ms:.0f}")
        del gm, x
        torch.cuda.empty_cache()
    return row, cpu_ms


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table; CPU times also relative to ``resnet18_unet_s16`` (measured first)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(p for p in list_presets() if p != "tiny"))
    parser.add_argument("--cpu-patch", default="64,128,128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu", action="store_true", help="also time fp16 forward of the full patch on CUDA")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu_patch = tuple(int(v) for v in args.cpu_patch.split(","))
    use_gpu = args.gpu and torch.cuda.is_available()

    header = ["preset", "encoder", "neck", "stride", "params (M)", f"GFLOPs {FLOP_PATCH}", "FLOPs via"]
    header += [f"CPU fwd {cpu_patch} ms", f"CPU fwd / {BASELINE}"]
    if use_gpu:
        header.append(f"GPU fp16 fwd {FLOP_PATCH} ms ({torch.cuda.get_device_name()})")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    names = args.presets.split(",")
    order = [BASELINE] + [n for n in names if n != BASELINE]
    base_ms = None
    for name in order:
        row, cpu_ms = measure(name, cpu_patch, args.repeats, use_gpu)
        base_ms = base_ms or cpu_ms
        row.insert(8, f"{cpu_ms / base_ms:.2f}")
        if name in names:
            print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
