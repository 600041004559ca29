"""Hard-negative mining: a model's confident false positives are found away from motors and resampled."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.config import DataConfig, TrainConfig
from byu_motor.data.cache import CachedVolume
from byu_motor.data.dataset import PatchDataset
from byu_motor.data.grid import Grid
from byu_motor.data.normalize import Normalizer
from byu_motor.presets import get_preset
from byu_motor.train.mining import mine_hard_negatives

SHAPE = (32, 64, 64)
MOTOR = (16, 20, 20)
DECOY = (16, 44, 46)


class DarkDetector(nn.Module):
    """Logits = darkness averaged over each output cell: fires on every dark ball, motor or not."""

    def __init__(self, stride: int = 4):
        super().__init__()
        self.stride = (stride,) * 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -8.0 * F.avg_pool3d(x, self.stride[0]) - 2.0


def volume_with_balls() -> CachedVolume:
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in SHAPE], indexing="ij")
    vol = np.full(SHAPE, 150.0, dtype=np.float32)
    for c in (MOTOR, DECOY):
        vol[sum((g - v) ** 2 for g, v in zip(grids, c)) <= 9] = 20.0
    grid = Grid(SHAPE, 64.0)
    return CachedVolume(
        tomo_id="tomo_x",
        volume=vol.astype(np.uint8),
        src_grid=grid,
        grid=grid,
        motors=np.array([MOTOR], dtype=np.float64),
        normalizer=Normalizer("fixed", 0.5, 0.25),
        mean_grey=150.0,
    )


def config():
    cfg = get_preset("tiny").override(
        ["data.patch_size=16,32,32", "infer.patch_size=16,32,32", "infer.overlap=0.25", "train.num_workers=0"]
    )
    cfg.data.norm_mean, cfg.data.norm_std = 0.5, 0.25
    return cfg


def test_mined_points_are_the_decoy_not_the_motor():
    cfg = config()
    vol = volume_with_balls()
    (pts,) = mine_hard_negatives(DarkDetector(), (4, 4, 4), [vol], cfg, "cpu")
    assert len(pts) >= 1
    assert np.linalg.norm(pts[0] - np.array(DECOY)) <= 3.0  # the strongest false positive is the decoy
    d_motor = np.linalg.norm((pts - np.array(MOTOR)) * 64.0, axis=1)
    assert d_motor.min() > cfg.train.hard_negative_exclude_a  # nothing near the labelled motor
    # a score floor above every candidate leaves nothing
    cfg.train.hard_negative_min_score = 1.01
    (none,) = mine_hard_negatives(DarkDetector(), (4, 4, 4), [vol], cfg, "cpu")
    assert none.shape == (0, 3)


def test_mining_sees_the_detector_before_the_context_gate():
    # the decoy sits in a flat volume: the envelope-context gate with floor 0 would zero it at inference,
    # but mining must hand the detector's own confusions to training
    cfg = config()
    cfg.infer.steps = ({"name": "context_gate", "threshold": 0.1, "floor": 0.0},)
    vol = volume_with_balls()
    (gated,) = mine_hard_negatives(DarkDetector(), (4, 4, 4), [vol], cfg, "cpu")
    cfg.infer.steps = ()
    (plain,) = mine_hard_negatives(DarkDetector(), (4, 4, 4), [vol], cfg, "cpu")
    assert len(plain) >= 1
    np.testing.assert_array_equal(gated, plain)


def test_dataset_centres_negatives_on_mined_points():
    vol = volume_with_balls()
    train = TrainConfig(
        pos_ratio=0.0, hard_negative_ratio=1.0, augment={"flip": 0.0, "rot90": 0.0, "zoom": 0.0}
    )
    data = DataConfig(patch_size=(16, 32, 32))
    ds = PatchDataset([vol], data, train, stride=4, length=8, seed=0, augment=False)
    ds.set_hard_negatives([np.array([DECOY], dtype=np.float64)])
    for i in range(8):
        image = ds[i]["image"][0].numpy()
        dark = np.argwhere(image < image.mean() - 1.0)
        assert len(dark) >= 20  # the decoy ball is inside every crop, away from the faces
        centre = dark.mean(axis=0)
        assert np.all(centre >= 0.1 * np.array(data.patch_size) - 2.5)
        assert np.all(centre <= 0.9 * np.array(data.patch_size) + 1.5)
    try:
        ds.set_hard_negatives([])
    except ValueError as e:
        assert "1 volumes" in str(e) or "has 1" in str(e)
    else:
        raise AssertionError("a wrong number of point arrays must raise")
