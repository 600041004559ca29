"""The seed's augmentation set: every geometric transform moves a rendered ball where its keypoint says; dropout spares motors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from byu_motor.data.seed_augment import (
    SeedPixelAugment,
    dihedral_views,
    map_motors,
    motor_covariance,
    resample_window,
    sample_seed_matrix,
)
from tests.train.test_engine import one_thread  # noqa: F401 - autouse: one intra-op thread

SHAPE, WINDOW = (40, 56, 56), (24, 32, 32)
BALL = np.array([21.3, 24.6, 30.2])  # off the voxel grid
CENTRE = np.array([19.5, 27.5, 27.5])


@pytest.fixture(scope="module")
def ball_volume() -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in SHAPE], indexing="ij")
    d2 = sum((g - c) ** 2 for g, c in zip(grids, BALL))
    return np.rint(250.0 * np.exp(-d2 / (2 * 1.5**2))).astype(np.uint8)


def _peak(patch: torch.Tensor) -> np.ndarray:
    """Intensity centroid of the bright ball (voxels above a quarter of the maximum)."""
    a = patch.numpy().astype(np.float64)
    w = np.where(a > 0.25 * a.max(), a, 0.0)
    idx = np.indices(a.shape).reshape(3, -1)
    return (idx * w.ravel()).sum(axis=1) / w.sum()


def _kind(m: np.ndarray) -> str:
    if np.allclose(m, np.diag(np.diag(m))):
        return "identity" if np.allclose(m, np.eye(3)) else "zoom"
    return "tilt/shear" if np.any(np.abs(m[0, 1:]) > 1e-9) or np.any(np.abs(m[1:, 0]) > 1e-9) else "in-plane"


def _check(volume: np.ndarray, m: np.ndarray) -> None:
    patch, origin = resample_window(volume, CENTRE, m, WINDOW)
    want = map_motors(BALL[None], origin, m, WINDOW)[0]
    assert patch.shape == WINDOW
    assert np.linalg.norm(_peak(patch) - want) < 1.0, (m, _peak(patch), want)


def test_every_dihedral_view_moves_the_ball_to_its_keypoint(ball_volume: np.ndarray) -> None:
    for view in dihedral_views():
        _check(ball_volume, view)


def test_drawn_zoom_and_affines_move_the_ball_to_its_keypoint(ball_volume: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    seen = set()
    views = dihedral_views()
    for i in range(32):
        m = sample_seed_matrix(rng)
        seen.add(_kind(m))
        _check(ball_volume, m @ views[i % 16])
    assert {"zoom", "in-plane", "tilt/shear"} <= seen  # each kind of transform was exercised


def test_sigma_rules() -> None:
    m = np.diag([0.5, 1.0, 2.0])  # output steps: magnify z 2x, shrink x 2x
    cov = motor_covariance(m, [3.0, 3.0, 3.0], "covariance")
    assert np.allclose(cov, np.diag([36.0, 9.0, 2.25]))
    assert np.allclose(motor_covariance(m, [3.0, 3.0, 3.0], "same"), np.eye(3) * 2.25)
    with pytest.raises(ValueError, match="sigma_rule"):
        motor_covariance(m, [3.0] * 3, "widest")


def test_coarse_dropout_never_touches_a_motor() -> None:
    aug = SeedPixelAugment((64.0, 64.0, 64.0))  # holes of 7-31 voxels
    rng = np.random.default_rng(1)
    patch = torch.full((24, 40, 40), 100.0)
    changed = 0
    for i in range(200):
        motors = rng.uniform(0, [23, 39, 39], size=(3, 3))
        out = aug.dropout(patch[None], motors, 2.0, np.random.default_rng(i))[0]
        for m in motors:  # every voxel within 2 voxels of a motor on all axes is untouched (the seed's rule)
            lo, hi = np.ceil(m - 2).astype(int), np.floor(m + 2).astype(int) + 1
            assert torch.all(out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] == 100.0)
        changed += int(not torch.equal(out, patch))
    assert changed > 20  # holes were cut (away from the motors) in many draws


def test_pixel_augment_is_reproducible_and_in_range() -> None:
    aug = SeedPixelAugment((16.0, 16.0, 16.0))
    patch = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (16, 24, 24)).astype(np.float32))
    outs = [aug(patch, np.zeros((0, 3)), np.random.default_rng(s)) for s in (7, 7, *range(20))]
    assert torch.equal(outs[0], outs[1])
    assert all(o.shape == patch.shape and o.min() >= 0 and o.max() <= 255 for o in outs)
    assert sum(not torch.equal(o, patch) for o in outs) >= 5  # about 60 % of draws change something
    for pair in aug.lowres.transforms:  # every (down, up) interpolation pair runs and keeps the shape
        assert pair(patch[None]).shape == (1, *patch.shape)


def test_z_apart_resampling_equals_the_3d_path() -> None:
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 255, (30, 40, 44)).astype(np.uint8)
    views = dihedral_views()
    tried = 0
    for i in range(40):
        m = sample_seed_matrix(rng) @ views[i % 16]
        if np.allclose(m, np.rint(m)) or _kind(m) == "tilt/shear":
            continue  # permutations are read exactly, tilts always take the 3-D path
        centre = rng.uniform(-5, 45, 3)  # windows reaching outside the volume too
        fast, _ = resample_window(vol, centre, m, (12, 20, 24))
        tilted = m.copy()
        tilted[0, 1] = 1e-11  # numerically the same matrix, but not z-apart: the 3-D grid_sample
        slow, _ = resample_window(vol, centre, tilted, (12, 20, 24))
        torch.testing.assert_close(fast, slow, atol=1e-2, rtol=0)
        tried += 1
    assert tried >= 10


def test_a_split_footprint_gives_the_same_window() -> None:
    """Boxes of a window sampled apart (small memory budget) equal the window sampled at once, at the edge too."""
    rng = np.random.default_rng(5)
    vol = rng.integers(0, 255, (30, 40, 44)).astype(np.uint8)
    views = dihedral_views()
    for i in range(12):
        m = sample_seed_matrix(rng) @ views[i % 16] @ np.diag(rng.uniform(0.7, 1.6, 3))  # spacing change too
        centre = rng.uniform(-5, 45, 3)
        whole, _ = resample_window(vol, centre, m, (13, 20, 23))
        split, _ = resample_window(vol, centre, m, (13, 20, 23), max_block_voxels=300)
        assert split.shape == whole.shape == (13, 20, 23)
        torch.testing.assert_close(split, whole, atol=1e-2, rtol=0)
