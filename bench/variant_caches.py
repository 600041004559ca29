"""Benchmark helper: one set of forward passes, candidate caches for several post-processing settings.

``score_demo.py`` predicts a test set once per ``--set`` combination. Settings that only change what happens
after the network (how checkpoints' points are fused, how scales merge, decoding) can share the forward
passes: this script runs them once per tomogram (:meth:`Predictor.scale_logits`) and decodes each variant
from the same logits (:meth:`Predictor.candidates_from_logits`), writing the caches under the names
``score_demo.py`` reads (``DEMO_DIR/eval/<set><tag>.json``). Score them afterwards with
``python bench/score_demo.py DEMO_DIR ... --sets ... [--set infer.KEY=VALUE]``.

    python bench/variant_caches.py DEMO_DIR [DEMO_DIR ...] --sets J --variant "" \
        --variant infer.fusion_fill=true

Each ``--variant`` is a ``;``-separated list of ``infer.KEY=VALUE`` (empty: the run's own
settings). Variants that change the forward passes (``scales``, TTA, patch, overlap) are refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_variants import eval_sets  # noqa: E402
from score_demo import cache_path, demo_checkpoints, override_tag, read_test_volume, settings_tag  # noqa: E402

from byu_motor.config import Config  # noqa: E402
from byu_motor.demo import demo_infer_config  # noqa: E402
from byu_motor.infer.runner import default_predictor_factory  # noqa: E402

#: settings that change the forward passes or the volume they read (edge bands taken out, the assumed spacing),
#: so they cannot share them
FORWARD_KEYS = (
    "scales", "tta", "patch_size", "overlap", "batch_windows", "border_weight", "merge", "amp", "edge_bands",
    "test_spacing_a",
)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="byu-motor demo --out folders")
    p.add_argument("--sets", default="J", help="comma-separated sets (compare_variants.SET_SEEDS)")
    p.add_argument("--variant", action="append", default=[], help="';'-separated infer.KEY=VALUE ('': as is)")
    p.add_argument("--tta", default="flip_x")
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--cache", type=Path, default=Path("/tmp/byu_bench/synth_s025_40_20"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-eval", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    variants = [[o for o in v.split(";") if o] for v in (args.variant or [""])]
    for v in variants:
        bad = [
            o
            for o in v
            if not o.startswith("infer.") or o.split("=")[0].removeprefix("infer.") in FORWARD_KEYS
        ]
        if bad:
            raise SystemExit(f"--variant: only post-processing infer.* settings, got {bad}")
    torch.set_num_threads(args.threads)
    tta = tuple(t for t in args.tta.split(",") if t)
    evals = eval_sets(args.cache, args.n_eval, args.seed, args.sets, args.threads)
    for run in args.runs:
        base = demo_infer_config(json.loads((run / "result.json").read_text())["preset"], args.scale, tta)
        cfgs = []
        for v in variants:
            cfg = Config(infer=base).override(v).infer if v else base
            cfgs.append((dataclasses.replace(cfg, context_gate=0.0), settings_tag(cfg) + override_tag(v)))
        predictor = default_predictor_factory([str(c) for c in demo_checkpoints(run)], cfgs[0][0], "cpu")
        for name, data in evals.items():
            paths = [cache_path(run, name, tag) for _, tag in cfgs]
            if all(path.exists() for path in paths):
                continue
            t0 = time.perf_counter()
            outs: list[dict[str, list]] = [{} for _ in cfgs]
            for folder in sorted((data / "test").iterdir()):
                volume = read_test_volume(folder, base)
                parts = predictor.scale_logits(volume, base.test_spacing_a, folder.name)
                for (cfg, _), out in zip(cfgs, outs):
                    predictor.config = cfg  # post-processing only: the forward passes are shared
                    cands = predictor.candidates_from_logits(parts, volume, base.test_spacing_a, folder.name)
                    out[folder.name] = [list(map(float, c)) for c in cands]
            for path, out in zip(paths, outs):
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.exists():
                    path.write_text(json.dumps(out))
            print(f"{run.name} {name}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
