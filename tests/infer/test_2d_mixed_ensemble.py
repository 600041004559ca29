"""A mixed ensemble, one 3D ``tiny`` and one 2D ``tiny_2d`` checkpoint, predicts through ``run_prediction``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from byu_motor.data.io import write_tomogram
from byu_motor.infer.recipe import Member, resolve_infer
from byu_motor.infer.runner import run_prediction
from byu_motor.models import create_model, save_checkpoint
from byu_motor.presets import get_preset

# the two recipes differ on these ensemble-wide settings; a recipe file's "set" chooses one for all
COMMON = [
    "infer.threshold=fixed",
    "infer.threshold_value=0.0",
    "infer.scales=1.0",
    "infer.scale_merge=mean",
    "infer.ensemble=fusion",
    "infer.steps=[]",
]


def _partial(path) -> dict:
    lines = [json.loads(x) for x in open(f"{path}.partial.jsonl")]
    return {r["tomo_id"]: r["candidates"] for r in lines if "tomo_id" in r and "candidates" in r}


def test_one_3d_and_one_2d_checkpoint_predict_together(tmp_path):
    paths = []
    for name in ("tiny", "tiny_2d"):
        cfg = get_preset(name)
        torch.manual_seed(0)
        paths.append(str(save_checkpoint(tmp_path / f"{name}.pt", create_model(cfg.model), cfg)))
    rng = np.random.default_rng(0)
    for tid in ("tomo_a", "tomo_b"):
        write_tomogram(rng.integers(0, 255, (24, 48, 40)).astype(np.uint8), tmp_path / "data" / "test" / tid)

    both = resolve_infer([Member(p) for p in paths], COMMON)
    assert tuple(both.members[paths[1]]["patch_size"]) == (16, 128, 128)  # the 2D member keeps its window
    sub = run_prediction(
        tmp_path / "data", paths, tmp_path / "both.csv", both, devices="cpu", keep_partial=True
    )
    assert sorted(sub["tomo_id"]) == ["tomo_a", "tomo_b"] and sub.notna().all().all()
    assert pd.read_csv(tmp_path / "both.csv").shape == (2, 4)

    alone = resolve_infer([Member(paths[0])], COMMON)
    run_prediction(
        tmp_path / "data", paths[:1], tmp_path / "alone.csv", alone, devices="cpu", keep_partial=True
    )
    # the 2D member changed the fused candidates: it took part
    assert _partial(tmp_path / "both.csv") != _partial(tmp_path / "alone.csv")
