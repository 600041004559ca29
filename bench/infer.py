"""CPU benchmark of the inference engine: ours vs MONAI sliding window, pipeline overhead, the seed's path, peak
memory, and where a full-size (800, 928, 960) tomogram's time goes (stage timer), new path against the old.

Run: ``python bench/infer.py [--quick]``. Prints one table; ratios are measured in this one run. Timed cases run
5 times (volumes sized so one run takes >= 2 s on a 2-core machine) and report the median with the spread
(min-max) of the 5; a ratio is of medians.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.config import InferConfig
from byu_motor.data.normalize import Normalizer
from byu_motor.infer import ModelSpec, Predictor
from byu_motor.infer.sliding import SlidingWindow
from byu_motor.infer.stage_timer import STAGES as STAGE_ORDER


class TinyNet(nn.Module):
    """Two 3x3x3 convolutions (8 channels), optional average-pool stride: a cheap but real conv model."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = (stride,) * 3
        self.c1 = nn.Conv3d(1, 8, 3, padding=1)
        self.c2 = nn.Conv3d(8, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.c1(x))
        if self.stride[0] > 1:
            x = F.avg_pool3d(x, self.stride, self.stride)
        return self.c2(x)


class PoolNet(nn.Module):
    """Almost free model for the memory case: average pooling by the stride."""

    def __init__(self, stride: int = 16):
        super().__init__()
        self.stride = (stride,) * 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(x, self.stride, self.stride)


REPEATS = 5


class Timing(float):
    """A median time in seconds (a float) that also knows the spread of its runs."""

    lo: float
    hi: float

    def __new__(cls, times: list[float]) -> Timing:
        t = super().__new__(cls, float(np.median(times)))
        t.lo, t.hi = min(times), max(times)
        return t

    def __str__(self) -> str:
        return f"{float(self):.2f} s [{self.lo:.2f}-{self.hi:.2f}]"


def median_of(fn, repeats: int = REPEATS) -> Timing:
    """Run ``fn`` ``repeats`` times: the median wall time and its spread."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(times)


def alternating(fns: dict[str, object], repeats: int = REPEATS) -> dict[str, Timing]:
    """Median of ``repeats`` runs of each function, run in turn (a, b, then b, a, ...) so a change in the machine's
    load hits every case alike (the order flips every round)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats):
        for k, fn in list(fns.items())[:: 1 if r % 2 == 0 else -1]:  # a, b, b, a, ...: no case always first
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: Timing(v) for k, v in times.items()}


def case_monai(shape, patch, overlap, batch) -> tuple[float, float, float]:
    """(a) same stride-1 model, same window size/overlap/batch; both do a plain mean of overlaps
    (ours: border_weight=1; MONAI: mode="constant") and both normalise inside the timed call."""
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    model = TinyNet(1).eval()
    vol = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    norm = Normalizer()
    sw = SlidingWindow(patch, overlap=overlap, batch_windows=batch, border_weight=1.0)

    def ours():
        return sw(model, vol, 1, norm)

    def monai():
        with torch.inference_mode():
            x = norm(torch.from_numpy(vol))[None, None]
            return sliding_window_inference(x, patch, batch, model, overlap=overlap, mode="constant")[0, 0]

    diff = float((ours() - monai()).abs().max())
    ours(), monai()  # warm-up (allocator, thread pool)
    return median_of(ours), median_of(monai), diff


def case_overhead(shape, patch, overlap, batch, stride) -> tuple[float, float]:
    """(b) predict_volume (no resampling: volume already at model spacing) vs the bare forward passes over
    the same windows, inputs prepared beforehand."""
    torch.manual_seed(0)
    model = TinyNet(stride).eval()
    vol = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    spec = ModelSpec(model, stride, 16.0, patch_size=patch)
    pred = Predictor([spec], InferConfig(overlap=overlap, batch_windows=batch, amp=False), device="cpu")
    sw = SlidingWindow(patch, overlap=overlap, batch_windows=batch)
    _, p, starts = sw.layout(vol.shape, (stride,) * 3)
    windows = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    batches = []
    for i in range(0, len(windows), batch):
        xs = [
            Normalizer()(
                torch.from_numpy(np.ascontiguousarray(vol[z : z + p[0], y : y + p[1], x : x + p[2]]))
            )
            for z, y, x in windows[i : i + batch]
        ]
        batches.append(torch.stack(xs)[:, None])

    def forward_only():
        with torch.inference_mode():
            for b in batches:
                model(b)

    return median_of(lambda: pred.predict_volume(vol, 16.0)), median_of(forward_only)


