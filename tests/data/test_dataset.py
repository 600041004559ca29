"""Tests for byu_motor.data.dataset: sampling, targets on the motor, padding, determinism, batch mixing."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from byu_motor.config import DataConfig, TrainConfig
from byu_motor.data.cache import CachedVolume
from byu_motor.data.dataset import PatchDataset, collate_patches, mix_batch, read_block
from byu_motor.data.grid import Grid
from byu_motor.data.normalize import Normalizer

OFF = {k: 0.0 for k in ("flip", "rot90", "swap", "zoom", "rotate", "invert", "gamma", "contrast",
                       "brightness", "noise", "blur")}  # fmt: skip


def make_volume(shape, motors, tomo_id="tomo_a", spacing=20.0, background=60, sigma=1.5) -> CachedVolume:
    """A flat volume with one bright Gaussian ball per motor."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    vol = np.full(shape, float(background), dtype=np.float32)
    for m in motors:
        d2 = sum((g - c) ** 2 for g, c in zip(grids, m))
        vol = np.maximum(vol, background + (250 - background) * np.exp(-d2 / (2 * sigma**2)))
    grid = Grid(shape, spacing)
    return CachedVolume(
        tomo_id=tomo_id,
        volume=vol.astype(np.uint8),
        src_grid=grid,
        grid=grid,
        motors=np.asarray(motors, dtype=np.float64).reshape(-1, 3),
        normalizer=Normalizer("fixed", 0.5, 0.25),
        mean_grey=float(background),
    )


def cfgs(patch=(17, 33, 31), augment=None, pos_ratio=1.0, sigma_a=40.0):
    data = DataConfig(patch_size=patch)
    train = TrainConfig(
        pos_ratio=pos_ratio, sigma_a=sigma_a, augment=dict(OFF) if augment is None else augment
    )
    return data, train


