"""Benchmark: peak memory of one training step of each seed member, as the seed trained it and in its 16 GB mode.

Modes: ``full`` is the preset (``seed_resnext50``: batch 2, no checkpointing), ``16gb`` its ``_16gb`` variant
(:func:`byu_motor.presets.for_16gb`: gradient checkpointing of the encoder stages, batch 1 x accumulation 4).
One micro-batch's forward, backward and AdamW step is measured in a fresh process per (member, mode):

- CUDA: ``torch.cuda.max_memory_allocated`` at the preset's patch (224, 448, 448) in fp16 autocast, weights,
  gradients and AdamW state included (what a 16 GB card must hold);
- CPU (no CUDA): the increase of the process's peak resident memory over its resident memory before one
  forward and backward (no optimiser step), at a reduced patch (``--patch``, float32): activations and
  gradients, the relative saving of each mode, not GPU figures.

Before the measurements it prints an estimate at the preset's patch that needs no GPU
(:func:`byu_motor.train.memory_estimate.estimate_training_memory`: autograd's saved tensors counted on the
``meta`` device in fp16, plus 16 bytes per parameter; a lower bound, the seed's >= 45 GB for ResNeXt50 at
batch 2). ``bench/throughput.py`` prints the same estimate.

    python bench/memory.py [--members seed_resnext50 seed_densenet121 seed_x3d_m] [--patch 48 96 96]
        [--estimate-only]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

from byu_motor.train.memory_estimate import MEMORY_MODES, estimate_modes, mode_preset

MEMBERS = ("seed_resnext50", "seed_densenet121", "seed_x3d_m")


def _status_kib(key: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), or None where there is none."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure(member: str, mode: str, patch: tuple[int, int, int] | None) -> dict:
    """One training step of ``member`` in ``mode`` in this process; returns its peak memory in MiB.

    Args:
        member: a seed preset name.
        mode: ``full`` or ``16gb``.
        patch: input patch (z, y, x) in voxels on CPU; None: the preset's (CUDA).
    """
    from byu_motor.models import create_model
    from byu_motor.presets import get_preset
    from byu_motor.train.optim import build_optimizer

    cfg = get_preset(mode_preset(member, mode))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    shape = tuple(cfg.data.patch_size) if cuda or patch is None else patch
    model = create_model(cfg.model).to(device).train()
    opt = build_optimizer(model, cfg)
    x = torch.rand(cfg.train.batch_size, 1, *shape, device=device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before_kib = _status_kib("VmRSS") or 0
    exact = _reset_peak_rss()
    with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
        out = model(x)
    out.float().square().mean().backward()
    if cuda:
        opt.step()
        torch.cuda.synchronize()
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
        what = f"cuda max_memory_allocated ({torch.cuda.get_device_name()}), fp16 autocast"
    else:
        hwm = _status_kib("VmHWM") if exact else None
        peak_kib = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_mib = (peak_kib - before_kib) / 1024
        what = "CPU peak RSS increase, float32" + ("" if exact else " (ru_maxrss: may under-read)")
    return {
        "member": member,
        "mode": mode,
        "patch": list(shape),
        "batch": cfg.train.batch_size,
        "grad_accum": cfg.train.grad_accum,
        "peak_mib": round(peak_mib, 1),
        "what": what,
    }


def main(argv: list[str] | None = None) -> None:
    """Measure every (member, mode) in a fresh subprocess and print one line each."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", nargs="+", default=list(MEMBERS), help="seed presets (default: all three)")
    p.add_argument(
        "--patch", nargs=3, type=int, default=[48, 96, 96], help="CPU patch z y x (default: 48 96 96)"
    )
    p.add_argument("--estimate-only", action="store_true", help="print the meta-device estimate only")
    p.add_argument("--one", nargs=2, metavar=("MEMBER", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    patch = tuple(args.patch)
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], patch)))
        return
    for member, mode, e in estimate_modes(args.members):
        print(f"{member:18s} {mode:5s} estimate at the preset's patch, fp16: {e.line()}", flush=True)
    if args.estimate_only:
        return
    for member in args.members:
        for mode in MEMORY_MODES:
            cmd = [sys.executable, __file__, "--one", member, mode, "--patch", *map(str, patch)]
            row = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            )
            print(
                f"{member:18s} {mode:5s} patch {tuple(row['patch'])} batch {row['batch']} x accum "
                f"{row['grad_accum']}: peak {row['peak_mib']:9.1f} MiB  [{row['what']}]",
                flush=True,
            )


if __name__ == "__main__":
    main()
