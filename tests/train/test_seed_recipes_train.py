"""Every seed preset's training recipe runs through ``train()``: its sampler, augmentation, schedule, EMA,
train_on_all and memory settings, with a tiny network of the same dimensionality swapped in (CPU-sized)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from byu_motor.models import load_checkpoint
from byu_motor.presets import _PRESETS, get_preset
from byu_motor.train.engine import train
from tests.train.test_engine import one_thread, write_tiny_dataset  # noqa: F401

SEED_PRESETS = sorted(n for n in _PRESETS if n.startswith("seed_"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("seed_recipes"))


@pytest.mark.parametrize("name", SEED_PRESETS)
def test_the_seed_training_recipe_runs_end_to_end(name: str, data_dir: Path, tmp_path: Path) -> None:
    cfg = get_preset(name)
    two_d = cfg.model.dims == 2
    small = get_preset("tiny_2d" if two_d else "tiny")
    cfg.model = small.model  # the recipe is under test, not the seed's network
    cfg.data.spacing_a = (128.0, 64.0, 64.0) if two_d else (64.0, 64.0, 64.0)  # the tomograms are at 64 A
    cfg.data.patch_size = (8, 32, 32) if two_d else (16, 32, 32)
    cfg.data.cache_dir = str(tmp_path / "cache")
    t = cfg.train
    t.steps, t.warmup_steps, t.num_workers, t.log_every, t.amp = 3, 1, 0, 1, "none"
    coat = name == "seed_coat_lite_medium_2d"  # the one member that held fold 0 out
    assert t.train_on_all != coat and t.ema_every_micro
    assert (t.n_folds, t.fold, t.keep_steps) == (4, 0, (10000,)) if coat else t.keep_steps == ()
    assert t.resample_once  # 3D windows and 2D slice triplets both from the tomograms at their own spacing
    if not two_d:
        assert t.sampler == "seed" and t.augment_set == "seed"
    losses: list[float] = []
    result = train(
        cfg, data_dir, tmp_path / "run", callback=lambda s, i: losses.append(i["loss"]), progress=False
    )
    assert result["step"] == 3 and len(losses) == 3 and all(math.isfinite(v) for v in losses)
    loaded = load_checkpoint(tmp_path / "run" / "last.pt")
    assert loaded.config.infer.threshold == "negative_share" and loaded.config.model.dims == cfg.model.dims
    assert (tmp_path / "run" / "folds.csv").exists() == coat  # validation only for the CoaT recipe
