"""Benchmark: judge a training variant over several seeds and two fresh synthetic test sets.

One 60-tomogram set and one seed move F2 by about +-.05 (bench/RESULTS.md, eighth session), more than most
changes are worth. This script is the yardstick the eighth to tenth sessions used by hand: train fold 0 of
the 40 training tomograms once per seed (``--seeds``), then score ``best.pt`` on two sets of extra test
tomograms generated with other seeds (A: seed + 1000, the set ``bench.experiments.train_synthetic`` calls eval; B:
seed + 2000). ``--checkpoint last`` scores the final step instead: ``best.pt`` is chosen on 8 validation
tomograms, which can pick the half-trained step-500 model and so adds its own noise to a comparison. Each
set is predicted at its true spacing through the Validator (the inference engine's own path). For each
cell it prints F2 at the best threshold and at the 0.4 quantile, the expected F2 of the 0.4-quantile rule on
sets of 60 with half of them holding a motor (sets A and B hold 40 % and 45 %, which flatters higher
quantiles; :func:`byu_motor.postprocess.threshold.resampled_quantile_sweep`) and of the preset's fixed threshold
(0.3 where the preset has none), and how many of the set's storage granules
and ring-only decoys score at or above that quantile threshold
(:func:`byu_motor.synth.lookalikes_above`). Last comes a markdown row with the mean of the
cells, ready for RESULTS.md. Candidates go through the preset's candidate steps (``infer.steps``), its
envelope-context gate's threshold overridden by ``--context-gate``, also for checkpoints trained before the
gate existed. Run it once with no ``--set`` for the baseline, then once per variant:

    python -m bench.experiments.compare_variants [--preset tiny] [--set train.lr=1e-3 ...] [--seeds 42,1,2]
        [--out /tmp/byu_bench/variants/NAME] [--keep] [--checkpoint best|last] [--sets A,B]
        [--cache /tmp/byu_bench/synth_s025_40_20]

``--sets A,B,C,D,E`` scores three more sets (seeds +3000 ... +5000). A and B served to choose settings for many
sessions; D and E never did, so they give the honest figure (bench/RESULTS.md, fifteenth session).

``--keep`` scores the checkpoints already in ``--out`` and trains only the seeds that lack one.
About 4-5 min per seed on 2 CPU cores with ``tiny``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from byu_motor.data.layout import TomoRecord
from byu_motor.models.checkpoint import load_checkpoint
from byu_motor.postprocess.threshold import (
    best_threshold,
    quantile_sweep,
    resampled_fixed_sweep,
    resampled_quantile_sweep,
)
from byu_motor.presets import get_preset
from byu_motor.synth import lookalikes_above
from byu_motor.train.engine import train
from byu_motor.train.validate import Validator

from .train_synthetic import ensure_dataset, eval_set_dir

QUANTILE = 0.4
#: test sets by name: seed offset from the training set's seed. A and B served to choose settings for many
#: sessions and C to check the context gate; each later set was kept fresh for a while (D and E until the
#: sixteenth session, F the seventeenth, G the eighteenth, H and I the twentieth, J the twenty-first, K the
#: twenty-second): the newest is the honest figure.
SET_SEEDS = dict(
    A=1000, B=2000, C=3000, D=4000, E=5000, F=6000, G=7000, H=8000, I=9000, J=10000, K=11000, L=12000
)


def eval_sets(cache: Path, n_eval: int, seed: int, names: str, workers: int) -> dict[str, Path]:
    """The named test sets (``names``: comma-separated among :data:`SET_SEEDS`), generated when missing.

    Set A is ``bench.experiments.train_synthetic``'s eval set; the others sit next to it with their seed in the name.
    """
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SET_SEEDS]
    if unknown or not chosen:
        raise SystemExit(f"--sets: unknown {unknown}; choose among {sorted(SET_SEEDS)}")
    set_a = eval_set_dir(cache, n_eval)
    out = {
        n: set_a if n == "A" else set_a.with_name(f"{set_a.name}_seed{seed + SET_SEEDS[n]}") for n in chosen
    }
    for name, path in out.items():
        ensure_dataset(path, 0, n_eval, seed + SET_SEEDS[name], workers=workers)
    return out


def test_records(data: Path) -> tuple[dict[str, TomoRecord], dict]:
    """Records of a synthetic set's test tomograms at their true spacing, and its ``synth_meta.json``."""
    meta = json.loads((data / "synth_meta.json").read_text())
    records = {
        tid: TomoRecord(
            tid,
            tuple(e["shape"]),
            float(e["voxel_spacing"]),
            np.asarray(e["motors"], dtype=np.float64).reshape(-1, 3),
            len(e["motors"]),
        )
        for tid, e in meta.items()
        if e["split"] == "test"
    }
    return records, meta


def gated_steps(steps: Sequence[str | Mapping[str, Any]], gate: float | None) -> tuple[Any, ...]:
    """``steps`` (an ``InferConfig.steps`` recipe) with the ``context_gate`` step's threshold set to ``gate``.

    ``None`` keeps the recipe as it is; 0 drops the gate; a positive ``gate`` where the recipe has no
    ``context_gate`` step appends one with the step's default settings
    (:class:`byu_motor.postprocess.context.ContextGateSettings`) at that threshold.
    """
    if gate is None:
        return tuple(steps)
    out: list[Any] = []
    found = False
    for spec in steps:
        name = spec if isinstance(spec, str) else spec.get("name")
        if name != "context_gate":
            out.append(spec)
            continue
        found = True
        if gate > 0:
            out.append({**({} if isinstance(spec, str) else spec), "name": name, "threshold": float(gate)})
    if gate > 0 and not found:
        out.append({"name": "context_gate", "threshold": float(gate)})
    return tuple(out)


