"""The seed's tiling (no overlap, last window flush, zero padding) and decoding at a finer stride (x2 logits)."""

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
from byu_motor.infer.sliding import SlidingWindow
from byu_motor.infer.tiling import FinerWindow, window_settings
from tests.infer.test_predictor import BallModel, ball_volume

NORM = Normalizer(mean=0.4, std=0.2)


class PointConvPool(nn.Module):
    """A 1x1x1 conv (translation-equivariant), then s^3 average pooling: equivariant to stride-aligned shifts."""

    def __init__(self, stride: int):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.7)
            self.conv.bias.fill_(-0.3)
        self.stride = stride
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return F.avg_pool3d(torch.tanh(self.conv(x)), self.stride, self.stride)


def seed_window(patch, **kw) -> SlidingWindow:
    return SlidingWindow(
        patch_size=patch, batch_windows=3, amp=False, **window_settings("seed", 0.25, 0.5), **kw
    )


def volume(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("shape", [(37, 45, 29), (32, 48, 16)])
def test_flush_tiling_equals_one_big_window(stride, shape):
    vol = volume(shape)
    model = PointConvPool(stride).eval()
    tiled = seed_window((16, 16, 16))(model, vol, stride, NORM)
    whole = seed_window(None)(model, vol, stride, NORM)
    assert len(model.inputs) > 2  # several batches of windows, then the single big one
    assert tiled.shape == tuple(-(-n // stride) for n in shape)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_seed_windows_do_not_overlap_and_the_last_is_flush():
    sw = seed_window((16, 16, 16))
    padded, patch, starts = sw.layout((37, 45, 32), (4, 4, 4))
    assert padded == (40, 48, 32)
    assert starts == [[0, 16, 24], [0, 16, 32], [0, 16]]
    # the weighted tiling overlaps its windows by a quarter
    weighted = SlidingWindow(patch_size=(16, 16, 16), **window_settings("weighted", 0.25, 0.5))
    assert weighted.layout((37, 45, 32), (4, 4, 4))[2][2] == [0, 12, 16]


def test_a_volume_smaller_than_the_window_is_zero_padded():
    vol = np.full((10, 9, 11), 200, dtype=np.uint8)
    model = PointConvPool(2).eval()
    out = seed_window((16, 16, 16))(model, vol, 2, NORM)
    x = model.inputs[0][0, 0]
    assert tuple(x.shape) == (16, 16, 16)
    zero = (0.0 - NORM.mean) / NORM.std
    assert float(x[12:].max()) == pytest.approx(zero) and float(x[:, 10:].min()) == pytest.approx(zero)
    assert float(x[:10, :9, :11].min()) == pytest.approx((200 / 255 - NORM.mean) / NORM.std)
    assert out.shape == (5, 5, 6)
    # the default tiling pads with the volume's own grey instead
    model_w = PointConvPool(2).eval()
    SlidingWindow(patch_size=(16, 16, 16), amp=False)(model_w, vol, 2, NORM)
    assert float(model_w.inputs[0][0, 0, 12:].min()) == pytest.approx((200 / 255 - NORM.mean) / NORM.std)


@pytest.mark.parametrize("shape", [(64, 48, 32), (50, 37, 29)])
def test_finer_window_is_the_upsampled_logits_of_one_window(shape):
    vol = volume(shape, seed=3)
    model = PointConvPool(8).eval()
    fine = FinerWindow(patch_size=None, amp=False, factor=2)(model, vol, 4, NORM)
    coarse = SlidingWindow(patch_size=None, amp=False)(model, vol, 8, NORM)
    assert fine.shape == tuple(-(-n // 4) for n in shape)
    up = F.interpolate(coarse[None, None], scale_factor=2, mode="trilinear", align_corners=False)[0, 0]
    # where the volume is not a multiple of 8, the coarse grid's last cell is the edge the upsampling clamps to
    torch.testing.assert_close(fine, up[: fine.shape[0], : fine.shape[1], : fine.shape[2]], rtol=0, atol=1e-5)


def test_decode_upsample_must_divide_the_stride():
    spec = ModelSpec(BallModel(1), 1, 16.0)
    with pytest.raises(ValueError, match="decode_upsample=2 does not divide"):
        Predictor([spec], InferConfig(decode_upsample=2))
    with pytest.raises(ValueError, match="unknown infer.tiling"):
        Predictor([ModelSpec(BallModel(2), 2, 16.0)], InferConfig(tiling="overlapping"))


SP = 13.1


@pytest.mark.parametrize("shape", [(97, 131, 117), (81, 99, 143)])
@pytest.mark.parametrize("cell", [(5, 6, 7), (4, 7, 6)])
def test_stride8_decoding_of_a_stride16_model_lands_within_one_voxel(shape, cell):
    # 13.1 A volume, a stride-16 model at 16 A, odd shapes: the ball sits at the centre of a stride-8 cell
    # (of the 16 A grid), which the stride-16 heatmap cannot express: only the x2 decoding lands on it.
    original = Grid(shape, SP)
    fine = original.resampled(16.0).strided(8)
    centre = fine.map_to(original, [cell])[0]
    ball = ball_volume(shape, centre, 300 / SP)
    spec = ModelSpec(BallModel(16, sigma_vox=4.0), 16, 16.0, patch_size=(64, 64, 64))

    def top(f: int, refine: bool):
        cfg = InferConfig(decode_upsample=f, tiling="seed", refine_peaks=refine, topk=3)
        pred = Predictor([spec], cfg)
        heat, grid = pred.predict_heatmap(ball, SP)
        assert grid.spacing_a == pytest.approx(original.resampled(16.0).strided(16 // f).spacing_a)
        cands = pred.predict_volume(ball, SP)
        return float(np.linalg.norm(np.asarray(cands[0][:3]) - centre))

    assert top(2, refine=False) < 1.0
    assert top(1, refine=False) > 3.0  # a quarter of a stride-16 cell off
    assert top(2, refine=True) < 3.0


def test_seed_tiling_through_the_predictor_finds_the_ball():
    shape, centre = (45, 67, 53), (21.3, 30.7, 27.9)
    ball = ball_volume(shape, centre, 80 / 13.7)
    spec = ModelSpec(BallModel(4), 4, 20.0, patch_size=(16, 16, 16))
    cands = Predictor([spec], InferConfig(tiling="seed")).predict_volume(ball, 13.7)
    assert np.linalg.norm(np.asarray(cands[0][:3]) - centre) < 1.0


def test_wbf_ensemble_of_two_identical_members_keeps_the_members_answer():
    shape, centre = (45, 67, 53), (21.3, 30.7, 27.9)
    ball = ball_volume(shape, centre, 80 / 13.7)
    one = ModelSpec(BallModel(4), 4, 20.0, patch_size=(16, 16, 16))
    two = ModelSpec(BallModel(4), 4, 20.0, patch_size=(16, 16, 16))
    half = ModelSpec(BallModel(4, level=9.0), 4, 20.0, patch_size=(16, 16, 16))  # never fires
    cfg = InferConfig(ensemble="wbf", fusion_radius_a=1000.0, topk=1)
    alone = Predictor([one], InferConfig(topk=1)).predict_volume(ball, 13.7)
    fused = Predictor([one, two], cfg).predict_volume(ball, 13.7)
    assert np.allclose(fused, alone, atol=1e-9)
    assert np.linalg.norm(np.asarray(fused[0][:3]) - centre) < 1.0
    # a member that sees nothing (below fusion_floor) halves the confidence
    lonely = Predictor([one, half], cfg).predict_volume(ball, 13.7)
    assert lonely[0][3] == pytest.approx(alone[0][3] / 2, rel=1e-6)
