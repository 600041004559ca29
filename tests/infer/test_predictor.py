"""Predictor end to end with an analytic ball detector: resampling, strides, merges, ensembles, scales, padding."""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.config import Config, InferConfig
from byu_motor.data.normalize import Normalizer
from byu_motor.infer import ModelSpec, Predictor

SHAPE = (45, 67, 53)  # odd on purpose
SPACING_A = 13.7
CENTRE = (21.3, 30.7, 27.9)  # off-centre, between voxels
RADIUS_A = 80.0


def ball_volume(shape, centre, radius_vox, bg=90, fg=220) -> np.ndarray:
    """uint8 volume with an anti-aliased bright ball (sub-voxel centre) on a flat background."""
    axes = [np.arange(n, dtype=np.float64) for n in shape]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    d = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    inside = np.clip(radius_vox - d + 0.5, 0.0, 1.0)
    return np.round(bg + (fg - bg) * inside).astype(np.uint8)


class BallModel(nn.Module):
    """Lights up on bright balls: separable Gaussian blur of the normalised input, then s^3 average pooling.

    Symmetric under every flip and in-plane rotation, so each TTA view must give back the same heatmap.
    """

    def __init__(self, stride: int, sigma_vox: float = 2.0, gain: float = 3.0, level: float = 1.0):
        super().__init__()
        self.stride = (stride,) * 3
        r = int(np.ceil(3 * sigma_vox))
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        k = torch.exp(-(t**2) / (2 * sigma_vox**2))
        self.register_buffer("kernel", k / k.sum())
        self.r, self.gain, self.level = r, gain, level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for axis in range(3):
            shape = [1, 1, 1, 1, 1]
            shape[2 + axis] = -1
            pad = [0] * 6
            pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = self.r
            x = F.conv3d(F.pad(x, pad, mode="replicate"), self.kernel.reshape(shape))
        return self.gain * (F.avg_pool3d(x, self.stride, self.stride) - self.level)


class NaNModel(BallModel):
    def forward(self, x):
        out = super().forward(x)
        out[..., 0, 0, 0] = float("nan")
        return out


@pytest.fixture(scope="module")
def ball() -> np.ndarray:
    return ball_volume(SHAPE, CENTRE, RADIUS_A / SPACING_A)


def top_error(cands) -> float:
    assert cands, "no candidate"
    return float(np.linalg.norm(np.asarray(cands[0][:3]) - np.asarray(CENTRE)))


def spec(stride: int, spacing_a: float = 20.0, patch=(24, 32, 24), **kw) -> ModelSpec:
    return ModelSpec(BallModel(stride), stride, spacing_a, patch_size=patch, **kw)


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("merge", ["mean", "max"])
def test_ball_found_with_resampling(ball, stride, merge):
    cands = Predictor([spec(stride)], InferConfig(merge=merge, topk=3)).predict_volume(ball, SPACING_A)
    assert top_error(cands) < 1.0
    assert len(cands) <= 3
    assert all(a[3] >= b[3] for a, b in zip(cands, cands[1:]))
    assert all(0.0 <= c[3] <= 1.0 for c in cands)


@pytest.mark.parametrize("stride", [2, 4])
def test_ball_found_without_resampling(ball, stride):
    cands = Predictor([spec(stride, spacing_a=SPACING_A, patch=(24, 24, 24))], InferConfig()).predict_volume(
        ball, SPACING_A
    )
    assert top_error(cands) < 1.0


def test_multiscale_tta_keeps_original_coordinates(ball):
    cfg = InferConfig(scales=(0.9, 1.0, 1.1))
    cands = Predictor([spec(2)], cfg).predict_volume(ball, SPACING_A)
    assert top_error(cands) < 1.0


def test_a_second_larger_assumed_spacing_lifts_an_object_that_looks_too_small():
    # a ball smaller than the detector's blur: resampled as if the spacing were 1.25x larger it comes out
    # bigger, so averaging that pass in raises its score, and the point stays in original voxels
    small = ball_volume(SHAPE, CENTRE, 30.0 / SPACING_A)
    one = Predictor([spec(2)], InferConfig(scales=(1.0,))).predict_volume(small, SPACING_A)
    two = Predictor([spec(2)], InferConfig(scales=(1.0, 1.25))).predict_volume(small, SPACING_A)
    assert top_error(one) < 1.0 and top_error(two) < 1.0
    assert two[0][3] > 1.15 * one[0][3]


@pytest.mark.parametrize("ensemble", ["logits", "fusion"])
def test_lift_merge_raises_with_a_second_spacing_but_never_lowers(ensemble):
    small = ball_volume(SHAPE, CENTRE, 30.0 / SPACING_A)
    models = [spec(2), spec(2, 16.0)]

    def top(scales, merge="mean"):
        cfg = InferConfig(scales=scales, scale_merge=merge, ensemble=ensemble)
        return Predictor(models, cfg).predict_volume(small, SPACING_A)[0]

    one, mean_up, lift_up = top((1.0,)), top((1.0, 1.25)), top((1.0, 1.25), "lift")
    # 1.25x makes the small ball look bigger: "lift" takes the averaged score, at the first scale's point
    assert mean_up[3] > 1.1 * one[3]
    assert lift_up[3] == pytest.approx(mean_up[3], rel=1e-6)
    assert lift_up[:3] == pytest.approx(one[:3], abs=1e-9)
    # 0.8x makes it look smaller: the mean drops it, "lift" keeps the first scale's score exactly
    mean_down, lift_down = top((1.0, 0.8)), top((1.0, 0.8), "lift")
    assert mean_down[3] < 0.9 * one[3]
    assert lift_down == pytest.approx(one, abs=1e-9)


