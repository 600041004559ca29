"""Every seed preset's inference recipe predicts a test folder end to end (tiling, views, decoding, fusion,
threshold rule), with a tiny network of the same dimensionality in its checkpoint: one row per tomogram."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from byu_motor.infer.runner import run_prediction
from byu_motor.models import create_model
from byu_motor.models.checkpoint import save_checkpoint
from byu_motor.presets import _PRESETS, get_preset
from tests.train.test_engine import N_NEG, N_POS, one_thread, write_tiny_dataset  # noqa: F401

SEED_PRESETS = sorted(n for n in _PRESETS if n.startswith("seed_") and not n.endswith("_16gb"))


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = write_tiny_dataset(tmp_path_factory.mktemp("seed_predict_src"))
    out = tmp_path_factory.mktemp("seed_predict")
    for i in (0, 1, N_POS + N_NEG - 1):  # two with a motor, one without
        shutil.copytree(src / "train" / f"tomo_{i:03d}", out / "test" / f"tomo_{i:03d}")
    return out


@pytest.mark.parametrize("name", SEED_PRESETS)
def test_the_seed_inference_recipe_predicts_every_row(name: str, test_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = get_preset(name)
    two_d = cfg.model.dims == 2
    cfg.model = get_preset("tiny_2d" if two_d else "tiny").model  # the recipe is under test, not the network
    cfg.data.spacing_a = (128.0, 64.0, 64.0) if two_d else (64.0, 64.0, 64.0)
    cfg.infer.test_spacing_a = 64.0  # the test tomograms' spacing
    cfg.infer.patch_size = (12, 32, 32) if two_d else (16, 32, 32)  # 2D: a multiple of 3 and 4, as 48
    ckpt = save_checkpoint(tmp_path / f"{name}.pt", create_model(cfg.model).eval(), cfg)
    sub = run_prediction(test_dir, [ckpt], tmp_path / "sub.csv", cfg.infer)
    assert sorted(sub["tomo_id"]) == sorted(p.name for p in (test_dir / "test").iterdir())
    written = pd.read_csv(tmp_path / "sub.csv")
    assert len(written) == 3 and written.notna().all().all()
    # the seed's rule: the 55 % lowest-scoring tomograms are predicted without a motor (2 of 3 here)
    assert (written["Motor axis 0"] == -1).sum() >= 1
