"""2D members in training: slice sampling, the z-scaled 2D target, augmentation that keypoints follow, a short run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from byu_motor.config import TrainConfig
from byu_motor.data.cache import CachedVolume
from byu_motor.data.grid import Grid
from byu_motor.data.normalize import Normalizer
from byu_motor.data.slices2d import SliceDataset, gaussian_target_2d
from byu_motor.models import load_checkpoint
from byu_motor.models.detector2d import SliceDetector
from byu_motor.presets import get_preset
from byu_motor.train.engine import train
from tests.train.test_engine import VAL_IDS, one_thread, write_tiny_dataset  # noqa: F401

SPACING = (128.0, 64.0, 64.0)
SHAPE = (40, 64, 64)
MOTOR = (20.0, 30.3, 33.6)


def bright_blob_volume(motors: np.ndarray) -> CachedVolume:
    """A flat volume with a bright 3-pixel blob at each motor, on a (128, 64, 64) A grid."""
    vol = np.full(SHAPE, 60, dtype=np.uint8)
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    for z, y, x in motors:
        vol[(np.abs(zz - z) <= 1) & ((yy - y) ** 2 + (xx - x) ** 2 <= 9)] = 240
    grid = Grid(SHAPE, SPACING)
    return CachedVolume(
        "t",
        vol,
        grid,
        grid,
        np.asarray(motors, dtype=np.float64).reshape(-1, 3),
        Normalizer(mean=0.0, std=1.0),
        60.0,
    )


def settings(bg_ratio: float = 0.5) -> TrainConfig:
    return TrainConfig(sigma_a=256.0, bg_ratio=bg_ratio, bg_min_dist_a=1000.0, z_jitter_sigma=1.0)


class Data:
    patch_size = (8, 32, 32)


def test_gaussian_target_2d_peaks_at_the_cell_of_the_point_with_its_height():
    heat = gaussian_target_2d((32, 40), 8, np.array([[13.5, 27.5]]), 4.0, np.array([0.6]))
    assert heat.shape == (4, 5)
    assert np.unravel_index(heat.argmax(), heat.shape) == (1, 3)
    assert heat.max() == pytest.approx(0.6 * math.exp(-0.5 * (2.0**2 + 0.0**2) / 16.0), rel=1e-5)
    far = gaussian_target_2d((32, 40), 8, np.array([[13.5, 27.5]]), 1.0, np.array([1.0]))
    assert far[0, 0] == 0.0  # beyond the 99.9 % contour


def test_positive_samples_scale_the_peak_by_the_z_distance_and_place_it_at_the_motor():
    ds = SliceDataset(
        [bright_blob_volume(np.array([MOTOR]))], Data, settings(bg_ratio=0.0), 8, 40, seed=3, augment=False
    )
    sizes = set()
    for i in range(40):
        item = ds[i]
        assert bool(item["positive"]) and int(item["n_motors"]) == 1
        dz, y, x = item["motors"][0].tolist()
        assert abs(dz) <= 256.0 / 128.0 + 1e-6  # jitter truncated at one sigma (2 slices)
        sizes.add(round(dz))
        target = item["target"][0].numpy()
        cell = np.unravel_index(target.argmax(), target.shape)
        cy, cx = cell[0] * 8 + 3.5, cell[1] * 8 + 3.5
        assert abs(cy - y) <= 4.0 and abs(cx - x) <= 4.0
        # peak exp(-dz^2 / 2 sigma^2) (dz in A), sampled at the cell centre (sigma = 4 pixels)
        want = math.exp(-0.5 * (dz * 128.0 / 256.0) ** 2 - 0.5 * ((cy - y) ** 2 + (cx - x) ** 2) / 16.0)
        assert target.max() == pytest.approx(want, rel=1e-4)
        # the image shows the blob where the target says (centre slice bright when dz == 0)
        if round(dz) == 0:
            assert item["image"][1, int(round(y)), int(round(x))] > 0.6
    assert len(sizes) >= 3  # the jitter really moves the slice


def test_negatives_come_from_slices_far_from_every_motor_at_the_bg_ratio():
    ds = SliceDataset([bright_blob_volume(np.array([MOTOR]))], Data, settings(bg_ratio=1.0), 8, 200, seed=0)
    items = [ds[i] for i in range(200)]
    neg = [it for it in items if not bool(it["positive"])]
    assert 70 <= len(neg) <= 130  # bg_ratio 1: about half
    for it in neg:
        assert int(it["n_motors"]) == 0 and float(it["target"].max()) == 0.0
    assert np.all(np.abs(ds.negatives[0] - MOTOR[0]) * 128.0 > 1000.0)


def test_augmented_keypoints_follow_the_image():
    ds = SliceDataset(
        [bright_blob_volume(np.array([MOTOR]))], Data, settings(bg_ratio=0.0), 8, 60, seed=1, augment=True
    )
    checked = 0
    for i in range(60):
        item = ds[i]
        dz, y, x = item["motors"][0].tolist()
        if int(item["n_motors"]) == 1 and round(dz) == 0:
            yy, xx = int(round(y)), int(round(x))
            patch = item["image"][1, max(yy - 1, 0) : yy + 2, max(xx - 1, 0) : xx + 2]
            assert patch.max() > item["image"][1].mean() + 0.2, i
            checked += 1
    assert checked >= 5


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_data_2d"))


def test_tiny_2d_trains_validates_through_the_3d_path_and_checkpoints(data_dir: Path, tmp_path: Path):
    cfg = get_preset("tiny_2d").override(
        [
            "data.spacing_a=128,64,64",
            "data.patch_size=8,32,32",
            "infer.patch_size=8,32,32",
            "train.steps=4",
            "train.val_every=4",
            "train.batch_size=4",
            "train.num_workers=0",
            "train.warmup_steps=1",
            "train.log_every=1",
        ]
    )
    losses: list[float] = []
    result = train(
        cfg, data_dir, tmp_path / "run", val_ids=VAL_IDS, callback=lambda s, i: losses.append(i["loss"])
    )
    assert result["step"] == 4 and all(math.isfinite(v) for v in losses)
    assert 0.0 <= result["last_f2"] <= 1.0  # validated through the 3D sliding-window path
    loaded = load_checkpoint(tmp_path / "run" / "last.pt")
    assert isinstance(loaded.model, SliceDetector) and loaded.config.model.dims == 2
    with torch.no_grad():
        assert loaded.model.eval()(torch.zeros(1, 1, 4, 32, 32)).shape == (1, 1, 2, 8, 8)


def test_make_dataset_routes_2d_members_and_refuses_hard_negative_mining():
    from byu_motor.train.inputs import make_dataset

    cfg = get_preset("tiny_2d").override(["data.patch_size=8,32,32"])
    vols = [bright_blob_volume(np.array([MOTOR]))]
    assert isinstance(make_dataset(vols, cfg, (2, 4, 4), 5), SliceDataset)
    cfg.train.hard_negative_ratio = 0.5
    with pytest.raises(ValueError, match="hard_negative_ratio"):
        make_dataset(vols, cfg, (2, 4, 4), 5)