@pytest.mark.parametrize("ensemble", ["logits", "fusion"])
def test_two_model_ensemble_different_strides_and_spacings(ball, ensemble):
    models = [spec(2, 20.0, weight=1.0), spec(4, 16.0, patch=(32, 32, 32), weight=2.0)]
    pred = Predictor(models, InferConfig(ensemble=ensemble, topk=4))
    cands = pred.predict_volume(ball, SPACING_A)
    assert top_error(cands) < 1.0
    heat, grid = pred.predict_heatmap(ball, SPACING_A)
    # finest heatmap grid among the models: stride 2 at 20 A (40 A cells) beats stride 4 at 16 A (64 A)
    assert grid.spacing_a[0] == pytest.approx(
        2 * SHAPE[0] * SPACING_A / 31, rel=1e-9
    )  # round(45 * 13.7 / 20) = 31
    assert heat.dtype == np.float32 and heat.shape == grid.shape
    assert 0.0 <= heat.min() and heat.max() <= 1.0


def test_candidates_from_logits_is_predict_volume_after_the_forward_passes(ball):
    pred = Predictor(
        [spec(2), spec(4, 16.0, patch=(32, 32, 32))], InferConfig(ensemble="fusion", scales=(1.0, 1.25))
    )
    parts = pred.scale_logits(ball, SPACING_A)
    assert pred.candidates_from_logits(parts, ball, SPACING_A) == pred.predict_volume(ball, SPACING_A)


def test_volume_smaller_than_patch(ball):
    small_centre = (5.4, 6.2, 4.7)
    vol = ball_volume((11, 13, 9), small_centre, 50.0 / SPACING_A)
    m = ModelSpec(BallModel(2, sigma_vox=1.0), 2, 20.0, patch_size=(32, 32, 32))
    cands = Predictor([m], InferConfig()).predict_volume(vol, SPACING_A)
    assert np.linalg.norm(np.asarray(cands[0][:3]) - small_centre) < 1.0


def test_two_balls_two_candidates_best_first():
    vol = ball_volume(SHAPE, CENTRE, RADIUS_A / SPACING_A)
    other = ball_volume(SHAPE, (33.0, 52.5, 12.2), RADIUS_A / SPACING_A, bg=0, fg=70)  # dimmer second ball
    vol = np.maximum(vol, (vol.astype(int) + other.astype(int)).clip(0, 255).astype(np.uint8) * (other > 0))
    cands = Predictor([spec(2)], InferConfig(topk=2)).predict_volume(vol, SPACING_A)
    assert len(cands) == 2
    assert top_error(cands) < 1.0
    assert np.linalg.norm(np.asarray(cands[1][:3]) - (33.0, 52.5, 12.2)) < 1.5
    assert cands[0][3] > cands[1][3]


@pytest.mark.parametrize("ensemble", ["logits", "fusion"])
def test_non_finite_logits_give_no_candidates_and_warn(ball, ensemble):
    models = [ModelSpec(NaNModel(2), 2, 20.0, patch_size=(24, 32, 24)), spec(4)]
    pred = Predictor(models, InferConfig(ensemble=ensemble))
    with pytest.warns(RuntimeWarning, match="tomo_abc"):
        assert pred.predict_volume(ball, SPACING_A, tomo_id="tomo_abc") == []


def test_finite_logits_do_not_warn(ball):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Predictor([spec(4)], InferConfig()).predict_volume(ball, SPACING_A, tomo_id="t")


def test_bad_input_names_the_tomogram(ball):
    with pytest.raises(ValueError, match="tomo_x"):
        Predictor([spec(2)], InferConfig()).predict_volume(
            ball.astype(np.float32), SPACING_A, tomo_id="tomo_x"
        )


def test_from_checkpoint_reads_the_contract(monkeypatch):
    cfg = Config()
    cfg.data.spacing_a = (18.0, 18.0, 18.0)
    cfg.data.patch_size = (32, 64, 64)
    cfg.data.norm_mean, cfg.data.norm_std = 0.5, 0.25
    model = BallModel(4)

    def load_checkpoint(path, map_location="cpu"):
        return types.SimpleNamespace(model=model, config=cfg, extra={"threshold": 0.37})

    fake = types.ModuleType("byu_motor.models.checkpoint")
    fake.load_checkpoint = load_checkpoint
    monkeypatch.setitem(sys.modules, "byu_motor.models.checkpoint", fake)
    s = ModelSpec.from_checkpoint("/tmp/run/best.pt")
    assert s.module is model and s.stride == (4, 4, 4) and s.spacing_a == (18.0, 18.0, 18.0)
    assert s.patch_size == (32, 64, 64) and s.threshold == pytest.approx(0.37) and s.name == "best"
    assert s.normalizer == Normalizer("fixed", 0.5, 0.25)


