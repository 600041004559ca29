"""The seed's window sampler: tiling, epoch composition (windows x 16 views + background), determinism, targets."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from byu_motor.data.cache import CachedVolume
from byu_motor.data.grid import Grid
from byu_motor.data.normalize import Normalizer
from byu_motor.data.seed_augment import dihedral_views
from byu_motor.data.seed_sampler import SeedWindowDataset, tile_starts
from tests.train.test_engine import one_thread  # noqa: F401 - autouse: one intra-op thread

PATCH = (8, 16, 16)


def _volume(tomo_id: str, shape: tuple[int, int, int], motors: list[list[float]]) -> CachedVolume:
    rng = np.random.default_rng(len(tomo_id))
    vol = rng.integers(60, 200, size=shape).astype(np.uint8)
    grid = Grid(shape, 16.0)
    return CachedVolume(
        tomo_id,
        vol,
        grid,
        grid,
        np.asarray(motors, np.float64).reshape(-1, 3),
        Normalizer("fixed", 0.5, 0.25),
    )


def _cfg(**kw: object) -> SimpleNamespace:
    base = dict(
        bg_ratio=0.5, bg_from_pos=0.25, augment_set="seed", sigma_rule="same", sigma_a=200.0, augment={}
    )
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.fixture(scope="module")
def volumes() -> list[CachedVolume]:
    return [
        # 2 x 2 x 3 tiles (x: starts 0, 16, 24 flush, the last overlapping), motors in 2 tiles (two share one)
        _volume("pos_a", (16, 32, 40), [[3, 5, 5], [4, 6, 7], [12, 20, 35]]),
        # 1 x 2 x 2 tiles, one motor
        _volume("pos_b", (8, 32, 32), [[2, 18, 3]]),
        # 2 x 2 x 2 tiles, none
        _volume("neg_a", (16, 32, 32), []),
    ]


def test_tile_starts_cover_without_overlap_and_end_flush() -> None:
    assert tile_starts(40, 16) == [0, 16, 24]
    assert tile_starts(32, 16) == [0, 16]
    assert tile_starts(10, 16) == [0]


def test_epoch_is_every_foreground_window_in_16_views_plus_background(volumes: list[CachedVolume]) -> None:
    ds = SeedWindowDataset(volumes, PATCH, _cfg(), stride=4, length=1000, seed=3)
    assert len(ds.windows) == 12 + 4 + 8 and len(ds.fg) == 3
    epoch = ds.epoch(0)
    assert len(epoch) == ds.epoch_len == 3 * 16 + 24  # bg_ratio 0.5 of 48
    fg = [(int(w), int(v)) for w, v in epoch if ds.windows[int(w)].foreground]
    assert Counter(fg) == Counter((w, v) for w in ds.fg for v in range(16))  # each window-view exactly once
    bg = [int(w) for w, _ in epoch if not ds.windows[int(w)].foreground]
    assert len(bg) == 24
    nxt = ds.epoch(1)  # reshuffled, same foreground composition
    assert not np.array_equal(nxt, epoch) and len(nxt) == len(epoch)
    assert Counter(map(tuple, nxt[[ds.windows[int(w)].foreground for w, _ in nxt]].tolist())) == Counter(fg)
    assert ds[ds.epoch_len + 5]["tomo_id"] == volumes[ds.windows[int(nxt[5][0])].volume].tomo_id


def test_background_draws_follow_bg_from_pos(volumes: list[CachedVolume]) -> None:
    ds = SeedWindowDataset(volumes, PATCH, _cfg(bg_ratio=40.0, bg_from_pos=0.25), stride=4, length=10, seed=0)
    bg = [int(w) for w, _ in ds.epoch(0) if not ds.windows[int(w)].foreground]
    from_pos = np.mean([ds.windows[w].volume != 2 for w in bg])
    assert len(bg) == 40 * 48
    with pytest.raises(ValueError, match="bg_ratio"):
        SeedWindowDataset(volumes, PATCH, _cfg(bg_ratio=-0.1), stride=4, length=10)
    assert abs(from_pos - 0.25 / 1.25) < 0.03  # positive tomograms' mass is 0.25 x the negative one's


@pytest.mark.parametrize("augment, rule", [(False, "same"), (True, "same"), (True, "covariance")])
def test_items_are_deterministic_and_motors_land_on_target_peaks(
    volumes: list[CachedVolume], augment: bool, rule: str
) -> None:
    cfg = _cfg(sigma_rule=rule)
    ds = SeedWindowDataset(volumes, PATCH, cfg, stride=4, length=200, seed=5, augment=augment)
    again = SeedWindowDataset(volumes, PATCH, cfg, stride=4, length=200, seed=5, augment=augment)
    for i in range(0, 200, 13):
        a, b = ds[i], again[i]
        assert np.array_equal(a["image"].numpy(), b["image"].numpy())
        assert a["image"].shape == (1, *PATCH) and a["target"].shape == (1, 2, 4, 4)
        for m in a["motors"][: int(a["n_motors"])].numpy():
            cell = tuple(int(v) for v in np.floor((m + 0.5) / 4))
            if rule == "same":
                assert a["target"][0][cell] == 1.0  # the motor's cell is its blob's peak, exactly 1
            else:  # a sheared blob peaks at the Mahalanobis-nearest cell, next to the motor's cell
                near = tuple(slice(max(c - 1, 0), c + 2) for c in cell)
                assert a["target"][0][near].max() == 1.0


def test_views_move_the_window_contents_exactly(volumes: list[CachedVolume]) -> None:
    ds = SeedWindowDataset(volumes[:1], PATCH, _cfg(), stride=4, length=10, seed=0, augment=False)
    w = ds.windows[0]
    raw = volumes[0].volume[: PATCH[0], : PATCH[1], : PATCH[2]]
    views = dihedral_views()
    assert len({tuple(np.rint(v).astype(int).ravel()) for v in views}) == 16
    item = ds.sample(w, 1, np.random.default_rng(0))  # view 1: flip x only
    want = volumes[0].normalizer(torch.from_numpy(raw[:, :, ::-1].copy()))
    assert torch.equal(item["image"][0], want)


def test_patch_dataset_draws_the_seed_set_too(volumes: list[CachedVolume]) -> None:
    from byu_motor.data.dataset import PatchDataset

    data_cfg = SimpleNamespace(patch_size=PATCH)
    train = dict(pos_ratio=1.0, target="gaussian", label_smoothing=0.0)
    seed_set = PatchDataset(volumes, data_cfg, _cfg(**train), stride=4, length=20, seed=1)
    ours = PatchDataset(volumes, data_cfg, _cfg(**train, augment_set="ours"), stride=4, length=20, seed=1)
    assert seed_set.augment_set == "seed" and ours.augment_set == "ours"
    for i in range(8):
        a, b = seed_set[i], seed_set[i]
        assert torch.equal(a["image"], b["image"]) and int(a["n_motors"]) >= 1
        assert not torch.equal(a["image"], ours[i]["image"])
    with pytest.raises(ValueError, match="augment_set"):
        PatchDataset(volumes, data_cfg, _cfg(**train, augment_set="theirs"), stride=4, length=2)


def _native_and_resampled(spacing: float = 10.0) -> tuple[CachedVolume, CachedVolume]:
    """A smooth tomogram at its own ``spacing`` with a bright ball, and the same resampled to 16 A (the cache)."""
    from scipy.ndimage import gaussian_filter

    from byu_motor.data.grid import resample_volume

    rng = np.random.default_rng(11)
    src = Grid((20, 40, 48), spacing)
    motor = np.array([[8.3, 17.6, 29.2]])
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in src.shape), indexing="ij")
    ball = np.exp(
        -((zz - motor[0, 0]) ** 2 + (yy - motor[0, 1]) ** 2 + (xx - motor[0, 2]) ** 2) / (2 * 2.5**2)
    )
    noise = gaussian_filter(rng.normal(0, 1, src.shape), 2.0)
    vol = np.clip(90 + 40 * noise / noise.std() + 140 * ball, 0, 255).astype(np.uint8)
    dst = src.resampled(16.0)
    norm = Normalizer("fixed", 0.5, 0.25)
    native = CachedVolume("t", vol, src, src, motor, norm)
    cached = CachedVolume("t", resample_volume(vol, dst.shape), src, dst, src.map_to(dst, motor), norm)
    return native, cached


def test_resample_once_tiles_and_samples_as_the_resampled_cache() -> None:
    """Native volume + target spacing: the same windows, motors and targets, images within a grey level."""
    native, cached = _native_and_resampled()
    fused = SeedWindowDataset([native], PATCH, _cfg(), 4, 64, seed=2, augment=False, target_spacing_a=16.0)
    plain = SeedWindowDataset([cached], PATCH, _cfg(), 4, 64, seed=2, augment=False)
    assert fused.windows == plain.windows and len(fused.fg) >= 1
    # one grey level after the fixed normaliser (+ float rounding): both are floored to whole grey levels, so
    # values within a level of each other may land on neighbouring levels
    grey = 1.001 / 255.0 / 0.25
    for i in range(64):
        a, b = fused[i], plain[i]
        torch.testing.assert_close(a["image"], b["image"], atol=grey, rtol=0)
        torch.testing.assert_close(a["motors"], b["motors"], atol=1e-4, rtol=0)
        torch.testing.assert_close(a["target"], b["target"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("spacing", [10.0, 13.1, 19.7])
def test_resample_once_moves_the_ball_with_its_motor(spacing: float) -> None:
    """Spacing, zoom, tilt and shear in one resampling: the ball's bright centre is where the motor maps."""
    from byu_motor.data.seed_augment import sample_seed_matrix

    native, _ = _native_and_resampled(spacing)
    ds = SeedWindowDataset([native], PATCH, _cfg(), 4, 16, seed=2, augment=False, target_spacing_a=16.0)
    rng = np.random.default_rng(4)
    window = ds.windows[ds.fg[0]]
    checked = 0
    for _ in range(5000):  # the motor lies near a window edge at 13.1 A: most draws leave it too close
        if checked == 12:
            break
        m = sample_seed_matrix(rng)
        ds._augmentation = lambda size, r, m=m: m  # noqa: B023 - this draw's geometry for the item below
        item = ds.sample(window, int(rng.integers(16)), np.random.default_rng(0))
        if int(item["n_motors"]) != 1:
            continue  # zoomed or turned out of the window
        motor = item["motors"][0].numpy()
        img = item["image"][0].numpy()
        if np.any(motor < 2) or np.any(motor > np.asarray(PATCH) - 3):
            continue  # too near the edge for a centroid
        lo = np.floor(motor).astype(int) - 1
        box = img[lo[0] : lo[0] + 4, lo[1] : lo[1] + 4, lo[2] : lo[2] + 4]
        w = np.clip(box - np.percentile(box, 50), 0, None)
        centre = (
            lo
            + np.array(np.meshgrid(*(np.arange(4.0),) * 3, indexing="ij")).reshape(3, -1)
            @ w.ravel()
            / w.sum()
        )
        assert np.all(np.abs(centre - motor) < 1.0), (centre, motor)
        cell = tuple(int(v) for v in np.floor((motor + 0.5) / 4))
        assert item["target"][0][cell] == 1.0
        checked += 1
    assert checked == 12
