"""Grid coordinate maps and chunked resampling against F.interpolate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from byu_motor.data.grid import Grid, resample_to_spacing, resample_volume


@pytest.mark.parametrize(
    "shape,spacing,target",
    [((31, 47, 29), 13.1, 16.0), ((300, 959, 928), 15.6, 16.0), ((17, 23, 41), (19.7, 13.3, 13.3), 6.5),
     ((45, 67, 53), 6.5, (30.0, 20.0, 20.0))],
)  # fmt: skip
def test_round_trip_within_half_voxel(shape, spacing, target):
    g = Grid(shape, spacing)
    r = g.resampled(target)
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, np.asarray(shape) - 1, size=(200, 3))
    back = r.map_to(g, g.map_to(r, pts))
    assert np.abs(back - pts).max() < 1e-9  # the maps are exact inverses
    # Rounding in the coarse grid loses at most half a coarse voxel, i.e. ratio/2 original voxels,
    # and rounding to the nearest original voxel keeps it within 0.5 voxel when the grid is not coarser.
    snapped = r.map_to(g, np.round(g.map_to(r, pts)))
    ratio = np.asarray(r.spacing_a) / np.asarray(g.spacing_a)
    assert (np.abs(snapped - pts) <= 0.5 * ratio + 1e-9).all()


def test_interpolate_convention_matches_torch():
    # A one-hot voxel resampled with trilinear interpolation peaks where map_to says it goes.
    g = Grid((21, 21, 21), 10.0)
    r = g.with_shape((42, 42, 42))
    vol = torch.zeros(1, 1, 21, 21, 21)
    vol[0, 0, 7, 11, 4] = 1.0
    up = F.interpolate(vol, size=(42, 42, 42), mode="trilinear", align_corners=False)[0, 0]
    centre = (up[..., None] * torch.stack(torch.meshgrid(*[torch.arange(42.0)] * 3, indexing="ij"), -1)).sum(
        (0, 1, 2)
    ) / up.sum()
    assert np.allclose(centre.numpy(), g.map_to(r, [[7, 11, 4]])[0], atol=1e-4)
    # c_new = (c_old + 0.5) * n_new / n_old - 0.5
    assert np.allclose(g.map_to(r, [[7, 11, 4]]), [[14.5, 22.5, 8.5]])


def test_heatmap_cell_centre_convention():
    g = Grid((33, 47, 29), 16.0)
    h = g.strided(4)
    assert h.shape == (9, 12, 8)
    assert np.allclose(h.map_to(g, [[0, 1, 2]]), [[1.5, 5.5, 9.5]])  # k*s + (s-1)/2
    h2 = g.strided((2, 4, 8))
    assert h2.shape == (17, 12, 4)
    assert np.allclose(h2.map_to(g, [[3, 3, 3]]), [[6.5, 13.5, 27.5]])


def test_per_axis_spacing_and_validation():
    g = Grid((100, 200, 300), (20.0, 10.0, 10.0))
    r = g.resampled(20.0)
    assert r.shape == (100, 100, 150)
    with pytest.raises(ValueError):
        Grid((10, 10), 1.0)
    with pytest.raises(ValueError):
        Grid((10, 10, 10), -1.0)


@pytest.mark.parametrize("mode", ["trilinear", "area", "nearest"])
@pytest.mark.parametrize("out_shape", [(13, 30, 11), (50, 41, 40), (37, 20, 29)])
def test_resample_matches_interpolate(mode, out_shape):
    rng = np.random.default_rng(1)
    v = rng.integers(0, 256, (37, 41, 29), dtype=np.uint8)
    got = resample_volume(v, out_shape, mode=mode, chunk_slices=4)
    kw = {"align_corners": False} if mode == "trilinear" else {}
    ref = F.interpolate(torch.from_numpy(v).float()[None, None], size=out_shape, mode=mode, **kw)[0, 0]
    ref = ref.round().clamp(0, 255).numpy()
    assert got.dtype == np.uint8 and got.shape == out_shape
    assert np.abs(got.astype(int) - ref).max() <= 1  # float rounding only


@pytest.mark.parametrize("denoise", ["median", "gaussian"])
def test_denoise_before_downsampling_reduces_noise_without_chunk_seams(denoise):
    rng = np.random.default_rng(2)
    v = np.clip(128 + rng.normal(0, 40, (40, 32, 32)), 0, 255).astype(np.uint8)
    plain = resample_volume(v, (20, 16, 16))
    den = resample_volume(v, (20, 16, 16), denoise=denoise, chunk_slices=3)
    assert den.std() < plain.std() * 0.9
    whole = resample_volume(v, (20, 16, 16), denoise=denoise, chunk_slices=100)
    assert np.abs(den.astype(int) - whole.astype(int)).max() <= 1


def test_resample_to_spacing_moves_a_blob_consistently():
    v = np.zeros((31, 45, 37), np.uint8)
    c = np.array([12, 30, 9])
    v[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2, c[2] - 1 : c[2] + 2] = 255
    out, src, dst = resample_to_spacing(v, 13.7, 20.0)
    assert out.shape == dst.shape == src.resampled(20.0).shape
    w = out.astype(float)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), -1)
    centroid = (idx * w[..., None]).sum((0, 1, 2)) / w.sum()
    assert np.abs(dst.map_to(src, centroid)[0] - c).max() < 0.5