def test_predictor_rejects_bad_settings():
    with pytest.raises(ValueError):
        Predictor([], InferConfig())
    with pytest.raises(ValueError):
        Predictor([spec(2)], InferConfig(ensemble="vote"))
    with pytest.raises(ValueError, match="scale_merge"):
        Predictor([spec(2)], InferConfig(scale_merge="max"))
    with pytest.raises(ValueError):
        ModelSpec(BallModel(2), 0, 20.0)


@pytest.mark.parametrize("ensemble", ["logits", "fusion"])
def test_border_margin_drops_a_brighter_ball_on_a_face(ensemble):
    # a brighter ball touching the x=0 face outscores the inner one; with a 5 % margin the inner one is first
    vol = ball_volume(SHAPE, CENTRE, RADIUS_A / SPACING_A, fg=170)
    edge = ball_volume(SHAPE, (CENTRE[0], CENTRE[1], 1.0), RADIUS_A / SPACING_A, fg=250)
    vol = np.maximum(vol, edge)
    models = [spec(2), spec(2, weight=1.0)]
    plain = Predictor(models, InferConfig(ensemble=ensemble, topk=2)).predict_volume(vol, SPACING_A)
    assert plain[0][2] < 3.0  # the face ball wins without a margin
    cfg = InferConfig(ensemble=ensemble, topk=2, border_margin=0.05)
    cands = Predictor(models, cfg).predict_volume(vol, SPACING_A)
    assert top_error(cands) < 1.0
    assert all(c[2] >= 0.05 * SHAPE[2] for c in cands)


def test_channels_last_on_cpu_converts_the_weights_and_keeps_the_candidates(ball):
    from byu_motor.models import create_model
    from byu_motor.presets import get_preset

    results, layouts = [], []
    for channels_last in (False, True):
        torch.manual_seed(0)
        module = create_model(get_preset("tiny").model)
        s = ModelSpec(module, 4, 20.0, patch_size=(32, 32, 32))
        pred = Predictor([s], InferConfig(channels_last=channels_last, topk=5, amp=False), device="cpu")
        results.append(pred.predict_volume(ball, SPACING_A))
        w = next(p for p in module.parameters() if p.dim() == 5 and p.shape[1] > 1)
        layouts.append(w.is_contiguous(memory_format=torch.channels_last_3d) and not w.is_contiguous())
    assert layouts == [False, True]  # the predictor converted the module only when asked
    plain, last = results
    assert len(plain) == len(last) > 0
    np.testing.assert_allclose(np.asarray(plain), np.asarray(last), rtol=1e-4, atol=1e-4)


def test_context_gate_demotes_a_ball_without_a_density_step():
    # the brighter ball sits deep in a flat region; the dimmer one on a density step (an "envelope")
    deep, on_step = (22.0, 30.0, 10.0), (22.0, 33.0, 35.0)
    vol = np.full(SHAPE, 90, dtype=np.uint8)
    vol[..., 35:] = 110
    vol = np.maximum(vol, ball_volume(SHAPE, deep, RADIUS_A / SPACING_A, bg=0, fg=230))
    vol = np.maximum(vol, ball_volume(SHAPE, on_step, RADIUS_A / SPACING_A, bg=0, fg=190))
    gate = {"name": "context_gate", "sigma_a": 40.0, "radius_a": 150.0, "floor": 0.1, "threshold": 0.05}
    plain = Predictor([spec(2)], InferConfig(topk=3)).predict_volume(vol, SPACING_A)
    gated = Predictor([spec(2)], InferConfig(topk=3, steps=(gate,))).predict_volume(vol, SPACING_A)
    assert np.linalg.norm(np.subtract(plain[0][:3], deep)) < 1.0
    assert np.linalg.norm(np.subtract(gated[0][:3], on_step)) < 1.0
    by_place = {tuple(np.round(c[:3], 3)): c[3] for c in plain}
    demoted = [c for c in gated if np.linalg.norm(np.subtract(c[:3], deep)) < 1.0]
    assert demoted and demoted[0][3] == pytest.approx(0.1 * by_place[tuple(np.round(plain[0][:3], 3))])
    assert gated[0][3] == pytest.approx(by_place[tuple(np.round(gated[0][:3], 3))])  # kept as it was


def test_candidate_steps_are_checked_when_the_predictor_is_built():
    with pytest.raises(ValueError, match=r"infer.steps\[0\].*floor"):
        Predictor([spec(2)], InferConfig(steps=({"name": "context_gate", "floor": 2.0},)))
    with pytest.raises(ValueError, match="unknown candidate step 'nope'.*context_gate"):
        Predictor([spec(2)], InferConfig(steps=("nope",)))
    with pytest.raises(ValueError, match="unknown key"):
        Predictor([spec(2)], InferConfig(steps=({"name": "context_gate", "radius": 1.0},)))
