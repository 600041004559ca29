"""Second stage in training: crops from cached volumes, a classifier that learns, the engine's hook."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from byu_motor.data.cache import CachedVolume
from byu_motor.data.grid import Grid
from byu_motor.data.normalize import Normalizer
from byu_motor.models import load_checkpoint
from byu_motor.train.engine import train
from byu_motor.train.rescore import train_rescorer, training_crops
from tests.train.test_engine import VAL_IDS, one_thread, tiny_config, write_tiny_dataset  # noqa: F401

CROP = (8, 16, 16)


def _small_rescore(cfg, **kw):
    cfg.rescore.crop_size, cfg.rescore.widths, cfg.rescore.stem_stride = CROP, (4, 8), 1
    cfg.rescore.dropout = 0.0
    for k, v in kw.items():
        setattr(cfg.rescore, k, v)
    return cfg


def _volume(seed: int, motors: list, shape=(20, 40, 40)) -> CachedVolume:
    """Noise at 150 with a dark ball (radius 3) at each motor."""
    rng = np.random.default_rng(seed)
    vol = rng.normal(150, 15, shape)
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    for m in motors:
        vol[(zz - m[0]) ** 2 + (yy - m[1]) ** 2 + (xx - m[2]) ** 2 <= 9] = 40
    grid = Grid(shape, 64.0)
    return CachedVolume(
        f"v{seed}",
        np.clip(vol, 0, 255).astype(np.uint8),
        grid,
        grid,
        np.asarray(motors, float).reshape(-1, 3),
        Normalizer(),
    )


def test_training_crops_hold_jittered_motors_then_negatives():
    cfg = _small_rescore(tiny_config(), pos_copies=3, jitter_vox=0.5)
    vols = [_volume(0, [[10, 20, 20]]), _volume(1, [])]
    negs = [np.array([[5.0, 5.0, 5.0], [15.0, 30.0, 30.0]]), np.array([[10.0, 10.0, 10.0]])]
    x, y = training_crops(vols, negs, cfg, seed=0)
    assert x.shape == (6, *CROP) and y.tolist() == [1, 1, 1, 0, 0, 0]
    # normalised ((x / 255 - 0.46) / 0.21): the ball (40) at a positive's centre reads -1.44, the noise (150) 0.61
    c = tuple(n // 2 for n in CROP)
    assert x[:3][(slice(None), *c)].max() < -1.2 and 0.4 < float(x[5].mean()) < 0.8
    with pytest.raises(ValueError, match="2 volumes but 1"):
        training_crops(vols, negs[:1], cfg)


def _far_points(rng, motor, n):
    """``n`` points inside the volume at least 9 voxels from ``motor`` (their crops miss most of the ball)."""
    pts = rng.uniform([4, 8, 8], [16, 32, 32], (20 * n, 3))
    return pts[np.linalg.norm(pts - motor, axis=1) >= 9][:n]


def test_rescorer_learns_dark_balls_from_noise():
    cfg = _small_rescore(tiny_config(), steps=60, batch_size=16, lr=5e-3, pos_copies=4)
    rng = np.random.default_rng(5)
    vols = [_volume(s, [[10, 20, 20]]) for s in range(4)]
    negs = [_far_points(rng, [10, 20, 20], 6) for _ in vols]
    x, y = training_crops(vols, negs, cfg)
    torch.manual_seed(0)
    model, stats = train_rescorer(x, y, cfg)
    assert stats["n_pos"] == 16 and stats["n_neg"] == 24 and stats["steps"] == 60 and stats["loss"] < 0.4
    held_out = [_volume(10 + s, [[9, 18, 22]]) for s in range(3)]
    hx, hy = training_crops(held_out, [_far_points(rng, [9, 18, 22], 4) for _ in held_out], cfg, 1)
    with torch.no_grad():
        p = torch.sigmoid(model(torch.from_numpy(hx)[:, None])).numpy()
    assert p[hy == 1].min() > p[hy == 0].max()
    with pytest.raises(ValueError, match="motors and negatives"):
        train_rescorer(x[y == 0], y[y == 0], cfg)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("rescore_data"))


def test_engine_attaches_the_rescorer_to_best_once(data_dir: Path, tmp_path: Path):
    cfg = _small_rescore(tiny_config(steps=4, val_every=4), enabled=True, steps=10, batch_size=8, topk=3)
    out = tmp_path / "run"
    result = train(cfg, data_dir, out, val_ids=VAL_IDS)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in rows if r["event"] == "rescore"]
    # training tomograms with a motor: tomo_001..004 (tomo_000 is held out), pos_copies each
    assert len(events) == 1 and events[0]["n_pos"] == 4 * cfg.rescore.pos_copies and events[0]["n_neg"] > 0
    best = load_checkpoint(out / "best.pt")
    assert best.rescorer is not None
    assert best.extra["rescore"]["n_pos"] == events[0]["n_pos"] and "detector_f2" in best.extra
    assert best.extra["f2"] == events[0]["f2"] == result["best_f2"] and result["rescore"]["steps"] == 10
    assert load_checkpoint(out / "last.pt").rescorer is None  # last.pt keeps the detector alone
    # a rerun of the finished run does not train the second stage again
    again = train(cfg, data_dir, out, val_ids=VAL_IDS)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["event"] == "rescore" for r in rows) == 1 and again["rescore"]["n_pos"] == events[0]["n_pos"]
    assert (again["best_f2"], again["best_threshold"]) == (result["best_f2"], result["best_threshold"])
    assert events[0]["threshold"] == best.extra["threshold"] == result["best_threshold"]
