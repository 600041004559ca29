"""The seed's 2D augmentation set: keypoints follow every geometry (perspective too); voxel groups do what they say."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from byu_motor.data import augment_2d as A


def _disc_slices(centre: tuple[float, float], shape=(3, 96, 112)) -> np.ndarray:
    yy, xx = np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    disc = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * 2.0**2))
    return np.broadcast_to(40 + 200 * disc, shape).astype(np.uint8).copy()


def test_homography_from_points_maps_the_four_points() -> None:
    src = np.array([[3.0, 4.0], [2.0, 90.0], [80.0, 95.0], [85.0, 1.0]])
    dst = np.array([[0.0, 0.0], [0.0, 100.0], [90.0, 100.0], [90.0, 0.0]])
    g = A.homography_from_points(src, dst)
    np.testing.assert_allclose(A.apply_homography(g, src), dst, atol=1e-8)


def place(g: np.ndarray, anchor: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``g`` then the translation sending input point ``anchor`` to output point ``target``."""
    t = np.eye(3)
    t[:2, 2] = np.asarray(target, dtype=np.float64) - A.apply_homography(g, anchor)[0]
    return t @ g


@pytest.mark.parametrize("kind", ["affine5", "affine20", "perspective", "random"])
def test_the_disc_lands_where_its_keypoint_maps(kind: str) -> None:
    rng = np.random.default_rng(7)
    centre = np.array([41.3, 57.8])
    slices = _disc_slices(tuple(centre))
    out_shape = (64, 64)
    for _ in range(15):
        if kind == "perspective":
            g = A.perspective(rng, slices.shape[1:])
            assert np.abs(g[2, :2]).max() > 0  # really projective
        elif kind == "random":
            g = A.geometry_2d(rng, slices.shape[1:])
        else:
            g = A._affine(rng, 5.0 if kind == "affine5" else 20.0)[0]
        want = rng.uniform(20, 44, 2)
        g = place(g, centre, want)
        np.testing.assert_allclose(A.apply_homography(g, centre)[0], want, atol=1e-9)
        img = A.warp(slices, g, out_shape, fill=40.0)
        assert img.shape == (3, *out_shape) and torch.equal(img[0], img[2])  # every slice alike
        lo = np.floor(want).astype(int) - 6
        box = img[1, lo[0] : lo[0] + 13, lo[1] : lo[1] + 13].numpy() - 40.0
        w = np.clip(box, 0, None)
        grid = np.stack(np.meshgrid(np.arange(13.0), np.arange(13.0), indexing="ij"), -1)
        found = lo + (grid * w[..., None]).sum((0, 1)) / w.sum()
        assert np.all(np.abs(found - want) < 1.0), (kind, found, want)


def test_geometry_draws_follow_the_seed_weights() -> None:
    rng = np.random.default_rng(0)
    draws = [A.geometry_2d(rng, (128, 128)) for _ in range(3000)]
    projective = np.mean([np.abs(g[2, :2]).max() > 0 for g in draws])
    untouched = np.mean(
        [np.allclose(np.abs(g[:2, :2]), np.eye(2)) and not g[2, :2].any() for g in draws]
    )  # flips
    assert abs(projective - 0.8 * 0.3) < 0.03 and abs(untouched - 0.2) < 0.03
    assert np.array_equal(A.geometry_2d(rng, (128, 128), aug=False), np.eye(3))


def test_voxel_groups() -> None:
    rng = np.random.default_rng(3)
    base = torch.from_numpy(np.random.default_rng(1).integers(90, 150, (3, 48, 64)).astype(np.float32))
    levels = A.posterize(base * 1.7, 4)
    for _ in range(30):
        out = A.pixels_2d(base.clone(), rng)
        assert out.shape == base.shape and out.min() >= 0 and out.max() <= 255
    assert (
        len(torch.unique(levels)) <= 16 and torch.all(levels % 16 == 0) and (base * 1.7 - levels).max() < 16.5
    )
    jpeg = A._jpeg(base, 20)
    assert 0 < (jpeg - base).abs().mean() < 20
    eq = A.clahe(base)
    assert eq.std() > 1.5 * base.std()  # a low-contrast image gains contrast
    ramp = torch.arange(256.0).reshape(1, 16, 16)
    assert torch.all(A.clahe(ramp).flatten().diff() >= -1e-4)  # monotone on a ramp
    t = A._colour(torch.tensor([[[0.0, 255.0]]]), np.random.default_rng(9))
    assert t.shape == (1, 1, 2)
    flat = torch.full((1, 16, 16), 100.0)
    for r in range(8):  # emboss, sharpen and CLAHE keep a flat image flat (sharpen may dim it, as the seed's)
        out = A._texture(flat, np.random.default_rng(r))
        assert float(out.std()) < 1e-3 and 0 < float(out.mean()) <= 255


def test_a_degenerate_homography_warps_to_fill_not_nan() -> None:
    inv = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.1, 0.0, -1.5]])  # output row y = 15 maps to infinity
    g = np.linalg.inv(inv)
    img = A.warp(_disc_slices((20.0, 30.0), (1, 40, 48)), g, (32, 32), fill=77.0)
    assert torch.isfinite(img).all() and img.min() >= 0 and img.max() <= 255


