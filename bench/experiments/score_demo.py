"""Benchmark: what a demo's ensemble scores on 120-180 more test tomograms, and which threshold rule suits it.

``byu-motor demo`` scores its ensemble on its own 20 test tomograms, where one tomogram moves F2 by .02-.05
and the seed moves it by up to .3 (bench/RESULTS.md). This script predicts the two larger synthetic sets of
``bench.experiments.compare_variants`` (A: seed 1000, B: seed 2000; 60 tomograms each) with the checkpoints of one or
more demo runs, the way the demo predicts (the recipe the checkpoints carry,
:func:`byu_motor.infer.recipe.resolve_infer`: the assumed test spacing, TTA views, ensemble mode and
candidate steps), and prints per run and set:

- F2 at the best threshold and at each quantile, on the set as it is;
- the expected F2 of each quantile rule on test sets of ``--n`` tomograms holding a motor with probability
  ``--prevalence`` (:func:`byu_motor.postprocess.threshold.resampled_quantile_sweep`). Sets A and B hold
  40 % and 45 % motor tomograms, the generator's test sets 50 % on average; a set with fewer motors favours
  a higher quantile than the test set would;
- the expected F2 of fixed thresholds (0.25, 0.3, 0.35) on the same simulated sets
  (:func:`byu_motor.postprocess.threshold.resampled_fixed_sweep`).

Then the mean over all cells. ``--sets A,B,C,D,E`` adds sets C, D and E (seeds 3000, 4000, 5000). A and B
served to choose settings for many sessions, C to check the context gate; D and E were kept fresh until the
sixteenth session, F until the seventeenth, G (seed 7000) until the eighteenth, H and I (seeds 8000, 9000)
until the twentieth, J (10000) until the twenty-first, K (11000) until the twenty-second; L (12000) is kept
fresh: the newest set gives the honest figure for a setting chosen on the others. Candidates are cached
before the candidate steps (``infer.steps``: the envelope-context gate) in ``DEMO_DIR/eval/<set>.json``; the
run's steps, the gate's threshold overridden by ``--context-gate`` (0: off), are applied to them afterwards,
as the predictor applies them to its final top-k. A second call only scores them again. ``--checkpoint last`` scores each fold's final weights instead of the
``best.pt`` the demo ensembles (picked on 8 validation tomograms), cached as ``<set><tag>-last.json``.

    python -m bench.experiments.score_demo DEMO_DIR [DEMO_DIR ...] [--sets A,B] [--context-gate G] [--n 20]
        [--prevalence 0.5] [--tta flip_x] [--scale S] [--cache /tmp/byu_bench/synth_s025_40_20]
        [--set infer.KEY=VALUE] [--checkpoint best|last]

``--tta`` defaults to the demo's ``flip_x`` (also for runs whose checkpoints predate the stored recipe;
empty: the checkpoints' views); ``--scale`` overrides the checkpoints' assumed spacing (13.1 A / scale).

About 1 min per set and run on 2 CPU cores with two ``tiny`` checkpoints and flip_x.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from byu_motor.config import InferConfig
from byu_motor.data.grid import Grid
from byu_motor.infer.recipe import Member, resolve_infer
from byu_motor.infer.runner import default_predictor_factory, read_repaired
from byu_motor.postprocess.steps import build_steps, run_steps
from byu_motor.postprocess.threshold import (
    best_threshold,
    quantile_sweep,
    resampled_fixed_sweep,
    resampled_quantile_sweep,
)
from byu_motor.synth import TEST_SPACING_A

from .compare_variants import eval_sets, gated_steps, test_records

QS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55)
FIXED = (0.25, 0.3, 0.35)


def demo_checkpoints(run: Path, kind: str = "best") -> list[Path]:
    """The fold checkpoints of a demo run (``runs/fold<k>/<kind>.pt``), in fold order.

    ``kind="best"``: the ones the demo ensembled (picked on each fold's validation tomograms); ``"last"``: each
    fold's final weights.
    """
    found = sorted(run.glob(f"runs/fold*/{kind}.pt"), key=lambda p: int(p.parent.name[4:]))
    if not found:
        raise SystemExit(f"{run}: no runs/fold*/{kind}.pt (not a byu-motor demo output folder?)")
    return found


def settings_tag(cfg: InferConfig) -> str:
    """Cache-name part for the settings a preset may change: the assumed spacings
    (``"-scales_1.0_1.25[-scale_merge_lift]"``, nothing for one) and ``"-ensemble_fusion"`` when the
    checkpoints' points are fused rather than their logits averaged."""
    tag = ""
    if tuple(cfg.scales) != (1.0,):
        tag = "-scales_" + "_".join(str(float(v)) for v in cfg.scales)
        tag += "" if cfg.scale_merge == "mean" else f"-scale_merge_{cfg.scale_merge}"
    return tag + ("" if cfg.ensemble == "logits" else f"-ensemble_{cfg.ensemble}")


#: ``--set`` keys that :func:`settings_tag` names from the effective config; any other by its own text
NAMED_KEYS = ("infer.scales", "infer.scale_merge", "infer.ensemble")
#: ``--set`` keys that do not change the cached candidates (the candidate steps run after the cache), so they
#: name no cache
UNNAMED_KEYS = ("infer.steps",)


def override_tag(overrides: list[str]) -> str:
    """Cache-name part for ``--set`` ``overrides`` that :func:`settings_tag` does not name, by their text
    (``["infer.nms_kernel_a=800"]`` -> ``"-nms_kernel_a_800"``)."""
    others = [o for o in overrides if o.split("=")[0] not in NAMED_KEYS + UNNAMED_KEYS]
    return "".join("-" + o.removeprefix("infer.").replace("=", "_").replace(",", "_") for o in others)


def read_test_volume(folder: Path) -> np.ndarray:
    """A test tomogram as the runner hands it to the predictor: wraparound repaired."""
    return read_repaired(folder)


def cache_path(run: Path, name: str, tag: str = "", kind: str = "best") -> Path:
    """Where the candidates of set ``name`` under settings ``tag`` (and ``kind``'s checkpoints) are cached:
    ``run/eval/<name><tag>.json``, ``-last`` appended for each fold's final weights."""
    return run / "eval" / f"{name}{tag}{'-last' if kind == 'last' else ''}.json"


def run_infer_config(
    run: Path, kind: str = "best", overrides: list[str] | tuple[str, ...] = ()
) -> InferConfig:
    """The inference settings the demo predicts ``run``'s ``kind`` checkpoints with: the recipe they carry
    (:func:`byu_motor.infer.recipe.resolve_infer`), then ``overrides`` (``infer.KEY=VALUE``)."""
    return resolve_infer([Member(str(c)) for c in demo_checkpoints(run, kind)], list(overrides))


def predict_set(
    run: Path, data: Path, name: str, cfg: InferConfig, tag: str = "", kind: str = "best"
) -> dict[str, list]:
    """Candidates of every test tomogram of ``data``, from the demo run's ensemble, before the candidate steps.

    ``cfg`` is the run's inference settings (:func:`run_infer_config`, resolved for the same ``kind``'s
    checkpoints); its candidate steps (``cfg.steps``: the context gate) are turned off here. Cached in
    ``run/eval/<name><tag>.json``, ``tag`` naming the settings that differ from one spacing and no ``--set``
    (e.g. ``-scales_1.0_1.25-scale_merge_lift``, :func:`settings_tag`); :func:`apply_gate` runs the steps as
    the predictor would (it runs them on the final top-k candidates, so running them on cached ones gives the
    same list). ``kind``: which checkpoint of each fold (:func:`demo_checkpoints`; :func:`cache_path` names
    it).
    """
    cache = cache_path(run, name, tag, kind)
    if cache.exists():
        return json.loads(cache.read_text())
    cfg = dataclasses.replace(cfg, steps=())
    predictor = default_predictor_factory([str(c) for c in demo_checkpoints(run, kind)], cfg, "cpu")
    out = {}
    for folder in sorted((data / "test").iterdir()):
        volume = read_test_volume(folder)
        out[folder.name] = [
            list(map(float, c)) for c in predictor.predict_volume(volume, cfg.test_spacing_a, folder.name)
        ]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out


def apply_gate(
    cands: dict[str, list], data: Path, cfg: InferConfig, gate: float | None = None
) -> dict[str, list]:
    """``cands`` through the candidate steps of ``cfg`` (``cfg.steps``), the envelope-context gate's threshold
    set to ``gate`` (None: the recipe's; 0: off; :func:`~bench.experiments.compare_variants.gated_steps`);
    unchanged when no step is left."""
    return apply_gate_all([cands], data, cfg, gate)[0]


def apply_gate_all(
    cand_sets: list[dict[str, list]], data: Path, cfg: InferConfig, gate: float | None = None
) -> list[dict[str, list]]:
    """:func:`apply_gate` on several candidate sets of the same tomograms, reading each tomogram once."""
    steps = build_steps(gated_steps(cfg.steps, gate))
    if not steps:
        return cand_sets
    out: list[dict[str, list]] = [{} for _ in cand_sets]
    for tid in cand_sets[0]:
        volume = read_test_volume(data / "test" / tid)
        grid = Grid(volume.shape, cfg.test_spacing_a)
        for cands, gated in zip(cand_sets, out):
            kept = run_steps(steps, [tuple(c) for c in cands[tid]], volume, grid)
            gated[tid] = [list(c) for c in kept]
    return out


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """``--tta``, ``--scale`` and ``--cache``: how the demo runs are re-predicted (shared with spacing_probe)."""
    p.add_argument(
        "--tta",
        default="flip_x",
        help="comma-separated TTA views (the demo's default; empty: the checkpoints' recipe)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="the demo's --scale, for the assumed test spacing 13.1 A / scale (default: the checkpoints' recipe)",
    )
    p.add_argument("--cache", type=Path, default=Path("/tmp/byu_bench/synth_s025_40_20"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="byu-motor demo --out folders")
    p.add_argument("--n", type=int, default=20, help="tomograms per simulated test set (the demo's 20)")
    p.add_argument("--prevalence", type=float, default=0.5, help="share of motor tomograms in a test set")
    p.add_argument("--draws", type=int, default=1000)
    add_recipe_arguments(p)
    p.add_argument(
        "--seed", type=int, default=0, help="seed of compare_variants' training set (evals: +1000, +2000)"
    )
    p.add_argument("--n-eval", type=int, default=60)
    p.add_argument("--sets", default="A,B", help="comma-separated sets among A-L (seeds +1000 ... +12000)")
    p.add_argument(
        "--context-gate",
        type=float,
        default=None,
        help="envelope-context gate threshold (default: the run's recipe's context_gate step; 0: off)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="each fold's best.pt (what the demo ensembles) or last.pt (final weights; cached apart)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="infer.KEY=VALUE",
        help="inference setting on top of the demo's (e.g. infer.scales=1.0); cached apart",
    )
    args = p.parse_args()
    bad = [o for o in args.overrides if not o.startswith("infer.")]
    if bad:
        raise SystemExit(f"--set: only infer.* settings can change after training, got {bad}")
    # the spacing and ensemble settings are named from the effective config (the preset's may differ from
    # the defaults); any other --set setting by its own text
    other_tag = override_tag(args.overrides)

    torch.set_num_threads(args.threads)
    # the demo's TTA and spacing on top of the checkpoints' recipe, then --set (so --set wins)
    sets = [f"infer.tta={args.tta}"] if args.tta.strip(",") else []
    if args.scale is not None:
        sets.append(f"infer.test_spacing_a={TEST_SPACING_A / args.scale}")
    evals = eval_sets(args.cache, args.n_eval, args.seed, args.sets, args.threads)

    rows = []
    for run in args.runs:
        cfg = run_infer_config(run, args.checkpoint, [*sets, *args.overrides])
        tag = settings_tag(cfg) + other_tag
        for name, data in evals.items():
            t0 = time.perf_counter()
            cands = predict_set(run, data, name, cfg, tag, args.checkpoint)
            cands = apply_gate(cands, data, cfg, args.context_gate)
            records, _ = test_records(data)
            _, best = best_threshold(cands, records)
            raw = quantile_sweep(cands, records, QS)
            sim = resampled_quantile_sweep(
                cands, records, QS, n=args.n, prevalence=args.prevalence, draws=args.draws
            )
            share = np.mean([len(r.motors) > 0 for r in records.values()])
            row = {"run": run.name, "set": name, "motor share": share, "best": best}
            row.update({f"q{q:g}": f for q, f in zip(raw.q, raw.f2)})
            row.update({f"sim q{q:g}": f for q, f in zip(sim.q, sim.f2)})
            fixed = resampled_fixed_sweep(
                cands, records, FIXED, n=args.n, prevalence=args.prevalence, draws=args.draws
            )
            row.update({f"sim t{t:g}": f for t, f in zip(fixed.threshold, fixed.f2)})
            rows.append(row)
            print(f"{run.name} {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    print("\nF2 per run and set: best threshold, each quantile on the set as it is, and expected on sets of "
          f"{args.n} with {args.prevalence:.0%} motors (sim):")  # fmt: skip
    print(df.round(3).to_string(index=False))
    print("\nmean over the cells:")
    print(df.drop(columns=["run", "set"]).mean().round(3).to_string())


if __name__ == "__main__":
    main()
