"""Benchmark: merge the cached candidates of several demo ensembles (or passes) and score the merge.

``score_demo.py`` caches each demo run's candidates per test set before the context gate
(``RUN/eval/<set><tag>.json``). This script merges the caches of two or more groups of runs, run by run
(the k-th run of every group), then gates and scores the merged lists as ``score_demo.py`` does:

- ``--mode fuse``: :func:`byu_motor.postprocess.fusion.fuse_points`, a point found by one group of two keeps
  half its score, as in a point-fusion ensemble of the groups' checkpoints;
- ``--mode lift``: :func:`byu_motor.postprocess.fusion.lift_points`, the first group is the anchor and each
  later one may raise its scores but never lower them (a third assumed spacing lifted like the second).

Each group is ``RUN[,RUN...]:TAG``, ``TAG`` the cache-name suffix (e.g. ``-scales_1.0_1.5`` for a cache
made with ``--set infer.scales=1.0,1.5 --set infer.scale_merge=mean``; empty for the assumed spacing only).
The caches must exist (run ``score_demo.py`` first). Prints per run and set the expected F2 of fixed
thresholds on ``--n``-tomogram test sets holding a motor with probability ``--prevalence``, the F2 at the
best threshold, then the mean over the cells, for each group alone and for the merge.

    python bench/merge_runs.py --sets D,E,F --mode fuse \\
        --group /tmp/s15/demo/s0,/tmp/s15/demo/s1: --group /tmp/b52/s0,/tmp/b52/s1:

About 10 s per set and run on 2 CPU cores (reading each tomogram once for the gate).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_variants import eval_sets, test_records  # noqa: E402
from score_demo import apply_gate_all  # noqa: E402

from byu_motor.demo import demo_infer_config  # noqa: E402
from byu_motor.postprocess.fusion import fuse_points, lift_points  # noqa: E402
from byu_motor.postprocess.threshold import best_threshold, resampled_fixed_sweep  # noqa: E402

FIXED = (0.25, 0.3, 0.35)


def parse_group(text: str) -> tuple[list[Path], str]:
    """``"RUN,RUN:TAG"`` -> ``([RUN, RUN], TAG)``."""
    runs, _, tag = text.rpartition(":")
    if not runs:
        raise SystemExit(f"--group {text!r}: expected RUN[,RUN...]:TAG (TAG may be empty)")
    return [Path(r) for r in runs.split(",")], tag


def merge(lists: list[list], mode: str, spacing_a: float, radius_a: float, topk: int) -> list[list]:
    """One tomogram's candidate lists merged by ``mode`` (``"fuse"`` or ``"lift"``)."""
    if mode == "fuse":
        out = fuse_points(lists, spacing_a, radius_a, topk=topk)
    else:
        out = lists[0]
        for other in lists[1:]:
            out = lift_points(out, other, spacing_a, radius_a, topk)
    return [list(map(float, c)) for c in out]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--group", action="append", required=True, help="RUN[,RUN...]:TAG (two or more groups)")
    p.add_argument("--mode", choices=("fuse", "lift"), default="fuse")
    p.add_argument("--sets", default="D,E,F", help="comma-separated sets among A-L")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--prevalence", type=float, default=0.5)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--scale", type=float, default=0.25, help="the demos' --scale")
    p.add_argument("--cache", type=Path, default=Path("/tmp/byu_bench/synth_s025_40_20"))
    args = p.parse_args()

    groups = [parse_group(g) for g in args.group]
    if len(groups) < 2 or len({len(runs) for runs, _ in groups}) != 1:
        raise SystemExit("need two or more --group with the same number of runs")
    cfg = demo_infer_config("tiny", args.scale, ("flip_x",))
    evals = eval_sets(args.cache, 60, 0, args.sets, 2)
    radius = cfg.fusion_radius_a if args.mode == "fuse" else cfg.nms_kernel_a  # the predictor's radii
    names = [f"group {i}" for i in range(len(groups))] + [args.mode]
    cells: dict[str, list[list[float]]] = {n: [] for n in names}
    for k in range(len(groups[0][0])):
        for set_name, data in evals.items():
            lists = []
            for runs, tag in groups:
                path = runs[k] / "eval" / f"{set_name}{tag}.json"
                if not path.exists():
                    raise SystemExit(f"{path}: no cache; make it with score_demo.py first")
                lists.append(json.loads(path.read_text()))
            merged = {
                t: merge([c[t] for c in lists], args.mode, cfg.test_spacing_a, radius, cfg.topk)
                for t in lists[0]
            }
            records, _ = test_records(data)
            row = []
            # one read of each tomogram gates the groups' lists and the merge
            all_gated = apply_gate_all([*lists, merged], data, cfg, cfg.context_gate)
            for name, gated in zip(names, all_gated):
                sweep = resampled_fixed_sweep(
                    gated, records, FIXED, n=args.n, prevalence=args.prevalence, draws=args.draws
                )
                _, best = best_threshold(gated, records)
                cells[name].append([*sweep.f2, best])
                row.append(f"{name} " + " ".join(f"{v:.3f}" for v in sweep.f2) + f" best {best:.3f}")
            print(f"run {k} set {set_name}: " + " | ".join(row), flush=True)
    print(f"\nmean over cells: fixed {FIXED} then best threshold")
    for name in names:
        print(f"{name:>8}: " + " ".join(f"{v:.4f}" for v in np.mean(cells[name], axis=0)))


if __name__ == "__main__":
    main()