def test_seed_crop_survives_a_corner_on_the_vanishing_line() -> None:
    g = np.array(
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0 / 9.5, 0.0, 0.5 / 9.5]]
    )  # w = 0 on the edge y = -0.5
    rng = np.random.default_rng(0)
    out = A.seed_crop(g, (20, 20), (16, 16), rng, np.array([10.0, 10.0]), 2.0)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(A.apply_homography(out, [[10.0, 10.0]])[0], [7.5, 7.5], atol=1e-9)


class _Scripted:
    """A generator whose ``random()`` answers a script (then its own), ``choice`` a fixed kind, the rest seeded."""

    def __init__(self, randoms: list[float], kind: int, seed: int) -> None:
        self.randoms, self.kind, self.rng = list(randoms), kind, np.random.default_rng(seed)

    def random(self) -> float:
        return self.randoms.pop(0) if self.randoms else float(self.rng.random())

    def choice(self, n: int, p=None) -> int:
        return self.kind

    def __getattr__(self, name: str):
        return getattr(self.rng, name)


@pytest.mark.parametrize("flips", [(0.0, 0.9), (0.9, 0.0), (0.0, 0.0)])
def test_flips_keep_the_image_frame_so_the_perspective_acts_on_the_image(flips: tuple[float, float]) -> None:
    size = (96, 112)
    edges = np.array(
        [[-0.5, -0.5], [-0.5, size[1] - 0.5], [size[0] - 0.5, -0.5], [size[0] - 0.5, size[1] - 0.5]]
    )
    alone = A.geometry_2d(_Scripted([*flips, 0.95], 2, 0), size)  # flips only (no geometry drawn)
    assert not np.allclose(alone, np.eye(3))
    lo, hi = A.fitted_bounds(alone, size)
    np.testing.assert_allclose(lo, [-0.5, -0.5], atol=1e-9)
    np.testing.assert_allclose(hi, np.asarray(size) - 0.5, atol=1e-9)
    mapped = A.apply_homography(alone, edges)  # every corner of the frame lands on a corner
    assert np.abs(mapped[:, None] - edges[None]).sum(-1).min(1).max() < 1e-9
    for seed in range(20):  # the same perspective draw with and without the flips: the same fitted image
        flipped = A.geometry_2d(_Scripted([*flips, 0.0], 2, seed), size)
        plain = A.geometry_2d(_Scripted([0.9, 0.9, 0.0], 2, seed), size)
        assert np.abs(plain[2, :2]).max() > 0  # really the perspective
        for got, want in zip(A.fitted_bounds(flipped, size), A.fitted_bounds(plain, size)):
            np.testing.assert_allclose(got, want, atol=1e-6)


def _same_slices() -> torch.Tensor:
    plane = np.random.default_rng(4).integers(30, 220, (40, 56)).astype(np.float32)
    return torch.from_numpy(np.broadcast_to(plane, (3, 40, 56)).copy())


@pytest.mark.parametrize("group", [A._noise, A._quality, A._texture, A._colour])
def test_every_voxel_group_treats_identical_slices_alike(group) -> None:
    # the seed passes the slices as separate grey images sharing one draw: one noise map, one tone curve
    x = _same_slices()
    for seed in range(40):
        out = group(x.clone(), np.random.default_rng(seed))
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2]), (group.__name__, seed)


def test_downscale_draws_one_factor_for_both_axes(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[tuple[int, int]] = []
    interpolate = torch.nn.functional.interpolate

    def spy(t: torch.Tensor, size, **kw) -> torch.Tensor:
        sizes.append(tuple(size))
        return interpolate(t, size=size, **kw)

    monkeypatch.setattr(A, "F", types.SimpleNamespace(interpolate=spy))
    x = torch.rand(3, 100, 300) * 255.0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        if A._pick(np.random.default_rng(seed), (0.6, 0.3, 0.1)) == 0:  # the down- and up-scaling
            A._quality(x, rng)
    downs = [s for s in sizes if s != (100, 300)]
    assert len(downs) > 50
    for h, w in downs:  # one factor: the rounded sizes agree to within their rounding
        assert abs(h / 100 - w / 300) <= 0.5 / 100 + 0.5 / 300 + 1e-9, (h, w)
        assert 0.5 - 0.005 <= h / 100 <= 0.9 + 0.005


def test_keypoint_scales_follow_albumentations() -> None:
    # an affine: max(scale_x, scale_y) of its drawn scales, whatever the rotation and shear
    for seed in range(20):
        g, scale = A._affine(np.random.default_rng(seed), 20.0)
        replay = np.random.default_rng(seed)
        replay.uniform(), replay.uniform(size=2)  # the angle and the shears
        assert scale == pytest.approx(replay.uniform(0.6, 1.2, 2).max())
    # a perspective: rows of the (x, y) matrix after fit_output's shift; a pure stretch is its larger factor
    assert A.perspective_keypoint_scale(np.eye(3), (50, 80)) == pytest.approx(1.0)
    assert A.perspective_keypoint_scale(np.diag([2.0, 3.0, 1.0]), (50, 80)) == pytest.approx(3.0)
    # flips only: 1
    _, scale = A.draw_geometry_2d(_Scripted([0.1, 0.1, 0.95], 2, 0), (40, 60))
    assert scale == 1.0 and A.draw_geometry_2d(np.random.default_rng(0), (40, 60), aug=False)[1] == 1.0