def blob_centroid(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    level = img.min() + 0.5 * (img.max() - img.min())
    w = np.where(img > level, img - level, 0.0)
    return (np.indices(img.shape).reshape(3, -1) * w.reshape(-1)).sum(axis=1) / w.sum()


def test_item_shapes_and_determinism():
    vol = make_volume((40, 60, 64), [[20, 30, 30]])
    data, train = cfgs()
    ds = PatchDataset([vol], data, train, stride=4, length=10, seed=3)
    item = ds[2]
    assert item["image"].shape == (1, 17, 33, 31) and item["image"].dtype == torch.float32
    assert item["target"].shape == (1, math.ceil(17 / 4), math.ceil(33 / 4), math.ceil(31 / 4))
    assert item["motors"].shape == (1, 3) and item["tomo_id"] == "tomo_a"
    again = ds[2]
    torch.testing.assert_close(item["image"], again["image"])
    assert not torch.equal(ds[3]["image"], item["image"])  # another index, another crop
    with pytest.raises(IndexError):
        ds[10]


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_positive_patch_holds_motor_in_central_region_and_target_peaks_there(stride):
    vol = make_volume((40, 70, 72), [[18.0, 33.0, 40.0]])
    data, train = cfgs()
    ds = PatchDataset([vol], data, train, stride=stride, length=20, seed=0, augment=False)
    patch = np.asarray(data.patch_size)
    for i in range(8):
        item = ds[i]
        assert int(item["n_motors"]) == 1 and bool(item["positive"])
        m = item["motors"][0].numpy()
        assert np.all(m >= 0.1 * patch - 1.0) and np.all(m <= 0.9 * patch)  # central 80 % (+ rounding)
        assert np.abs(blob_centroid(item["image"][0].numpy()) - m).max() < 0.6
        t = item["target"][0].numpy()
        assert np.array_equal(np.unravel_index(np.argmax(t), t.shape), np.floor((m + 0.5) / stride))


def test_augmented_positive_keeps_motor_on_blob_and_target():
    vol = make_volume((40, 70, 72), [[18.0, 33.0, 40.0]])
    aug = dict(OFF, flip=0.5, rot90=1.0, zoom=1.0, rotate=1.0, swap=0.5)
    data, train = cfgs(patch=(21, 21, 21), augment=aug)
    ds = PatchDataset([vol], data, train, stride=2, length=12, seed=1)
    for i in range(6):
        item = ds[i]
        assert item["image"].shape == (1, 21, 21, 21)
        m = item["motors"][0].numpy()
        assert np.abs(blob_centroid(item["image"][0].numpy()) - m).max() < 1.0
        t = item["target"][0].numpy()
        assert np.array_equal(np.unravel_index(np.argmax(t), t.shape), np.floor((m + 0.5) / 2))


def test_negatives_avoid_motors_and_target_uses_all_motors():
    vol = make_volume((40, 80, 80), [[20, 20, 20]])
    data, train = cfgs(pos_ratio=0.0)
    ds = PatchDataset([vol], data, train, stride=4, length=16, seed=0)
    for i in range(16):
        item = ds[i]
        assert not bool(item["positive"])
        assert int(item["n_motors"]) == 0
    # a crop with two motors inside: the target has a peak on each (not only on the sampled one)
    two = make_volume((17, 33, 31), [[8, 8, 8], [8, 24, 22]])
    ds2 = PatchDataset([two], *cfgs(), stride=1, length=4, seed=0, augment=False)
    item = ds2[0]
    assert int(item["n_motors"]) == 2
    t = item["target"][0]
    assert t[8, 8, 8] == pytest.approx(1.0) and t[8, 24, 22] == pytest.approx(1.0)


def test_patch_larger_than_tomogram_is_padded_with_mean_grey():
    vol = make_volume((10, 20, 16), [[5, 10, 8]], background=70)
    data, train = cfgs(patch=(17, 33, 31))
    ds = PatchDataset([vol], data, train, stride=4, length=4, seed=0, augment=False)
    item = ds[0]
    image = item["image"][0]
    pad_value = (70 / 255 - 0.5) / 0.25
    # the volume (10 slices) cannot fill 17: at least 7 slices are padding, all of mean grey
    slices = [(image[z] - pad_value).abs().max() < 1e-5 for z in range(17)]
    assert sum(slices) >= 7
    m = item["motors"][0].numpy()
    assert np.abs(blob_centroid(image.numpy()) - m).max() < 0.6


def test_read_block_pads_outside():
    vol = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    out = read_block(vol, (-1, 2, 3), (3, 4, 4), fill=9)
    assert out.shape == (3, 4, 4)
    assert np.all(out[0] == 9) and np.all(out[1:, 3:, :] == 9) and np.all(out[1:, :, 3:] == 9)
    np.testing.assert_array_equal(out[1:, :3, :3], vol[0:2, 2:5, 3:6])


def test_collate_and_mixup_use_same_lambda():
    a = {"image": torch.zeros(1, 4, 8, 8), "target": torch.zeros(1, 1, 2, 2), "tomo_id": "a",
         "stride": torch.tensor([4, 4, 4])}  # fmt: skip
    b = {"image": torch.ones(1, 4, 8, 8), "target": torch.ones(1, 1, 2, 2), "tomo_id": "b",
         "stride": torch.tensor([4, 4, 4])}  # fmt: skip
    batch = collate_patches([a, b])
    assert batch["image"].shape == (2, 1, 4, 8, 8) and batch["tomo_id"] == ["a", "b"]
    train = TrainConfig(augment={"mixup": 1.0})
    changed = False
    for seed in range(6):
        out = mix_batch(batch, train, np.random.default_rng(seed))
        for k in range(2):
            img_vals, tgt_vals = out["image"][k].unique(), out["target"][k].unique()
            assert len(img_vals) == 1 and len(tgt_vals) == 1
            assert float(img_vals[0]) == pytest.approx(float(tgt_vals[0]))
            changed |= float(img_vals[0]) not in (0.0, 1.0)
    assert changed


def test_cutmix_box_matches_between_image_and_target():
    stride = (2, 4, 4)
    image = torch.stack([torch.zeros(1, 9, 18, 17), torch.ones(1, 9, 18, 17)])
    target = torch.stack([torch.zeros(1, 5, 5, 5), torch.ones(1, 5, 5, 5)])
    batch = {"image": image, "target": target, "stride": torch.tensor([stride, stride])}
    train = TrainConfig(augment={"cutmix": 1.0})
    pasted = 0
    for seed in range(6):
        out = mix_batch(batch, train, np.random.default_rng(seed))
        for k in range(2):
            t = out["target"][k, 0]
            up = (
                t.repeat_interleave(stride[0], 0)
                .repeat_interleave(stride[1], 1)
                .repeat_interleave(stride[2], 2)
            )
            torch.testing.assert_close(out["image"][k, 0], up[:9, :18, :17])
            pasted += int((t != target[k, 0]).any())
    assert pasted > 0


def test_cached_volume_pickles_without_the_voxels(tmp_path):
    vol = make_volume((10, 12, 14), [[5, 6, 7]])
    path = tmp_path / "v.npy"
    np.save(path, vol.volume)
    vol.volume = np.load(path, mmap_mode="r")
    vol.path = path
    data = pickle.dumps(vol)
    assert len(data) < vol.volume.nbytes
    back = pickle.loads(data)
    np.testing.assert_array_equal(back.volume, vol.volume)


def test_salient_negatives_are_centred_on_blobs_away_from_motors():
    # a dark ball far from the motor: with salient_ratio 1 every negative crop holds it in its central 80 %
    vol = make_volume((40, 96, 96), [[20, 20, 20]], background=120)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in (40, 96, 96)], indexing="ij")
    ball = sum((g - c) ** 2 for g, c in zip(grids, (20, 70, 70))) <= 9
    vol.volume[ball] = 20
    data, train = cfgs(pos_ratio=0.0)
    train.salient_ratio = 1.0
    ds = PatchDataset([vol], data, train, stride=4, length=12, seed=0, augment=False)
    assert len(ds.salient[0]) >= 1
    assert np.linalg.norm(ds.salient[0][0] - (20, 70, 70)) <= 5.5  # within a 6-voxel block (20 A voxels)
    for i in range(12):
        image = ds[i]["image"][0].numpy()
        dark = np.argwhere(image < image.mean() - 1.0)  # the ball's voxels
        assert len(dark) >= 20
        centre = dark.mean(axis=0)
        lo, hi = 0.1 * np.array(data.patch_size) - 2.5, 0.9 * np.array(data.patch_size) + 1.5
        assert np.all(centre >= lo) and np.all(centre <= hi), (i, centre)
    train.salient_ratio = 0.0  # off: no points are computed
    assert PatchDataset([vol], data, train, stride=4, length=1, seed=0).salient == []


def test_negative_crops_reach_the_faces():
    # a uniform centre clamped inside: a crop touches the z=0 face in about e / 2n of the draws
    # (16 / 100 here); a uniform corner would touch it in 1 / (n - e + 1) = 1 / 69 of them
    shape, patch = (100, 40, 40), (32, 40, 40)
    vol = make_volume(shape, [])
    vol.volume[:] = np.arange(shape[0], dtype=np.uint8)[:, None, None]  # grey = z index
    data, train = cfgs(patch=patch, pos_ratio=0.0)
    ds = PatchDataset([vol], data, train, stride=4, length=400, seed=1, augment=False)
    first = np.array([ds[i]["image"][0, 0, 0, 0].item() for i in range(400)])
    z0 = vol.normalizer(torch.zeros(1)).item()
    touching = np.isclose(first, z0, atol=1e-4).mean()
    assert 0.09 < touching < 0.25
