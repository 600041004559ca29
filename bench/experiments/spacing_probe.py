"""Benchmark: what the unknown test spacing costs a demo's ensemble, on the tomograms not at the assumed one.

A submission cannot know a test tomogram's voxel spacing; the demo, like the competition's top solutions,
assumes one (13.1 A real, 52.4 A at the synthetic scale 0.25). The generator draws 30 % of test tomograms at
another spacing (real 15.6-19.7 A, 62-79 A synthetic), so their structures reach the model 0.66-0.84x too
small. This script predicts each such tomogram of the chosen sets twice, at the assumed spacing and at its
true one, gates and thresholds the candidates as the run's recipe does (the candidate steps the checkpoints
carry, :func:`byu_motor.infer.recipe.resolve_infer`; fixed threshold, ``--threshold``),
and prints per tomogram the top candidate's score and whether it is the motor, then the counts:

- motor tomograms whose top candidate is the motor and passes the threshold (true positives), and those
  whose top candidate passes it elsewhere (misplaced: a false negative to the metric);
- motor-free tomograms whose top candidate passes it (false positives).

The difference between the two columns bounds what any spacing estimate could gain on these tomograms.

    python -m bench.experiments.spacing_probe DEMO_DIR [--sets D,E] [--threshold 0.3] [--tta flip_x] [--scale S]
        [--cache /tmp/byu_bench/synth_s025_40_20]

About 10 s per tomogram on 2 CPU cores with two ``tiny`` checkpoints and flip_x.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from byu_motor.infer.runner import default_predictor_factory, read_repaired
from byu_motor.synth import TEST_SPACING_A

from .compare_variants import eval_sets, test_records
from .score_demo import add_recipe_arguments, demo_checkpoints, run_infer_config

MATCH_A = 1000.0  # the metric's distance threshold


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a byu-motor demo --out folder")
    p.add_argument("--sets", default="D,E", help="comma-separated sets among A-E")
    p.add_argument("--threshold", type=float, default=0.3, help="fixed threshold on the gated scores")
    add_recipe_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-eval", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    sets = [f"infer.tta={args.tta}"] if args.tta.strip(",") else []
    if args.scale is not None:
        sets.append(f"infer.test_spacing_a={TEST_SPACING_A / args.scale}")
    cfg = run_infer_config(args.run, "best", sets)
    # the predictor runs the recipe's candidate steps (the context gate) on its own candidates
    predictor = default_predictor_factory([str(c) for c in demo_checkpoints(args.run)], cfg, "cpu")
    counts = {
        "motor tomograms": 0,
        "TP assumed": 0,
        "TP true": 0,
        "misplaced assumed": 0,
        "misplaced true": 0,
        "motor-free": 0,
        "FP assumed": 0,
        "FP true": 0,
    }
    for name, data in eval_sets(args.cache, args.n_eval, args.seed, args.sets, args.threads).items():
        records, _ = test_records(data)
        for tid, rec in sorted(records.items()):
            if abs(rec.spacing_a - cfg.test_spacing_a) < 0.5:
                continue
            volume = read_repaired(data / "test" / tid)
            cells = []
            for tag, spacing in (("assumed", cfg.test_spacing_a), ("true", rec.spacing_a)):
                cands = predictor.predict_volume(volume, spacing, tid)
                top = cands[0] if cands else None
                score = top[3] if top else 0.0
                dist = (
                    min(float(np.linalg.norm(np.subtract(top[:3], m))) for m in rec.motors) * rec.spacing_a
                    if top and len(rec.motors)
                    else np.inf
                )
                passed = score >= args.threshold
                if len(rec.motors):
                    counts[f"TP {tag}"] += int(passed and dist <= MATCH_A)
                    counts[f"misplaced {tag}"] += int(passed and dist > MATCH_A)
                else:
                    counts[f"FP {tag}"] += int(passed)
                cells.append(f"{tag} {spacing:.1f} A: {score:.2f}{' motor' if dist <= MATCH_A else ''}")
            counts["motor tomograms" if len(rec.motors) else "motor-free"] += 1
            kind = "motor" if len(rec.motors) else "no motor"
            print(f"{name} {tid} ({kind}, {rec.spacing_a:.1f} A): " + " | ".join(cells), flush=True)
    print("\ncounts on the tomograms not at the assumed spacing, at threshold", args.threshold)
    for k, v in counts.items():
        print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
