"""Throughput of ``byu-motor predict``'s worker loop on one device: stage seconds per tomogram, end-to-end time
against the pure forward time of the same windows, and the seed ensemble's hours for 900 test tomograms.

Run by ``bench/gpu_check.sh`` (twice: all host cores, then ``taskset`` to 4 cores as on Kaggle)::

    python bench/gpu_throughput.py TOMO_FOLDER CHECKPOINT --device cuda [--copies 3] [--recipe RECIPE.json]

``TOMO_FOLDER`` holds one JPEG tomogram; it is predicted ``--copies`` times in a row through
:func:`byu_motor.infer.workers.run_worker` (prefetching loader, stage timer, as the runner does), the first
copy being the warm-up. Then the model's forward passes over the same windows are timed alone (inputs already
on the device), and the projection scales the steady-state stages to the average test shape.

With ``--recipe`` (e.g. the seed's five members, ``kernels/recipes/seed_full.json``, whose checkpoints lie
beside it) each member's own forward passes over a tomogram of the average test shape are timed, with its
views, window and grid, and the ensemble's hours are projected from them: the once-per-tomogram stages of the
run above (resampling once per member grid), plus each member's forward time x the run's end-to-end /
forward overhead.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from byu_motor.data.grid import Grid
from byu_motor.infer.accel import autocast
from byu_motor.infer.budget import build_levels
from byu_motor.infer.factory import default_predictor_factory
from byu_motor.infer.pinned import pinned_pool
from byu_motor.infer.recipe import read_recipe_file, resolve_infer
from byu_motor.infer.stage_timer import STAGES
from byu_motor.infer.testset import prediction_reader
from byu_motor.infer.tiling import decode_stride
from byu_motor.infer.workers import WorkerJob, run_worker
from byu_motor.models.checkpoint import read_checkpoint_config

#: the average hidden test tomogram (the seed's LB probing, SEED_RECIPE.md) and how many there are at most
AVERAGE_TEST_SHAPE = (400, 1400, 1050)
TEST_TOMOGRAMS = 900
#: member x view forward passes of the seed's ensemble per tomogram
SEED_PASSES = 9
#: stages paid once per tomogram whatever the ensemble (the rest scale with the forward passes)
ONCE_STAGES = ("read", "upload", "resample")


def run_copies(folder: str, checkpoint: str, device: str, copies: int) -> tuple[list[dict], object]:
    """Predict ``folder`` ``copies`` times through the worker loop, decoding as a run does (into pinned
    memory on a CUDA device path); returns (result records, predictor)."""
    from byu_motor.data.io import read_tomogram

    cfg = read_checkpoint_config(checkpoint).config.infer
    pool = pinned_pool(cfg.prefetch, [device], cfg.resample_on_device)
    reader = prediction_reader(read_tomogram, cfg, False, pool)
    built: list[object] = []

    def factory(paths, config, dev):
        built.append(default_predictor_factory(paths, config, dev))
        return built[-1]

    job = WorkerJob(0, device, [(f"copy{k}", folder) for k in range(copies)], [checkpoint], cfg,
                    build_levels(cfg, [checkpoint])[:1], None, None, factory, reader)  # fmt: skip
    events: list[dict] = []
    run_worker(job, events.append)
    if pool is not None:
        pool.close()
        print(f"    decoded into pinned memory: {pool.pinned_hits} of {copies} tomograms "
              f"({pool.registered} block(s) page-locked)")  # fmt: skip
    for e in events:
        if e["event"] == "log":
            print("   ", e["msg"])
    return [e for e in events if e["event"] == "result"], built[0]


def _time_passes(module, x: torch.Tensor, n_batches: int, amp: bool, device: str, repeats: int) -> float:
    """Mean seconds of ``n_batches`` forward passes of ``module`` on ``x`` (after one warm-up round)."""

    def once() -> None:
        with torch.inference_mode(), autocast(device, amp):
            for _ in range(n_batches):
                module(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    once()  # warm-up (cudnn autotuning, allocator)
    t0 = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - t0) / repeats


def member_forward_seconds(
    predictor, shape: tuple[int, ...], spacing_a: float, device: str, repeats: int = 2
) -> list[tuple[str, int, float]]:
    """``(member name, window x view passes, seconds)`` per member: its bare forward passes over one tomogram
    of ``shape`` voxels at ``spacing_a`` A, the inputs already on the device."""
    rows = []
    original = Grid(shape, spacing_a)
    for spec, module, inferers in zip(predictor.models, predictor._modules, predictor._inferers):
        res_shape = original.resampled(spec.spacing3).shape
        seconds, passes = 0.0, 0
        for sw in inferers:
            _, patch, starts = sw.layout(
                res_shape, decode_stride(spec.stride3, predictor.config.decode_upsample)
            )
            n_windows = math.prod(len(s) for s in starts) * len(sw.views)
            x = torch.randn((sw.batch_windows, 1, *patch), device=device)
            seconds += _time_passes(module, x, -(-n_windows // sw.batch_windows), sw.amp, device, repeats)
            passes += n_windows
        rows.append((spec.name, passes, seconds))
    return rows


def forward_seconds(
    predictor, shape: tuple[int, ...], spacing_a: float, device: str, repeats: int = 2
) -> float:
    """Seconds of the bare forward passes over one tomogram's windows (every member x view list), the inputs
    already on the device: what the pipeline's end-to-end time is compared with."""
    return sum(s for _, _, s in member_forward_seconds(predictor, shape, spacing_a, device, repeats))


