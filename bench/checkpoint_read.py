"""Benchmark: the start-up reads of one checkpoint, its config header and the recipe resolution.

Saves a ``seed_resnext50`` checkpoint with random weights (about 200 MB; ``--preset`` for another) and times,
warm page cache, the median of ``--repeats`` calls of:

- ``read_checkpoint_config(path)`` (what preflight, the recipe command and the runner read per checkpoint);
- ``resolve_infer([Member(path)], [])`` (recipe resolution: the stored ``infer`` section);
- ``load_checkpoint(path)`` (the full read that builds the model, for scale);

and the increase of the process's peak resident memory over the header reads.

    python bench/checkpoint_read.py [--preset seed_resnext50] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from byu_motor.infer.recipe import Member, resolve_infer
from byu_motor.models import create_model
from byu_motor.models.checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from byu_motor.presets import get_preset


def _median_s(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--preset", default="seed_resnext50", help="preset whose model is saved (default: seed_resnext50)"
    )
    p.add_argument("--repeats", type=int, default=5, help="timed calls per read (default: 5)")
    p.add_argument(
        "--keep", type=Path, default=None, help="folder to save the checkpoint in (default: a temp dir)"
    )
    p.add_argument(
        "--no-full", action="store_true", help="skip timing the full load_checkpoint (default: time it)"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        path = folder / f"{args.preset}.pt"
        if not path.exists():
            cfg = get_preset(args.preset)
            cfg.model.pretrained_file = None
            torch.manual_seed(0)
            save_checkpoint(path, create_model(cfg.model), cfg)
        size_mb = path.stat().st_size / 1e6
        rss0 = _peak_rss_mib()
        header = _median_s(lambda: read_checkpoint_config(path), args.repeats)
        recipe = _median_s(lambda: resolve_infer([Member(str(path))], []), args.repeats)
        rss1 = _peak_rss_mib()
        print(f"checkpoint {args.preset}: {size_mb:.0f} MB, torch {torch.__version__}")
        print(f"read_checkpoint_config          {header * 1e3:9.1f} ms (median of {args.repeats})")
        print(f"resolve_infer([Member(path)])   {recipe * 1e3:9.1f} ms (median of {args.repeats})")
        print(f"peak RSS increase over the header reads: {rss1 - rss0:.0f} MiB")
        if not args.no_full:
            full = _median_s(lambda: load_checkpoint(path), args.repeats)
            print(f"load_checkpoint (full, for scale) {full * 1e3:9.1f} ms (median of {args.repeats})")


if __name__ == "__main__":
    main()
