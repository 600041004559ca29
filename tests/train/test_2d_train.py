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
from byu_motor.data.slices2d import SEED_DUP_PER_EPOCH, SliceDataset, gaussian_target_2d, truncated_normal
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


def test_the_z_jitter_is_a_truncated_normal_not_a_clipped_one():
    rng = np.random.default_rng(0)
    draws = np.array([truncated_normal(rng, 2.0) for _ in range(20000)])
    assert np.abs(draws).max() <= 2.0
    assert np.mean(np.abs(draws) > 1.98) < 0.01  # clipping piled 32 % onto the bounds
    # the sd of N(0, 1) cut at +-1: sqrt(1 - 2 phi(1) / (2 Phi(1) - 1)) = 0.5396
    assert draws.std() == pytest.approx(2.0 * 0.5396, rel=0.02)
    assert truncated_normal(rng, 0.0) == 0.0


def test_motors_are_drawn_within_the_rounded_jitter_plus_one_slice():
    # jitter sd 307.2 A = 2.4 slices: the seed draws motors within round(2.4) + 1 = 3 slices, not 3.4
    motors = np.array([(20.0, 30.0, 33.0), (23.3, 30.0, 33.0)])
    cfg = TrainConfig(sigma_a=307.2, bg_ratio=0.0, bg_min_dist_a=1000.0, z_jitter_sigma=1.0)
    ds = SliceDataset([bright_blob_volume(motors)], Data, cfg, 8, 80, seed=7, augment=False)
    seen = set()
    for i in range(80):
        item = ds[i]
        dz = item["motors"][: int(item["n_motors"]), 0].numpy()
        which = np.where(np.isclose(dz % 1.0, 0.3, atol=1e-3), 1, 0)  # the 0.3 slice tells the motors apart
        centre = motors[which[0], 0] - dz[0]
        drawn = sorted(which.tolist())
        assert drawn == [k for k in (0, 1) if abs(motors[k, 0] - centre) <= 3.0 + 1e-9]
        seen.add(round(float(abs(motors[1, 0] - centre)), 1))
    assert 3.3 in seen  # the case the rounding decides came up (3.3 slices away: not drawn)


def test_seed_epochs_hold_every_positive_and_negative_slot_equally_often():
    motors = np.array([(10.2, 20.0, 20.0), (10.4, 40.0, 40.0), (30.0, 30.0, 30.0)])
    vols = [bright_blob_volume(motors), bright_blob_volume(np.zeros((0, 3)))]
    seed_cfg = TrainConfig(sigma_a=256.0, bg_ratio=0.5, bg_min_dist_a=1000.0, sampler="seed")
    ds = SliceDataset(vols, Data, seed_cfg, 8, 400, seed=1, augment=False)
    # distinct motor z as the seed rounds them (10.2 and 10.4 are one slice), one negative slot (round(2 x 0.5))
    assert ds.positives == [(0, 10.0), (0, 30.0)]
    assert ds.n_slots == 3 * SEED_DUP_PER_EPOCH
    for e in (0, 1):
        assert np.bincount(ds.epoch_slots(e)).tolist() == [SEED_DUP_PER_EPOCH] * 3
    assert not np.array_equal(ds.epoch_slots(0), ds.epoch_slots(1))  # each epoch shuffled anew
    positive = [bool(ds[i]["positive"]) for i in range(ds.n_slots)]
    assert sum(positive) == 2 * SEED_DUP_PER_EPOCH  # exactly, not about
    assert positive == [bool(k < 2) for k in ds.epoch_slots(0)]
    iid = SliceDataset(vols, Data, settings(bg_ratio=0.5), 8, 400, seed=1, augment=False)
    assert len(iid.positives) == 3  # the default keeps z to 0.1 slice and draws items independently


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


def native_volume(grey: np.ndarray, motors: np.ndarray, spacing: float) -> CachedVolume:
    """``grey`` as a tomogram at its own isotropic ``spacing`` (A), motors in its voxels."""
    grid = Grid(grey.shape, (spacing,) * 3)
    return CachedVolume(
        "n", grey, grid, grid, motors.reshape(-1, 3), Normalizer(mean=0.0, std=1.0), float(grey.mean())
    )


