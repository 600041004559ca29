"""Second-stage re-scoring at inference: crops, the classifier's views, the blended score, the Predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from byu_motor.config import InferConfig
from byu_motor.data.normalize import Normalizer
from byu_motor.infer import ModelSpec, Predictor
from byu_motor.infer.rescore import blend_scores, classify_crops, extract_crops
from byu_motor.models.rescorer import CropClassifier
from tests.infer.test_predictor import BallModel, ball_volume


def test_crops_at_the_volume_spacing_are_exact_copies():
    vol = np.random.default_rng(0).integers(0, 255, (30, 50, 60)).astype(np.uint8)
    crops = extract_crops(vol, [[10, 20, 30], [5, 7, 9]], 64.0, 64.0, (4, 6, 8), pad_value=117)
    assert crops.shape == (2, 4, 6, 8) and crops.dtype == np.float32
    # the centre is crop voxel size // 2
    np.testing.assert_allclose(crops[0], vol[8:12, 17:23, 26:34], atol=1e-3)
    np.testing.assert_allclose(crops[1], vol[3:7, 4:10, 5:13], atol=1e-3)


def test_crops_outside_the_volume_read_the_pad_value():
    vol = np.full((10, 12, 14), 200, np.uint8)
    crop = extract_crops(vol, [[0, 0, 0]], 50.0, 50.0, (4, 4, 4), pad_value=117)[0]
    assert crop[0, 0, 0] == pytest.approx(117) and crop[2, 2, 2] == pytest.approx(200)
    far = extract_crops(vol, [[-50, 0, 0]], 50.0, 50.0, (4, 4, 4), pad_value=117)[0]
    np.testing.assert_allclose(far, 117)


def test_crops_are_resampled_to_the_crop_spacing():
    # a ramp of 2 grey levels per voxel along x: at twice the spacing a crop voxel spans 2 voxels (4 levels)
    vol = np.broadcast_to(2.0 * np.arange(80, dtype=np.float32), (20, 30, 80)).copy()
    crop = extract_crops(vol, [[10, 15, 40.25]], (13.0, 13.0, 13.0), (26.0, 26.0, 26.0), (4, 4, 6), 0.0)[0]
    np.testing.assert_allclose(crop[2, 2], 2.0 * (40.25 + 2.0 * (np.arange(6) - 3)), atol=1e-3)
    # per-axis spacing: z at the same spacing, x at a third of it
    crop = extract_crops(vol, [[10, 15, 40]], (13.0, 13.0, 39.0), (13.0, 13.0, 13.0), (2, 2, 4), 0.0)[0]
    np.testing.assert_allclose(crop[1, 1], 2.0 * (40 + (np.arange(4) - 2) / 3.0), atol=1e-3)


def test_blend_scores_moves_from_the_heatmap_to_the_classifier():
    cands = [(1, 1, 1, 0.9), (2, 2, 2, 0.5), (3, 3, 3, 0.3)]
    probs = [0.1, 0.9, 0.5]
    assert [c[:3] for c in blend_scores(cands, probs, 0.0)] == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert [c[:3] for c in blend_scores(cands, probs, 1.0)] == [(2, 2, 2), (3, 3, 3), (1, 1, 1)]
    blended = blend_scores(cands, probs, 0.25)
    assert blended[0][3] == pytest.approx(0.5**0.75 * 0.9**0.25)
    assert [c[3] for c in blended] == sorted([c[3] for c in blended], reverse=True)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        blend_scores(cands, probs, 1.5)
    with pytest.raises(ValueError, match="3 candidates but 2"):
        blend_scores(cands, probs[:2], 0.5)


class MeanLogit(nn.Module):
    """Logit = gain x (mean of the normalised crop - level): brighter crops score higher."""

    def __init__(self, gain: float = 4.0, level: float = 0.0):
        super().__init__()
        self.gain, self.level = gain, level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * (x.mean(dim=(1, 2, 3, 4)) - self.level)


def test_classify_crops_normalises_and_averages_the_views():
    norm = Normalizer("fixed", 0.5, 0.25)
    crops = np.stack([np.full((4, 6, 6), v, np.float32) for v in (64.0, 127.5, 191.0)])
    p = classify_crops(MeanLogit(), crops, norm)
    assert p.shape == (3,) and p[0] < p[1] < p[2]
    assert p[1] == pytest.approx(0.5, abs=1e-6)  # the normaliser's mean maps to 0
    # a classifier that is not view-invariant: TTA averages the four views
    crops = np.random.default_rng(1).uniform(0, 255, (5, 4, 6, 6)).astype(np.float32)
    net = CropClassifier((4, 8), stem_stride=1, dropout=0.0)
    with_tta, without = classify_crops(net, crops, norm), classify_crops(net, crops, norm, tta=False)
    assert with_tta.shape == without.shape == (5,) and not np.allclose(with_tta, without)


def test_crop_classifier_shapes_and_checks():
    net = CropClassifier((4, 8, 8), stem_stride=1)
    assert net(torch.zeros(3, 1, 16, 24, 24)).shape == (3,)
    assert CropClassifier((4, 8), stem_stride=2)(torch.zeros(2, 1, 9, 11, 13)).shape == (2,)
    with pytest.raises(ValueError, match="widths"):
        CropClassifier(())
    with pytest.raises(ValueError, match="stem_stride"):
        CropClassifier((4,), stem_stride=0)


def _two_ball_volume() -> np.ndarray:
    """A big ball A (the detector's favourite) and a small ball B beside a dark slab (the classifier's)."""
    shape = (40, 64, 96)
    a = ball_volume(shape, (20, 32, 24), 5.0)
    b = ball_volume(shape, (20, 32, 72), 3.5)
    vol = np.maximum(a, b)
    vol[:, :, 78:82] = 10  # the slab sits inside B's crop, far outside A's
    return vol


@pytest.mark.parametrize(("weight", "first_x"), [(0.0, 24), (1.0, 72)])
def test_predictor_reranks_candidates_with_the_rescorer(weight, first_x):
    vol = _two_ball_volume()
    spec = ModelSpec(
        BallModel(stride=4, level=0.8),
        stride=4,
        spacing_a=20.0,
        normalizer=Normalizer("fixed", 90 / 255, 0.2),
        rescorer=MeanLogit(gain=-8.0, level=0.3),  # darker crops score higher
        rescore_crop=(8, 16, 16),
        rescore_weight=weight,
    )
    cfg = InferConfig(topk=2, nms_kernel_a=400.0, amp=False, channels_last=False, overlap=0.0)
    plain = Predictor([ModelSpec(spec.module, 4, 20.0, normalizer=spec.normalizer)], cfg, "cpu")
    base = plain.predict_volume(vol, 20.0)
    assert len(base) == 2 and abs(base[0][2] - 24) < 2  # without a rescorer, A is first
    cands = Predictor([spec], cfg, "cpu").predict_volume(vol, 20.0)
    assert len(cands) == 2 and abs(cands[0][2] - first_x) < 2
    # the same positions, only the scores and their order change
    assert sorted(round(c[2]) for c in cands) == sorted(round(c[2]) for c in base)