# nine views for nine lists, as the seed fused 9 model x view lists
NINE_VIEWS = ("flip_z", "flip_y", "flip_x", "rot90", "rot180", "rot270", "rot90+flip_z", "rot90+flip_x")


def case_seed_path(shape, patch) -> dict[str, float]:
    """(d) the seed's path against ours, same TinyNet stride 16 and volume (at the model's spacing), per step.

    Tiling: predict_volume with ``tiling="seed"`` vs overlap 0.25 (weighted). Stride-8: seed tiling with
    ``decode_upsample=2`` vs 1 (same max-pool decoder). Decoder: the seed's vs ours on one stride-8 heatmap.
    Fusion: 9 views kept apart (9 lists, each decoded by the seed's decoder, WBF) vs 9 views averaged per
    window (1 list, logit mean): forward passes and decoding+fusion timed apart.
    """
    torch.manual_seed(0)
    model = TinyNet(16).eval()
    vol = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    spec = ModelSpec(model, 16, 16.0, patch_size=patch)

    def pred(**kw) -> Predictor:
        return Predictor([spec], InferConfig(amp=False, batch_windows=2, **kw), device="cpu")

    out: dict[str, float] = {}
    out["weighted"] = median_of(lambda: pred(tiling="weighted", overlap=0.25).predict_volume(vol, 16.0))
    out["seed"] = median_of(lambda: pred(tiling="seed").predict_volume(vol, 16.0))
    out["seed_s8"] = median_of(lambda: pred(tiling="seed", decode_upsample=2).predict_volume(vol, 16.0))
    fine = pred(tiling="seed", decode_upsample=2, peak_decoder="seed")
    parts = fine.scale_logits(vol, 16.0)
    coarse = pred(tiling="seed", decode_upsample=2)
    out["dec_ours"] = median_of(lambda: coarse.candidates_from_logits(parts, vol, 16.0))
    out["dec_seed"] = median_of(lambda: fine.candidates_from_logits(parts, vol, 16.0))
    common = dict(tiling="seed", decode_upsample=2, tta=("identity", *NINE_VIEWS))
    apart = pred(views_apart=True, peak_decoder="seed", ensemble="wbf", fusion_radius_a=1000.0, **common)
    together = pred(**common)
    out["fwd_apart"] = median_of(lambda: apart.scale_logits(vol, 16.0))
    out["fwd_together"] = median_of(lambda: together.scale_logits(vol, 16.0))
    lists = apart.scale_logits(vol, 16.0)
    out["n_lists"] = float(len(lists))
    out["fuse9"] = median_of(lambda: apart.candidates_from_logits(lists, vol, 16.0))
    one = together.scale_logits(vol, 16.0)
    out["fuse1"] = median_of(lambda: together.candidates_from_logits(one, vol, 16.0))
    return out


def report_seed_path(r: dict[str, float], shape, patch) -> None:
    print(
        f"(d) the seed's path vs ours, TinyNet stride 16, vol {shape} at the model's spacing, windows {patch}:\n"
        f"    tiling: seed (no overlap) {r['seed']:.2f} s  weighted overlap 0.25 {r['weighted']:.2f} s  "
        f"ratio seed/weighted {r['seed'] / r['weighted']:.2f}\n"
        f"    stride-8 decoding (seed tiling): {r['seed_s8']:.2f} s vs stride 16 {r['seed']:.2f} s  "
        f"ratio {r['seed_s8'] / r['seed']:.2f}\n"
        f"    peak decoder on one stride-8 map: seed {r['dec_seed'] * 1e3:.1f} ms  ours (max-pool box) "
        f"{r['dec_ours'] * 1e3:.1f} ms  ratio {r['dec_seed'] / r['dec_ours']:.2f}\n"
        f"    9 views: forward passes apart {r['fwd_apart']:.2f} s vs averaged per window "
        f"{r['fwd_together']:.2f} s  ratio {r['fwd_apart'] / r['fwd_together']:.2f}\n"
        f"    decode + fuse {int(r['n_lists'])} lists (seed decoder, WBF) {r['fuse9'] * 1e3:.1f} ms vs 1 list "
        f"(logit mean) {r['fuse1'] * 1e3:.1f} ms  ratio {r['fuse9'] / r['fuse1']:.2f}; "
        f"= {r['fuse9'] / r['fwd_apart']:.3f}x the forward passes"
    )


