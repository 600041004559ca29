"""Benchmark: the time-budget planner replayed on virtual time over random test sets.

Each of ``--sets`` test sets draws 20-900 tomograms (``--min``/``--max``) with shapes from the real shape
distribution (``train_labels.csv``, one row per tomogram), a per-set speed (log-uniform 2e-8 to 2e-7 s per
voxel per unit level cost), +-30 % noise per tomogram, a warm-up of 10-60 s on the first one and a budget
between what the cheapest level needs (x 1.25) and 0.9 x what the richest needs: shedding is required, and
the cheapest level fits. A tomogram runs in 50 window batches; the cut-short is checked between them, as
the sliding window does. Writing the submission costs 5 s after the last tomogram.

Prints the worst overrun (goal: none), the mean and lowest share of the budget used (goal: mean >= 0.9),
tomograms cut short and not reached.

    python bench/budget.py [--sets 200] [--seed 0] [--order random|ascending|descending] [--labels /work/shared/data/kaggle/train_labels.csv]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd

from byu_motor.config import InferConfig
from byu_motor.infer.budget import BudgetPlanner, build_levels

SHAPE_COLS = ["Array shape (axis 0)", "Array shape (axis 1)", "Array shape (axis 2)"]
BATCHES = 50  # window batches per tomogram: the cut-short granularity
WRITE_S = 5.0  # writing the submission after the last tomogram


def real_voxels(labels_csv: str) -> np.ndarray:
    """Voxels of each training tomogram (one row per tomo_id)."""
    df = pd.read_csv(labels_csv).groupby("tomo_id").first()
    return df[SHAPE_COLS].prod(axis=1).to_numpy(dtype=float)


def replay(
    rng: np.random.Generator, voxel_pool: np.ndarray, levels: list, n_min: int, n_max: int, order: str
) -> dict:
    """One random test set through the planner on virtual time; returns its figures."""
    n = int(rng.integers(n_min, n_max + 1))
    voxels = rng.choice(voxel_pool, size=n)
    if order != "random":  # adversarial: small tomograms first (or last)
        voxels = np.sort(voxels)[:: 1 if order == "ascending" else -1]
    rate = math.exp(rng.uniform(math.log(2e-8), math.log(2e-7)))  # s per voxel per unit cost
    noise = rng.uniform(0.7, 1.3, size=n)
    warmup = rng.uniform(10.0, 60.0)
    cheapest = float((rate * noise * voxels).sum()) * levels[-1].cost
    richest = float((rate * noise * voxels).sum()) * levels[0].cost
    low, high = 1.25 * cheapest + warmup + 60.0, 0.9 * richest
    budget = math.exp(rng.uniform(math.log(low), math.log(max(high, low))))
    t = [0.0]
    planner = BudgetPlanner(
        budget, n, levels, clock=lambda: t[0], start=0.0, on_change=lambda *a: None, sizes=voxels.tolist()
    )
    predicted = cut = 0
    for k in range(n):
        level = planner.next_level(float(voxels[k]))
        if level is None:
            break
        seconds = rate * noise[k] * voxels[k] * levels[level].cost + (warmup if k == 0 else 0.0)
        deadline = planner.deadline()
        if t[0] + seconds > deadline:  # the first batch boundary at or after the deadline cuts it short
            batch = seconds / BATCHES
            done = min(BATCHES, math.ceil(max(deadline - t[0], 0.0) / batch))
            if done < BATCHES:
                t[0] += done * batch
                planner.record_cut(f"t{k}")
                cut += 1
                continue
        t[0] += seconds
        planner.record(level, seconds, float(voxels[k]))
        predicted += 1
    end = t[0] + WRITE_S
    return {
        "n": n,
        "overrun_s": max(0.0, end - budget),
        "share": end / budget,
        "cut": cut,
        "not_reached": n - predicted - cut,
    }


def main() -> None:
    """Replay ``--sets`` random test sets and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min", type=int, default=20)
    parser.add_argument("--max", type=int, default=900)
    parser.add_argument("--order", choices=["random", "ascending", "descending"], default="random")
    parser.add_argument("--labels", default="/work/shared/data/kaggle/train_labels.csv")
    args = parser.parse_args()
    t0 = time.perf_counter()
    pool = real_voxels(args.labels)
    # 2 extra TTA views, 2 members, overlap 0.25: the ladder printed below
    levels = build_levels(InferConfig(tta=("flip_z", "rot90"), overlap=0.25), ["a.pt", "b.pt"])
    rng = np.random.default_rng(args.seed)
    runs = pd.DataFrame([replay(rng, pool, levels, args.min, args.max, args.order) for _ in range(args.sets)])
    print(
        f"{args.sets} test sets of {runs['n'].min()}-{runs['n'].max()} tomograms ({len(pool)} real shapes, "
        f"{args.order} order)"
    )
    print(f"levels: {', '.join(f'{lv.cost:.3g}' for lv in levels)} (relative cost)")
    print(
        f"worst overrun: {runs['overrun_s'].max():.3f} s (sets over budget: {(runs['overrun_s'] > 0).sum()})"
    )
    print(f"share of the budget used: mean {runs['share'].mean():.3f}, lowest {runs['share'].min():.3f}")
    print(f"cut short: {runs['cut'].sum()} tomograms; not reached: {runs['not_reached'].sum()} tomograms")
    print(f"ran in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