def test_original_slices_are_32_a_apart_and_resized_to_the_member_pixels():
    # slices at 32 A whose grey is 40 + their index: the member's (128, 64, 64) grid takes slices 4 apart
    grey = np.broadcast_to((40 + np.arange(160)).astype(np.uint8)[:, None, None], (160, 128, 128)).copy()
    motor = np.array([[81.5, 60.5, 67.7]])
    vol = native_volume(grey, motor, 32.0)
    ds = SliceDataset([vol], Data, settings(0.0), 8, 20, seed=2, augment=False, target_spacing_a=SPACING)
    resized, to_px = ds.to_member_pixels(grey[:3], vol)
    assert ds.slice_step(vol) == 4 and resized.shape == (3, 64, 64)
    # pixel centres aligned: y -> (y + 0.5) / 2 - 0.5
    np.testing.assert_allclose(to_px, [[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]])
    for i in range(20):
        item = ds[i]
        image = item["image"].numpy() * 255.0
        centre = image[1, 8:24, 8:24]  # inside the volume: one grey per slice
        assert np.ptp(centre) < 1e-3
        assert image[0, 8:24, 8:24].mean() == pytest.approx(centre.mean() - 4.0, abs=1e-3)
        assert image[2, 8:24, 8:24].mean() == pytest.approx(centre.mean() + 4.0, abs=1e-3)
        dz = item["motors"][0, 0].item()  # in original slices
        assert abs(dz) <= 256.0 / 32.0 + 0.5  # one sigma of jitter, then the nearest slice
        assert centre.mean() == pytest.approx(40.0 + motor[0, 0] - dz, abs=1e-3)  # dz = motor z - slice


def test_augmented_native_slices_keep_the_motor_where_the_target_says():
    # a bright blob at the motor of a 32 A volume, augmented: the image shows it where the target and the
    # motor's crop pixels say
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in (160, 128, 128)], indexing="ij")
    motor = np.array([[81.5, 60.5, 67.7]])  # (20, 30, 33.6) on the coarse grid (centres aligned)
    blob = (np.abs(zz - motor[0, 0]) <= 4) & ((yy - motor[0, 1]) ** 2 + (xx - motor[0, 2]) ** 2 <= 36)
    vol = native_volume(np.where(blob, 240, 60).astype(np.uint8), motor, 32.0)
    ds = SliceDataset([vol], Data, settings(0.0), 8, 40, seed=3, augment=True, target_spacing_a=SPACING)
    checked = 0
    for i in range(40):
        item = ds[i]
        if int(item["n_motors"]) != 1:
            continue
        dz, y, x = item["motors"][0].tolist()
        target = item["target"][0].numpy()
        cy, cx = (np.asarray(np.unravel_index(target.argmax(), target.shape)) * 8 + 3.5).tolist()
        assert abs(cy - y) <= 4.0 and abs(cx - x) <= 4.0
        # at most the peak height of its z distance (the augmented sigma is checked without augmentation below)
        assert 0.0 < target.max() <= math.exp(-0.5 * (dz * 32.0 / 256.0) ** 2) + 1e-6
        if abs(dz) < 3:  # the centre slice cuts the blob: bright where the motor is
            yy_, xx_ = int(round(y)), int(round(x))
            assert item["image"][1, max(yy_ - 1, 0) : yy_ + 2, max(xx_ - 1, 0) : xx_ + 2].max() > 0.6, i
            checked += 1
    assert checked >= 5


def test_a_native_volume_without_augmentation_has_the_exact_2d_sigma():
    motor = np.array([[81.5, 60.5, 67.7]])
    vol = native_volume(np.full((160, 128, 128), 60, dtype=np.uint8), motor, 32.0)
    ds = SliceDataset([vol], Data, settings(0.0), 8, 20, seed=5, augment=False, target_spacing_a=SPACING)
    for i in range(20):
        item = ds[i]
        dz, y, x = item["motors"][0].tolist()
        target = item["target"][0].numpy()
        cy, cx = (np.asarray(np.unravel_index(target.argmax(), target.shape)) * 8 + 3.5).tolist()
        # sigma 256 A = 4 member pixels (8 of the volume's pixels before the 0.5 resize)
        want = math.exp(-0.5 * (dz * 32.0 / 256.0) ** 2 - 0.5 * ((cy - y) ** 2 + (cx - x) ** 2) / 16.0)
        assert target.max() == pytest.approx(want, rel=1e-4)


def test_outside_the_slices_is_grey_128_untouched_by_the_voxel_augmentations():
    # the seed's order: noise, quality, texture and colour act on the slices, then the geometry fills with 128;
    # slices of 12 x 12 pixels in a 32 x 32 crop leave most of every crop outside them
    vol = bright_blob_volume(np.array([[20.0, 6.0, 6.0]]))
    vol.volume = np.ascontiguousarray(vol.volume[:, :12, :12])
    ds = SliceDataset([vol], Data, settings(bg_ratio=0.5), 8, 40, seed=4, augment=True)
    for i in range(40):
        image = ds[i]["image"].numpy() * 255.0
        assert float(np.mean(np.abs(image - 128.0) < 1e-3)) > 0.5, i