def project_recipe(
    recipe: str, device: str, shape: tuple[int, ...], once: dict[str, float], overhead: float
) -> None:
    """Print each member's forward seconds on a tomogram of ``shape`` (13.1 A, the seed's assumption) and the
    ensemble's projected hours for the test set.

    Args:
        recipe: recipe JSON whose checkpoints exist (random weights are fine).
        device: torch device.
        shape: the tomogram, original voxels ``(Z, Y, X)``.
        once: seconds of the once-per-tomogram stages already scaled to ``shape`` (``read``, ``upload``,
            ``resample``); resampling is paid once per distinct member grid.
        overhead: end-to-end / forward of the measured run (decoding, fusion and host work per forward pass).
    """
    r = read_recipe_file(recipe)
    cfg = resolve_infer(r.members, r.sets)
    predictor = default_predictor_factory([m.checkpoint for m in r.members], cfg, device)
    spacing = cfg.test_spacing_a or 13.1
    rows = member_forward_seconds(predictor, shape, spacing, device, repeats=1)
    grids = len({spec.spacing3 for spec in predictor.models})
    host = once.get("read", 0.0) + once.get("upload", 0.0) + once.get("resample", 0.0) * grids
    total = host + overhead * sum(s for _, _, s in rows)
    print(f"   ensemble {recipe} on {shape} at {spacing} A, {len(rows)} members, {grids} grid(s):")
    for name, passes, seconds in rows:
        print(f"     {name:32s} {passes:5d} window x view passes  forward {seconds:7.2f} s")
    print(
        f"   projection: this ensemble on {TEST_TOMOGRAMS} tomograms of {shape}: {total:.2f} s each "
        f"(host stages {host:.2f} s + forward x {overhead:.2f}) -> {total * TEST_TOMOGRAMS / 3600:.2f} h "
        f"on one such device"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", help="one JPEG tomogram folder")
    parser.add_argument("checkpoint", help="the member's checkpoint (random weights are fine)")
    parser.add_argument("--device", default="cuda", help="torch device (default: %(default)s)")
    parser.add_argument(
        "--copies", type=int, default=3, help="times the tomogram is predicted (default: %(default)s)"
    )
    parser.add_argument("--label", default="", help="name of this run in the output (default: none)")
    parser.add_argument(
        "--recipe", default=None, help="also project this ensemble recipe's hours (its checkpoints beside it)"
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=AVERAGE_TEST_SHAPE,
        help="the projected test tomogram, voxels at 13.1 A (default: %(default)s, the seed's LB probing)",
    )
    args = parser.parse_args()
    device = "cuda:0" if args.device == "cuda" else args.device
    cores = len(os.sched_getaffinity(0))
    records, predictor = run_copies(args.folder, args.checkpoint, device, args.copies)
    bad = [r for r in records if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"prediction failed: {bad[0].get('error')}")
    steady = records[1:] or records
    names = [k for k in STAGES if any(k in r["stages"] for r in steady)]
    per = {k: float(np.median([r["stages"].get(k, 0.0) for r in steady])) for k in names}
    shape = tuple(records[0]["shape"])
    seconds = float(np.median([r["seconds"] for r in steady]))
    fwd = forward_seconds(predictor, shape, records[0]["spacing_a"], device)
    passes = sum(len(sw.views) for infs in predictor._inferers for sw in infs)
    print(f"== {args.label} {cores} host cores, {device}, tomogram {shape}, {passes} member x view pass(es)")
    print(
        "   stage seconds per tomogram (median of copies 2..): "
        + "  ".join(f"{k} {v:.2f}" for k, v in per.items())
    )
    print(
        f"   end-to-end {seconds:.2f} s per tomogram (first copy {records[0]['seconds']:.2f} s, start-up "
        f"{records[0]['startup_s']:.2f} s); decoding {np.median([r['decode_s'] for r in steady]):.2f} s "
        f"(loader thread, overlapped)"
    )
    print(
        f"   pure forward of the same windows {fwd:.2f} s -> end-to-end / forward {seconds / fwd:.2f} (goal <= 1.25)"
    )
    target = tuple(args.shape)
    ratio = math.prod(target) / math.prod(shape)
    once = sum(v for k, v in per.items() if k in ONCE_STAGES)
    per_pass = (seconds - once) / passes
    projected = (once + per_pass * SEED_PASSES) * ratio
    print(
        f"   projection: seed ensemble as {SEED_PASSES} passes of this member on {TEST_TOMOGRAMS} tomograms of "
        f"{target}: {projected:.2f} s each -> {projected * TEST_TOMOGRAMS / 3600:.2f} h on one such "
        f"device ({', '.join(ONCE_STAGES)} once per tomogram, the rest x {SEED_PASSES}/{passes}, voxels x {ratio:.2f})"
    )
    if args.recipe:
        scaled = {k: v * ratio for k, v in per.items() if k in ONCE_STAGES}
        project_recipe(args.recipe, device, target, scaled, max(1.0, (seconds - once) / fwd))


if __name__ == "__main__":
    main()