def score_cell(checkpoint: Path, data: Path, steps: tuple[Any, ...], fixed: float) -> dict[str, float]:
    """F2 at the best threshold and at the 0.4 quantile of ``checkpoint`` on ``data``'s test tomograms.

    Candidates go through the candidate steps ``steps`` (``InferConfig.steps``: the preset's, its
    envelope-context gate at ``--context-gate``, :func:`gated_steps`) whatever the checkpoint's own config
    says, so checkpoints trained before the gate existed are scored as the preset would now.

    Returns:
        ``best``, ``q`` (F2 values), ``q50`` (expected F2 of the 0.4-quantile rule on sets of 60 drawn from
        these tomograms with half of them holding a motor: sets A and B hold 40 % and 45 %,
        :func:`~byu_motor.postprocess.threshold.resampled_quantile_sweep`), ``t50`` (the same for the fixed
        threshold ``fixed``) and ``granule``, ``decoy`` (``"above/drawn"`` at the quantile threshold).
    """
    loaded = load_checkpoint(checkpoint)
    loaded.config.infer.steps = steps
    records, meta = test_records(data)
    validator = Validator(loaded.config, data / "test", records, torch.device("cpu"))
    cands = validator.candidates(loaded.model, loaded.config.model.stride)
    _, f2 = best_threshold(cands, records)
    sweep = quantile_sweep(cands, records, (QUANTILE,))
    above = lookalikes_above(cands, meta, float(sweep["threshold"][0]), kinds=("granule", "decoy"))
    return {
        "best": float(f2),
        "q": float(sweep["f2"][0]),
        "q50": float(resampled_quantile_sweep(cands, records, (QUANTILE,), n=60, prevalence=0.5)["f2"][0]),
        "t50": float(resampled_fixed_sweep(cands, records, (fixed,), n=60, prevalence=0.5)["f2"][0]),
        **{k: f"{n}/{total}" for k, (n, total) in above.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", default="42,1,2", help="training seeds (comma-separated)")
    p.add_argument("--out", type=Path, default=Path("/tmp/byu_bench/variants/baseline"))
    p.add_argument("--keep", action="store_true", help="reuse the checkpoints already in --out")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint to score")
    p.add_argument("--cache", type=Path, default=Path("/tmp/byu_bench/synth_s025_40_20"))
    p.add_argument("--seed", type=int, default=0, help="seed of the training set (evals: +1000, +2000)")
    p.add_argument("--n-eval", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--context-gate",
        type=float,
        default=None,
        help="envelope-context gate for scoring (default: the preset's; 0: off)",
    )
    p.add_argument(
        "--sets", default="A,B", help="comma-separated test sets among A-E (seeds +1000 ... +5000)"
    )
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not seeds:
        raise SystemExit("--seeds: give at least one seed")
    get_preset(args.preset).override(list(args.overrides))  # a bad --set fails before any work
    ensure_dataset(args.cache, 40, 20, args.seed, workers=args.threads)
    evals = eval_sets(args.cache, args.n_eval, args.seed, args.sets, args.threads)

    infer = get_preset(args.preset).override(args.overrides).infer
    steps = gated_steps(infer.steps, args.context_gate)
    fixed = infer.threshold_value if infer.threshold == "fixed" else 0.3
    print(f"candidate steps {list(steps)}; fixed threshold for the t50 column {fixed:g}", flush=True)
    cells: dict[tuple[int, str], dict] = {}
    for seed in seeds:
        run = args.out / f"seed{seed}"
        if not (args.keep and (run / "best.pt").exists()):
            cfg = get_preset(args.preset).override([*args.overrides, f"train.seed={seed}"])
            cfg.train.num_workers = min(cfg.train.num_workers, args.threads)
            t0 = time.perf_counter()
            train(cfg, args.cache, run, resume=False, progress=False)
            print(f"seed {seed}: trained in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
        for name, path in evals.items():
            cell = score_cell(run / f"{args.checkpoint}.pt", path, steps, fixed)
            cells[(seed, name)] = cell
            print(
                f"seed {seed}, set {name}: F2 best {cell['best']:.3f}, q{QUANTILE} {cell['q']:.3f} "
                f"(expected at 50 % motors {cell['q50']:.3f}, fixed {fixed:g} {cell['t50']:.3f}); "
                f"above q{QUANTILE}: granules {cell['granule']}, decoys {cell['decoy']}",
                flush=True,
            )

    label = " ".join(
        [f"`{args.preset}`", *args.overrides, *(["(last.pt)"] if args.checkpoint == "last" else [])]
    )
    head = [f"{n}, s{s}" for s in seeds for n in evals]
    row = [f"{cells[(s, n)]['best']:.3f} / {cells[(s, n)]['q']:.3f}" for s in seeds for n in evals]
    mean_best = np.mean([c["best"] for c in cells.values()])
    mean_q = np.mean([c["q"] for c in cells.values()])
    n_seeds = f"{len(seeds)} seed" + ("s" if len(seeds) > 1 else "")
    print(f"\nF2 at the best threshold / at q{QUANTILE}, fold 0, {n_seeds} x {len(evals)} sets:")
    print("| variant | " + " | ".join(head) + " | mean |")
    print("|---" * (len(head) + 2) + "|")
    print(f"| {label} | " + " | ".join(row) + f" | {mean_best:.3f} / {mean_q:.3f} |")
    mean_q50 = np.mean([c["q50"] for c in cells.values()])
    mean_t50 = np.mean([c["t50"] for c in cells.values()])
    print(
        f"expected F2 on sets of 60 with half of them holding a motor, mean of the cells: q{QUANTILE} "
        f"{mean_q50:.3f}, fixed {fixed:g} {mean_t50:.3f}"
    )


if __name__ == "__main__":
    main()
