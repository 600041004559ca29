"""Tests for byu_motor.data.augment: every geometric transform moves the image and the motor together."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from byu_motor.data.augment import DEFAULT_AUGMENT, Augmenter, augment_settings, plan_for_matrix
from byu_motor.data.grid import Grid
from byu_motor.data.targets import heatmap_coords, make_target

OFF = {k: 0.0 for k in ("flip", "rot90", "swap", "zoom", "rotate", "invert", "gamma", "contrast",
                       "brightness", "noise", "blur")}  # fmt: skip


def blob(shape, centre, sigma=1.2, peak=250.0, background=40.0) -> np.ndarray:
    """A bright small Gaussian ball at ``centre`` (voxels) on a flat background, uint8."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    d2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    return np.clip(background + (peak - background) * np.exp(-d2 / (2 * sigma**2)), 0, 255).astype(np.uint8)


def bright_centroid(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of the voxels above half of the blob's height."""
    img = np.asarray(image, dtype=np.float64)
    level = img.min() + 0.5 * (img.max() - img.min())
    w = np.where(img > level, img - level, 0.0)
    idx = np.indices(img.shape).reshape(3, -1)
    return (idx * w.reshape(-1)).sum(axis=1) / w.sum()


def rot_yx(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


TRANSFORMS = {
    "flip_z": np.diag([-1.0, 1, 1]),
    "flip_y": np.diag([1.0, -1, 1]),
    "flip_x": np.diag([1.0, 1, -1]),
    "rot90_k1": np.rint(rot_yx(90)),
    "rot90_k2": np.rint(rot_yx(180)),
    "rot90_k3": np.rint(rot_yx(270)),
    "swap_zy": np.eye(3)[[1, 0, 2]],
    "swap_zx": np.eye(3)[[2, 1, 0]],
    "zoom_in": np.diag([1 / 1.25] * 3),
    "zoom_out_aniso": np.diag([1 / 0.8, 1 / 0.9, 1 / 0.85]),
    "rotate_30": rot_yx(30.0),
    "rotate_zoom_flip": rot_yx(-65.0) @ np.diag([0.9, 0.9, -0.9]),
    "swap_zx_zoom_rotate": np.eye(3)[[2, 1, 0]] @ rot_yx(20.0) @ np.diag([1.1, 0.9, 0.95]),
    "tilt_zy_3d": np.array([[0.94, 0.34, 0.0], [-0.34, 0.94, 0.0], [0.0, 0.0, 1.0]]),  # not separable
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
@pytest.mark.parametrize("stride", [1, 4])
def test_geometry_moves_image_and_motor_together(name, stride):
    out_shape = (21, 27, 33)  # odd and different on every axis
    plan = plan_for_matrix(TRANSFORMS[name], out_shape)
    # an off-centre odd position, chosen so that it lands inside the output for every transform
    centre_in = (np.asarray(plan.in_shape) - 1) / 2.0 + np.array([3.0, -4.0, 5.0])
    block = blob(plan.in_shape, centre_in)
    image = plan.apply(block)
    image = image.numpy() if isinstance(image, torch.Tensor) else image
    assert image.shape == out_shape
    motor_out = plan.map_points(centre_in[None])[0]
    assert np.all((motor_out > 1) & (motor_out < np.asarray(out_shape) - 2)), motor_out
    # the transformed motor sits on the transformed image's bright blob (within 1 voxel)
    assert np.abs(bright_centroid(image) - motor_out).max() < 1.0
    peak_vox = np.asarray(np.unravel_index(np.argmax(image), image.shape))
    assert np.abs(peak_vox - motor_out).max() <= 1.0
    # the target built from the transformed motor peaks on the cell holding the image's blob
    heat, cells = heatmap_coords(Grid(out_shape, 10.0), stride, motor_out[None])
    target = make_target("gaussian", heat, cells, sigma_a=20.0 * stride)
    peak_cell = np.asarray(np.unravel_index(np.argmax(target), target.shape))
    blob_cell = np.floor((bright_centroid(image) + 0.5) / stride)
    assert np.abs(peak_cell - blob_cell).max() <= 1
    assert np.array_equal(peak_cell, np.floor((motor_out + 0.5) / stride))


def test_separable_path_equals_trilinear():
    m = np.eye(3)[[1, 0, 2]] @ rot_yx(37.0) @ np.diag([0.8, 1.2, 1.1])
    plan = plan_for_matrix(m, (9, 13, 11))
    block = np.random.default_rng(0).integers(0, 256, plan.in_shape, dtype=np.uint8)
    fast = plan.apply(block)
    e, p = np.asarray(plan.in_shape, float), np.asarray(plan.out_shape, float)
    theta = np.zeros((1, 3, 4), np.float32)
    theta[0, :, :3] = (np.diag(2.0 / e) @ m @ np.diag(p / 2.0))[::-1, ::-1]
    grid = torch.nn.functional.affine_grid(torch.from_numpy(theta), [1, 1, 9, 13, 11], align_corners=False)
    ref = torch.nn.functional.grid_sample(
        torch.from_numpy(block).float()[None, None], grid, padding_mode="border", align_corners=False
    )[0, 0]
    torch.testing.assert_close(fast, ref, atol=1e-2, rtol=1e-4)


def test_permutations_are_exact_views():
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, (5, 7, 9), dtype=np.uint8)
    np.testing.assert_array_equal(
        plan_for_matrix(np.diag([1.0, -1, 1]), (5, 7, 9)).apply(block), block[:, ::-1]
    )
    r = plan_for_matrix(np.rint(rot_yx(90)), (5, 9, 7))
    assert r.in_shape == (5, 7, 9) and r.is_permutation
    out = r.apply(block)
    assert out.dtype == np.uint8 and out.shape == (5, 9, 7)
    # a voxel goes exactly where map_points says
    z, y, x = r.map_points([[2, 3, 4]])[0]
    assert out[int(z), int(y), int(x)] == block[2, 3, 4]


@pytest.mark.parametrize("key", ["flip", "rot90", "swap", "zoom", "rotate"])
def test_augmenter_call_keeps_motor_on_blob(key):
    cfg = dict(OFF, **{key: 1.0})
    shape = (25, 31, 31)
    centre = np.array([11.0, 13.0, 17.0])
    patch = blob(shape, centre, sigma=1.5)
    for seed in range(4):
        aug = Augmenter(cfg, np.random.default_rng(seed))
        out, motors = aug(patch, centre[None], out_shape=(21, 27, 27))
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (21, 27, 27)
        assert np.abs(bright_centroid(out.numpy()) - motors[0]).max() < 1.0, (key, seed)


def test_intensity_augmentations():
    patch = torch.from_numpy(blob((9, 11, 13), (4, 5, 6))).float()
    inv = Augmenter(dict(OFF, invert=1.0)).intensity(patch, np.random.default_rng(0))
    torch.testing.assert_close(inv, 255.0 - patch)
    noisy = Augmenter(dict(OFF, noise=1.0, noise_std=0.1)).intensity(patch, np.random.default_rng(0))
    assert 0.05 * 255 < float((noisy - patch)[patch == 40].std()) < 0.15 * 255
    assert noisy.min() >= 0 and noisy.max() <= 255
    blurred = Augmenter(dict(OFF, blur=1.0)).intensity(patch, np.random.default_rng(0))
    assert blurred.max() < patch.max()
    gamma = Augmenter(dict(OFF, gamma=1.0)).intensity(patch, np.random.default_rng(0))
    assert gamma.min() == pytest.approx(40.0) and gamma.max() == pytest.approx(250.0, rel=1e-3)
    full = Augmenter(DEFAULT_AUGMENT)
    a = full.intensity(patch, np.random.default_rng(5))
    b = full.intensity(patch, np.random.default_rng(5))
    torch.testing.assert_close(a, b)  # deterministic given the generator


def test_unknown_augment_key_is_named():
    with pytest.raises(ValueError, match="flipp"):
        augment_settings({"flipp": 0.5})
    assert augment_settings({"flip": 0.1})["flip"] == 0.1