FULL_SHAPE = (800, 928, 960)


def full_size_volume(shape: tuple[int, int, int]) -> np.ndarray:
    """A uint8 volume of ``shape`` with a cheap pseudo-random pattern (every page touched)."""
    vol = np.empty(shape, dtype=np.uint8)
    plane = np.arange(shape[1] * shape[2], dtype=np.uint32).reshape(shape[1:])
    for z in range(shape[0]):
        vol[z] = ((plane + z * 7919) * 2654435761 >> 24) & 255
    return vol


def case_full_size(shape: tuple[int, int, int], work: str) -> dict:
    """(e) one full-size tomogram, 13.1 -> 16 A, the almost free stride-16 model (so the pipeline shows), TTA
    identity + flip_z, windows (224, 448, 448): the stage times of three copies through the worker loop (JPEG
    decoding with prefetch, as ``byu-motor predict``), and ``predict_volume`` on the new path (resampling and
    windows on the model's device, views in one pass) against the old one (host resampling, one pass per
    view), run in turn, 5 times each."""
    from byu_motor.data.io import read_tomogram, write_tomogram
    from byu_motor.infer.budget import build_levels
    from byu_motor.infer.workers import WorkerJob, run_worker

    vol = full_size_volume(shape)
    spec = ModelSpec(PoolNet(16), 16, 16.0, patch_size=(224, 448, 448))
    cfg = InferConfig(amp=False, batch_windows=1, tta=("flip_z",), read_threads=2)

    def pred(**kw):
        import dataclasses

        return Predictor([spec], dataclasses.replace(cfg, **kw), device="cpu")

    write_tomogram(vol, f"{work}/tomo")
    job = WorkerJob(0, "cpu", [(f"t{k}", f"{work}/tomo") for k in range(3)], ["m.pt"], cfg,
                    build_levels(cfg, ["m.pt"])[:1], None, 16.0, lambda *a: pred(),
                    lambda folder: read_tomogram(folder, num_threads=2))  # fmt: skip
    events: list[dict] = []
    run_worker(job, events.append)
    records = [e for e in events if e["event"] == "result"]
    new, old = pred(), pred(resample_on_device=False, batch_views=False)
    timings = alternating(
        {"new": lambda: new.predict_volume(vol, 13.1), "old": lambda: old.predict_volume(vol, 13.1)}
    )
    return {"records": records, **timings}


def report_full_size(r: dict, shape) -> None:
    recs = r["records"]
    steady = recs[1:] or recs
    stages = [k for k in STAGE_ORDER if any(k in rec["stages"] for rec in steady)]
    per = {k: float(np.median([rec["stages"].get(k, 0.0) for rec in steady])) for k in stages}
    print(
        f"(e) full-size {shape} tomogram, 13.1 -> 16 A, stride-16 avg-pool model, identity + flip_z, windows "
        f"(224,448,448):\n"
        f"    stage seconds per tomogram (median of copies 2-3 through the worker loop; copy 1 waits for its "
        f"whole decode): "
        + "  ".join(f"{k} {v:.2f}" for k, v in per.items())
        + f"  = {sum(per.values()):.2f} s; "
        f"wall {np.median([rec['seconds'] for rec in steady]):.2f} s; decoding (loader thread, overlapped) "
        f"{np.median([rec['decode_s'] for rec in steady]):.2f} s\n"
        f"    predict_volume in memory: new path (resample + windows on the model's device, views in one pass) "
        f"{r['new']}  old (host resample, one pass per view) {r['old']}  ratio new/old "
        f"{r['new'] / r['old']:.2f} (goal <= 1.05)"
    )


