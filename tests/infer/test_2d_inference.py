"""2D members at inference: a fixed slice-triplet "model" that lights up on a disc in its centre slice.

It goes through the same sliding window, Grid and peak decoding as the 3D members, so the candidate must come
back at the disc in original voxels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.config import InferConfig
from byu_motor.data.grid import Grid
from byu_motor.data.normalize import Normalizer
from byu_motor.infer import ModelSpec, Predictor
from byu_motor.models.detector2d import SliceDetector

SPACING_A = 13.1  # original voxels
MODEL_SPACING_A = (32.0, 16.0, 16.0)
GRID_STRIDE = (4, 8, 8)
SHAPE = (98, 183, 171)


class Identity2d(nn.Module):
    """Stands in for the encoder: the slice triplet itself, normalised with mean 0 and std 1."""

    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]


class DiscResponse(nn.Module):
    """Centre slice minus the mean of the outer two (a disc in the centre slice), blurred, pooled to ``stride``;
    with ``anywhere`` the triplet's mean over the background level (a disc in any of its slices)."""

    def __init__(self, stride: int, sigma_px: float = 6.0, anywhere: bool = False):
        super().__init__()
        self.anywhere = anywhere
        r = int(3 * sigma_px)
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        k = torch.exp(-(t**2) / (2 * sigma_px**2))
        self.register_buffer("k", k / k.sum())
        self.r, self.stride = r, stride

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[0]
        if self.anywhere:
            resp = F.relu(x.mean(1, keepdim=True) - 0.4)  # background 80 / 255 = 0.31, disc 230 / 255
        else:
            resp = F.relu(x[:, 1:2] - 0.5 * (x[:, :1] + x[:, 2:]))
        resp = F.conv2d(F.pad(resp, (self.r,) * 4, mode="replicate"), self.k.view(1, 1, -1, 1))
        resp = F.conv2d(resp, self.k.view(1, 1, 1, -1))
        return F.avg_pool2d(resp, self.stride)


class Gain(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * (x - 0.05)


def disc_volume(shape, centre, radius_vox: float, half_thickness_vox: float) -> np.ndarray:
    """uint8 volume: an anti-aliased bright disc (thin in z, sub-voxel centre) on a flat background."""
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    radial = np.clip(radius_vox - np.hypot(yy - centre[1], xx - centre[2]) + 0.5, 0.0, 1.0)
    across = np.clip(half_thickness_vox - np.abs(zz - centre[0]) + 0.5, 0.0, 1.0)
    return np.round(80 + 150 * radial * across).astype(np.uint8)


def predict(centre, stride_2d: int, refine: bool = True, plan: str = "every") -> np.ndarray:
    """The top candidate (original voxels, zyx) for a disc at ``centre``; the seed's triplet ``plan`` runs
    non-overlapping triplets, so its stand-in model answers to a disc in any slice of a triplet."""
    response = DiscResponse(stride_2d, anywhere=plan == "seed")
    model = SliceDetector(
        Identity2d(), response, Gain(), GRID_STRIDE, stride_2d, 16, slice_windows=plan
    ).eval()
    spec = ModelSpec(
        model, GRID_STRIDE, MODEL_SPACING_A, Normalizer(mean=0.0, std=1.0), patch_size=(16, 128, 128)
    )
    vol = disc_volume(SHAPE, centre, 150.0 / SPACING_A, 16.0 / SPACING_A)
    cands = Predictor([spec], InferConfig(amp=False, refine_peaks=refine), "cpu").predict_volume(
        vol, SPACING_A
    )
    assert cands
    return np.asarray(cands[0][:3])


def window_a() -> float:
    return GRID_STRIDE[0] * MODEL_SPACING_A[0] / SPACING_A  # one z cell (4 slices of 32 A) in original voxels


@pytest.mark.parametrize("plan", ["seed", "every"])
@pytest.mark.parametrize("cell", [(5, 11, 10), (7, 8, 13)])
def test_a_disc_at_a_cell_centre_comes_back_within_one_original_voxel(cell, plan):
    original = Grid(SHAPE, SPACING_A)
    cells = original.resampled(MODEL_SPACING_A).strided(GRID_STRIDE)
    centre = cells.map_to(original, np.asarray([cell], dtype=np.float64))[0]
    assert np.any(np.abs(centre - np.round(centre)) > 0.1)  # the disc sits between original voxels
    got = predict(centre, stride_2d=8, plan=plan)
    assert np.all(np.abs(got[1:] - centre[1:]) <= 1.0), (got, centre)
    assert abs(got[0] - centre[0]) <= window_a(), (got, centre)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_seeds_wiring_stride_16_bilinear_x2_finds_a_disc_anywhere(seed):
    rng = np.random.default_rng(seed)
    centre = np.asarray(SHAPE) * rng.uniform(0.35, 0.65, 3)
    got = predict(centre, stride_2d=16, plan="seed")
    half_cell = 0.5 * GRID_STRIDE[1] * MODEL_SPACING_A[1] / SPACING_A  # half a 128 A cell, in original voxels
    assert np.all(np.abs(got[1:] - centre[1:]) <= half_cell), (got, centre)
    assert abs(got[0] - centre[0]) <= window_a(), (got, centre)
