"""A tiny model trains with the seed's window sampler and augmentation set (train.sampler / train.augment_set)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from byu_motor.data.io import read_tomogram
from byu_motor.data.seed_sampler import SeedWindowDataset
from byu_motor.train.engine import train
from tests.train.test_engine import VAL_IDS, one_thread, tiny_config, write_tiny_dataset  # noqa: F401


@pytest.mark.parametrize("resample_once", [False, True])
def test_tiny_model_trains_three_steps_on_seed_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resample_once: bool
) -> None:
    data = write_tiny_dataset(tmp_path / "data")
    served: list[int] = []
    original = SeedWindowDataset.__getitem__

    def counting(self: SeedWindowDataset, i: int) -> dict:
        served.append(i)
        return original(self, i)

    monkeypatch.setattr(SeedWindowDataset, "__getitem__", counting)
    cfg = tiny_config(
        steps=3,
        val_every=3,
        sampler="seed",
        augment_set="seed",
        bg_ratio=0.1,
        sigma_rule="covariance",
        resample_once=resample_once,
        hard_negative_ratio=0.0,  # the seed sampler draws its own windows
    )
    cfg.data.spacing_a = (80.0, 80.0, 80.0)  # the tomograms are at 64 A: windows come from a resampling
    losses: list[float] = []
    result = train(
        cfg, data, tmp_path / "run", val_ids=VAL_IDS, callback=lambda s, i: losses.append(i["loss"])
    )
    assert result["step"] == 3 and len(losses) == 3
    assert all(math.isfinite(v) for v in losses)
    assert served == list(range(6))  # every item of the 3 x 2 micro-batches came from the seed windows
    cached = [np.load(f, mmap_mode="r").shape for f in sorted((data / ".byu_cache").glob("*.npy"))]
    own = [read_tomogram(d).shape for d in sorted((data / "train").iterdir()) if d.name not in VAL_IDS]
    assert (sorted(cached) == sorted(own)) == resample_once  # resample_once: the cache keeps the tomograms


def test_resample_once_needs_the_seed_sampler(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "data")
    with pytest.raises(ValueError, match="resample_once"):
        train(tiny_config(steps=1, resample_once=True), data, tmp_path / "run", val_ids=VAL_IDS)


def test_unknown_sampler_is_one_clear_error(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "data")
    cfg = tiny_config(steps=1, sampler="windows")
    with pytest.raises(ValueError, match="train.sampler"):
        train(cfg, data, tmp_path / "run", val_ids=VAL_IDS)
    assert not (data / ".byu_cache").exists()  # refused before any tomogram was read


def test_every_preset_passes_the_sampling_checks() -> None:
    from byu_motor.presets import _PRESETS, get_preset
    from byu_motor.train.inputs import check_sampling

    assert {"seed_resnext50", "seed_maxvit_tiny_2d", "tiny"} <= set(_PRESETS)
    for name in _PRESETS:
        check_sampling(get_preset(name))
    mined = tiny_config(steps=1, sampler="seed", hard_negative_ratio=0.5)
    with pytest.raises(ValueError, match="hard_negative_ratio"):
        check_sampling(mined)