def test_crops_stay_inside_slices_larger_than_the_crop_and_small_ones_sit_top_left():
    # grey 60 with a 240 blob: any 128 is fill. 64 x 64 slices, 32 x 32 crops: never any fill, for motors and
    # for background; 12 x 12 slices: at the crop's top left, the rest fill (the seed's pad)
    big = SliceDataset(
        [bright_blob_volume(np.array([MOTOR]))], Data, settings(1.0), 8, 60, seed=6, augment=False
    )
    kinds = set()
    for i in range(60):
        item = big[i]
        kinds.add(bool(item["positive"]))
        assert not np.any(np.abs(item["image"].numpy() * 255.0 - 128.0) < 1.0), i
    assert kinds == {True, False}
    vol = bright_blob_volume(np.array([[20.0, 6.0, 6.0]]))
    vol.volume = np.ascontiguousarray(vol.volume[:, :12, :12])
    small = SliceDataset([vol], Data, settings(0.0), 8, 10, seed=6, augment=False)
    for i in range(10):
        image = small[i]["image"].numpy() * 255.0
        assert not np.any(np.abs(image[:, :12, :12] - 128.0) < 1.0)
        assert np.allclose(image[:, 13:, :], 128.0) and np.allclose(image[:, :, 13:], 128.0)


def test_seed_crop_keeps_the_point_with_its_margin_inside_the_fitted_image():
    from byu_motor.data.augment_2d import apply_homography, fitted_bounds, geometry_2d, seed_crop

    rng = np.random.default_rng(0)
    crop = np.array([128, 96])
    fits = kept = 0
    for _ in range(300):
        g = geometry_2d(rng, (300, 260))
        point = rng.uniform([40, 40], [260, 220])
        final = seed_crop(g, (300, 260), crop, rng, point, 20.0)
        lo, hi = fitted_bounds(final, (300, 260))  # in crop pixels, whose own edges are -0.5 and crop - 0.5
        if np.all(hi - lo >= crop):
            fits += 1
            assert np.all(lo <= -0.5 + 1e-6) and np.all(hi >= crop - 1.5 - 1e-6)  # the crop inside the image
            at = apply_homography(final, point)[0]
            kept += bool(np.all(at - 20.0 >= -1.5) and np.all(at + 20.0 <= crop + 0.5))
    # the point and its margin are in the crop unless it lies too near the image's edge (the seed's fallback)
    assert fits > 150 and kept >= 0.9 * fits


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


def test_the_keypoint_scale_sets_sigma_and_only_motors_inside_the_crop_are_drawn(monkeypatch):
    """The seed scales each motor's sigma by its geometry's keypoint scale (Albumentations' ``max(sx, sy)``,
    not the area change) and drops motors outside the crop before drawing (no tails from outside)."""
    import byu_motor.data.slices2d as slices2d

    seen_sizes = []
    real_pixels = slices2d.pixels_2d

    def pixels(x, rng):  # the voxel augmentations act on the slices already at the member's pixels
        seen_sizes.append(tuple(x.shape[1:]))
        return real_pixels(x, rng)

    monkeypatch.setattr(slices2d, "pixels_2d", pixels)
    # an anisotropic stretch (area change sqrt(1.2 * 0.8) = 0.98) whose keypoint scale is 1.2
    monkeypatch.setattr(slices2d, "draw_geometry_2d", lambda rng, size, aug: (np.diag([1.2, 0.8, 1.0]), 1.2))
    grey = np.full((160, 128, 128), 60, dtype=np.uint8)
    motors = np.array([[81.5, 60.5, 40.0], [81.5, 60.5, 82.0]])  # 42 px apart in x: a 32 px crop holds one
    vol = native_volume(grey, motors, 32.0)
    ds = SliceDataset([vol], Data, settings(0.0), 8, 30, seed=4, augment=True, target_spacing_a=SPACING)
    sigma_px = 256.0 / 64.0 * 1.2
    one = 0
    for i in range(30):
        item = ds[i]
        n = int(item["n_motors"])
        kept = item["motors"][:n].numpy().astype(np.float64)
        peaks = np.exp(-0.5 * (kept[:, 0] * 32.0 / 256.0) ** 2)
        want = gaussian_target_2d(Data.patch_size[1:], 8, kept[:, 1:], sigma_px, peaks)
        np.testing.assert_allclose(item["target"][0].numpy(), want, atol=1e-6)
        one += n == 1
    assert one > 0  # crops that left a motor out: it drew nothing
    assert set(seen_sizes) == {(64, 64)}  # 128 px at 32 A, resized to the member's 64 A pixels first