def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark. Linux's ``VmHWM`` belongs to the process's own memory map,
    while ``ru_maxrss`` keeps the parent's high-water across fork + exec (a child of a big parent would see
    no rise at all)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(shape: tuple[int, int, int], batch: int) -> dict:
    """(c), run in a fresh process: RSS high-water before and after predict_volume."""
    torch.set_num_threads(2)
    vol = np.empty(shape, dtype=np.uint8)
    for z in range(shape[0]):  # touch every page; cheap pattern instead of slow random numbers
        vol[z] = (np.arange(shape[1] * shape[2], dtype=np.uint32).reshape(shape[1:]) * 2654435761 >> 24) & 255
    spec = ModelSpec(PoolNet(16), 16, 16.0, patch_size=(224, 448, 448))
    pred = Predictor([spec], InferConfig(batch_windows=batch, overlap=0.25), device="cpu")
    before = peak_rss_bytes()
    t0 = time.perf_counter()
    cands = pred.predict_volume(vol, 13.1)
    after = peak_rss_bytes()
    return {
        "before": before,
        "after": after,
        "volume": vol.nbytes,
        "s": time.perf_counter() - t0,
        "n": len(cands),
    }


def case_memory(shape, batch) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", json.dumps([list(shape), batch])],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_a(args) -> None:
    ours, monai, diff = case_monai((128, 320, 320), (32, 64, 64), 0.25, 4)
    print(
        f"(a) sliding window, TinyNet stride 1, vol (128,320,320), windows (32,64,64), overlap 0.25, batch 4:\n"
        f"    ours {ours}  monai {monai}  ratio ours/monai {ours / monai:.2f} (goal <= 1.0); "
        f"max |diff| {diff:.1e}\n"
        f"    (stride 1 because MONAI's inferer expects output at input resolution; both mean-merge, "
        f"ours with border_weight=1)"
    )


def run_b(args) -> None:
    e2e, fwd = case_overhead((160, 320, 320), (64, 96, 96), 0.25, 2, 4)
    print(
        f"(b) predict_volume vs bare forward, TinyNet stride 4, vol (160,320,320), windows (64,96,96), batch 2:\n"
        f"    end-to-end {e2e}  forward only {fwd}  ratio {e2e / fwd:.2f} (goal <= 1.15)"
    )


def run_c(args) -> None:
    shapes = [(300, 960, 928)] + ([] if args.quick else [(500, 1912, 1847)])
    print(
        "(c) peak RSS, avg-pool stride-16 model, 13.1 -> 16 A, windows (224,448,448), one process per case:"
    )
    for shape in shapes:
        for batch in (1, 4):
            r = case_memory(shape, batch)
            extra = (r["after"] - r["before"]) / r["volume"]
            print(
                f"    {shape} batch {batch}: volume {r['volume'] / 2**20:.0f} MiB, "
                f"peak above volume+model {(r['after'] - r['before']) / 2**20:.0f} MiB = {extra:.2f}x volume "
                f"(goal <= 2.5x), {r['s']:.1f} s"
            )


def run_d(args) -> None:
    seed_shape, seed_patch = (
        ((96, 192, 192), (64, 96, 96)) if args.quick else ((160, 384, 384), (96, 192, 192))
    )
    report_seed_path(case_seed_path(seed_shape, seed_patch), seed_shape, seed_patch)


def run_e(args) -> None:
    import tempfile

    full = tuple(n // 2 for n in FULL_SHAPE) if args.quick else FULL_SHAPE
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        report_full_size(case_full_size(full, work), full)


CASES = {"a": run_a, "b": run_b, "c": run_c, "d": run_d, "e": run_e}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="skip the (500, 1912, 1847) memory case, smaller (d) and (e)"
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--work", default=None, help="folder for the full-size JPEG tomogram (default: a temporary one)"
    )
    parser.add_argument(
        "--cases", default="e,b,a,d,c", help="cases to run, in this order (default: %(default)s)"
    )
    args = parser.parse_args()
    if args.memory_child:
        shape, batch = json.loads(args.memory_child)
        print(json.dumps(memory_child(tuple(shape), batch)))
        return
    torch.set_num_threads(2)
    print(
        "byu_motor inference benchmark (CPU, 2 threads; the machine may be shared, so times are noisy)",
        flush=True,
    )
    t_start = time.perf_counter()
    for name in args.cases.split(","):
        CASES[name.strip()](args)
        sys.stdout.flush()
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
