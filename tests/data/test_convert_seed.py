"""`byu-motor convert --preset seed`: the seed's clip / scale / resample of portal volumes, grid-list motors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from byu_motor.cli import main
from byu_motor.data.external import stretch_and_resample
from byu_motor.data.grid import Grid
from byu_motor.data.io import read_tomogram
from byu_motor.data.label_formats import grid_list_to_volume
from byu_motor.data.layout import read_labels
from tests.data.test_external import make_mrc


def test_stretch_and_resample_matches_the_seed_float_path():
    data = np.random.default_rng(0).gamma(2.0, 1.0, (20, 36, 40)).astype(np.float32)
    out, spacing = stretch_and_resample(data, 8.0)
    assert spacing == 16.0 and out.shape == (10, 18, 20) and out.dtype == np.uint8
    lo, hi = np.percentile(data, [0.879, 99.064])
    unit = np.clip((data - lo) / (hi - lo), 0, 1)
    ref = F.interpolate(
        torch.from_numpy(unit)[None, None], size=out.shape, mode="trilinear", align_corners=False
    )
    ref = (ref[0, 0].numpy() * 255).astype(np.float64)
    assert np.abs(out - ref).max() <= 1.5  # the seed's float path, to about one grey level
    coarse, spacing = stretch_and_resample(data, 19.7)
    assert spacing == 19.7 and coarse.shape == data.shape  # coarser than 16 A: not resampled


def test_grid_list_to_volume_follows_the_seed_rule():
    motors = np.array([[64.0, 255.5, 0.0], [127.0, 511.0, 511.0]])
    out = grid_list_to_volume(motors, (40, 96, 100))
    z_index = np.linspace(0, 39, 128).astype(int)
    np.testing.assert_allclose(out[:, 0], [z_index[64], 39])
    np.testing.assert_allclose(out[0, 1:], [(256.0) * 96 / 512 - 0.5, 0.5 * 100 / 512 - 0.5])


def test_convert_seed_preset_with_grid_motors(tmp_path, capsys):
    rng = np.random.default_rng(1)
    src = make_mrc(tmp_path / "run1.mrc", rng.normal(0, 1, (40, 96, 100)).astype(np.float32), (8.0,) * 3)
    motors = tmp_path / "brendan.csv"
    motors.write_text("z,y,x,tomo_id,dataset_id\n64.0,300.2,128.7,run1,10210\n")
    out = tmp_path / "ext"
    argv = ["convert", str(src), "--out", str(out), "--preset", "seed", "--motors", str(motors)]
    assert main([*argv, "--motors-grid", "128,512,512"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "(20, 48, 50)" in warnings[0] and "< 128" in warnings[0]
    rec = read_labels(out / "train_labels.csv")["run1"]
    assert rec.shape == (20, 48, 50) and rec.spacing_a == 16.0
    native = grid_list_to_volume(np.array([[64.0, 300.2, 128.7]]), (40, 96, 100))
    expected = Grid((40, 96, 100), 8.0).map_to(Grid((20, 48, 50), 16.0), native)
    np.testing.assert_allclose(rec.motors, expected)
    assert read_tomogram(out / "train" / "run1").shape == (20, 48, 50)


def test_convert_bad_motors_grid(tmp_path, capsys):
    src = make_mrc(tmp_path / "a.mrc", np.zeros((4, 8, 8), np.float32), (10.0,) * 3)
    assert main(["convert", str(src), "--out", str(tmp_path / "o"), "--motors-grid", "128,512"]) == 2
    assert "--motors-grid" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("preset", ["plain", "seed"])
def test_presets_set_percentiles(tmp_path, preset):
    data = np.random.default_rng(2).normal(0, 1, (6, 16, 16)).astype(np.float32)
    src = make_mrc(tmp_path / "b.mrc", data, (20.0,) * 3)
    assert (
        main(["convert", str(src), "--out", str(tmp_path / preset), "--preset", preset, "--quality", "100"])
        == 0
    )
    vol = read_tomogram(tmp_path / preset / "train" / "b").astype(float)
    lo, hi = (0.5, 99.5) if preset == "plain" else (0.879, 99.064)
    p = np.percentile(data, [lo, hi])
    expected = np.clip((data - p[0]) / (p[1] - p[0]) * 255, 0, 255)
    assert np.abs(vol - expected).mean() < 2.0  # JPEG at quality 100
