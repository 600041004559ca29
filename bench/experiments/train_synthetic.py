"""Benchmark: train the `tiny` preset on synthetic `--scale 0.25` data on CPU; validation and test F2 vs minutes.

Goal: validation F2 >= 0.9 within 10 minutes on 2 CPU cores. The synthetic set (40 train, 20 test
tomograms by default) is generated once into ``--cache`` and reused. After training, the 20 test tomograms
are predicted through the inference runner with the best checkpoint (its tuned threshold, the preset's
assumed test spacing, exactly as a submission would be made) and scored against ``test_labels.csv``; so are
``--n-eval`` (60) more test tomograms of another seed, a steadier figure than 8 validation or 20 test ones.
With ``--fit`` the training tomograms are predicted too (same Validator path): their best-threshold F2 and
the highest score away from every motor tell under-fitting (low F2 on the training tomograms) from a
failure to generalise (training tomograms fine, held-out ones not). Each false positive and misplaced
prediction is named after the generator's distractor it hit (granule, ring-only decoy, vesicle, gold, edge
band or other; :func:`byu_motor.synth.error_sources`). With ``--without granule`` the eval set is generated a
second time with the same seed but without those look-alikes (same tomograms, motors and other objects) and
scored the same way: the F2 the look-alikes cost.

    python -m bench.experiments.train_synthetic [--cache /tmp/byu_bench/synth_s025_40_20] [--out RUN] [--threads 2]
        [--preset tiny] [--set train.steps=300 ...] [--minutes 10] [--fit] [--without granule,decoy]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import torch

from byu_motor.metric import score_details
from byu_motor.presets import get_preset
from byu_motor.synth import ablation_kinds, error_sources, format_sources, generate_dataset
from byu_motor.train.engine import train


def ensure_dataset(
    cache: Path, n_train: int, n_test: int, seed: int, workers: int, without: tuple[str, ...] = ()
) -> float:
    """Generate the synthetic set into ``cache`` unless it is already complete; returns seconds spent.

    A set without the generator's distractor record (``synth_meta.json`` from an older generator) is
    written again with the current generator.
    """
    meta = cache / "synth_meta.json"
    if (cache / "test_labels.csv").exists() and (cache / "train_labels.csv").exists() and meta.exists():
        if all("distractors" in e for e in json.loads(meta.read_text()).values()):
            return 0.0
    t0 = time.perf_counter()
    generate_dataset(cache, n_train, n_test, scale=0.25, seed=seed, workers=workers, without=without)
    return time.perf_counter() - t0


def eval_set_dir(cache: Path, n_eval: int) -> Path:
    """Where the ``n_eval`` extra test tomograms (seed + 1000) of the training set in ``cache`` live."""
    return cache.with_name(f"{cache.name}_eval{n_eval}")


def fit_figures(cfg, cache: Path, run: Path) -> dict[str, float]:
    """Best-threshold F2 of ``run/best.pt`` on its own training tomograms and its top off-motor score there.

    Returns:
        ``f2``, ``threshold``, ``n`` (training tomograms) and ``max_off_motor`` (highest candidate score
        farther than 1000 A from every motor, over all training tomograms).
    """
    from byu_motor.data.folds import read_folds
    from byu_motor.data.layout import read_labels
    from byu_motor.models.checkpoint import load_checkpoint
    from byu_motor.postprocess.threshold import best_threshold, max_off_motor_score
    from byu_motor.train.validate import Validator

    records = read_labels(cache / "train_labels.csv")
    folds = read_folds(run / "folds.csv") if (run / "folds.csv").exists() else {}
    train_ids = [t for t in records if folds.get(t, -1) != cfg.train.fold]
    recs = {t: records[t] for t in train_ids}
    loaded = load_checkpoint(run / "best.pt")
    cands = Validator(loaded.config, cache / "train", recs, torch.device("cpu")).candidates(
        loaded.model, loaded.config.model.stride
    )
    thr, f2 = best_threshold(cands, recs)
    off = max_off_motor_score(cands, recs)
    return {"f2": f2, "threshold": thr, "n": len(recs), "max_off_motor": off}


def _counts(d: dict) -> str:
    """``TP a, FP b, FN c (d misplaced)`` of a :func:`~byu_motor.metric.score_details` dict."""
    return f"TP {d['tp']}, FP {d['fp']}, FN {d['fn']} ({d['misplaced']} misplaced)"


def _sources(data: Path, sub: pd.DataFrame) -> str:
    """What the false positives and misplaced predictions of ``sub`` hit (the generator's distractor record)."""
    solution = pd.read_csv(data / "test_labels.csv")
    src = error_sources(solution, sub, json.loads((data / "synth_meta.json").read_text()))
    return f"FP on: {format_sources(src['false_positive'])}; misplaced on: {format_sources(src['misplaced'])}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=Path("/tmp/byu_bench/synth_s025_40_20"))
    p.add_argument("--out", type=Path, default=Path("/tmp/byu_bench/run_tiny"))
    p.add_argument("--n-train", type=int, default=40)
    p.add_argument("--n-test", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--n-eval", type=int, default=60, help="extra held-out test tomograms (seed + 1000); 0: none"
    )
    p.add_argument("--preset", default="tiny", help="e.g. tiny_fine (3x the time per step of tiny)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--minutes", type=float, default=10.0, help="goal: validation F2 >= 0.9 within this time")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--keep", action="store_true", help="resume an existing --out instead of starting afresh")
    p.add_argument(
        "--without",
        default="",
        help="also score the eval set regenerated without these look-alikes (granule, decoy; comma-separated)",
    )
    p.add_argument(
        "--fit", action="store_true", help="also score the training tomograms (fit vs generalisation)"
    )
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    without = ablation_kinds(k for k in args.without.split(",") if k)  # a typo fails now, not after training
    gen_s = ensure_dataset(args.cache, args.n_train, args.n_test, args.seed, workers=args.threads)
    if not args.keep and args.out.exists():
        shutil.rmtree(args.out)
    cfg = get_preset(args.preset).override(list(args.overrides))
    cfg.train.num_workers = min(cfg.train.num_workers, args.threads)

    t0 = time.perf_counter()
    result = train(cfg, args.cache, args.out, resume=args.keep)
    train_min = (time.perf_counter() - t0) / 60

    # when was the goal first reached?
    rows = [json.loads(x) for x in (args.out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["event"] == "val"]
    goal = next((r for r in val if (r["f2"] or 0) >= 0.9), None)

    from byu_motor.infer.runner import run_prediction

    t1 = time.perf_counter()
    # the preset's inference settings: checkpoint threshold, assumed test spacing, as a submission would
    sub = run_prediction(args.cache, [args.out / "best.pt"], args.out / "test_submission.csv", cfg.infer)
    test = score_details(pd.read_csv(args.cache / "test_labels.csv"), sub)
    test_min = (time.perf_counter() - t1) / 60
    ev = None
    if args.n_eval > 0:
        eval_dir = eval_set_dir(args.cache, args.n_eval)
        ensure_dataset(eval_dir, 0, args.n_eval, args.seed + 1000, workers=args.threads)
        eval_sub = run_prediction(
            eval_dir, [args.out / "best.pt"], args.out / "eval_submission.csv", cfg.infer
        )
        ev = score_details(pd.read_csv(eval_dir / "test_labels.csv"), eval_sub)
    ablated = None
    if args.n_eval > 0 and without:
        ablated_dir = eval_dir.with_name(f"{eval_dir.name}_without_{'_'.join(without)}")
        ensure_dataset(ablated_dir, 0, args.n_eval, args.seed + 1000, workers=args.threads, without=without)
        ablated_sub = run_prediction(
            ablated_dir, [args.out / "best.pt"], args.out / "eval_without_submission.csv", cfg.infer
        )
        ablated = score_details(pd.read_csv(ablated_dir / "test_labels.csv"), ablated_sub)

    fit = fit_figures(cfg, args.cache, args.out) if args.fit else None

    print(f"data generation: {gen_s / 60:.1f} min (0 when cached)")
    print(f"training: {result['step']} steps in {train_min:.1f} min ({torch.get_num_threads()} threads)")
    for r in val:
        print(
            f"  step {r['step']:5d}  {r['elapsed_s'] / 60:5.1f} min  val F2 {r['f2']:.3f}  thr {r['threshold']:.3f}"
        )
    print(
        f"best validation F2: {result['best_f2']:.3f} at step {result['best_step']} (thr {result['best_threshold']:.3f})"
    )
    if goal:
        print(f"goal F2 >= 0.9 reached at step {goal['step']} after {goal['elapsed_s'] / 60:.1f} min")
    else:
        print("goal F2 >= 0.9 NOT reached")
    print(
        f"test F2 ({args.n_test} tomograms, best.pt, the preset's threshold rule): {test['f2']:.3f} "
        f"({_counts(test)}; {test_min:.1f} min to predict)"
    )
    print(f"  {_sources(args.cache, sub)}")
    if ev is not None:
        print(
            f"eval F2 ({args.n_eval} more test tomograms, best.pt, the preset's threshold rule): {ev['f2']:.3f} "
            f"({_counts(ev)})"
        )
        print(f"  {_sources(eval_dir, eval_sub)}")
    if ablated is not None:
        print(
            f"eval F2 on the same {args.n_eval} tomograms without {', '.join(without)}: {ablated['f2']:.3f} "
            f"({_counts(ablated)}); F2 gain without them {ablated['f2'] - ev['f2']:+.3f}"
        )
        print(f"  {_sources(ablated_dir, ablated_sub)}")
    if fit is not None:
        print(
            f"fit: F2 {fit['f2']:.3f} on the {fit['n']} training tomograms (thr {fit['threshold']:.3f}); "
            f"highest score away from every motor there {fit['max_off_motor']:.3f}"
        )
    ok = goal is not None and goal["elapsed_s"] / 60 <= args.minutes
    print(f"GOAL {'MET' if ok else 'NOT MET'}: validation F2 >= 0.9 within {args.minutes:g} min")


if __name__ == "__main__":
    main()
