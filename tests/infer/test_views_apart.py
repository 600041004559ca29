"""Views kept apart: each member x view is its own candidate list into the fusion (InferConfig.views_apart)."""

from __future__ import annotations

import numpy as np
import pytest

import byu_motor.infer.merges as merges
from byu_motor.config import InferConfig
from byu_motor.infer import ModelSpec, Predictor
from tests.infer.test_predictor import BallModel, ball_volume

SHAPE, CENTRE, SPACING = (45, 67, 53), (21.3, 30.7, 27.9), 13.7
SEED_PAIR = ("flip_z", "rot90+flip_z")  # the seed's ResNeXt50 views {zyx_z, zxy_z}, no identity
# the seed decoder does not refine: a peak is a cell centre, within half a cell's diagonal of the ball
NEAR = 0.5 * (4 * 20.0 / SPACING) * 3**0.5


@pytest.fixture(scope="module")
def ball() -> np.ndarray:
    return ball_volume(SHAPE, CENTRE, 80 / SPACING)


def _spec(views=None) -> ModelSpec:
    return ModelSpec(BallModel(4), 4, 20.0, patch_size=(16, 16, 16), views=views)


def _cfg(**kw) -> InferConfig:
    base = dict(ensemble="wbf", fusion_radius_a=1000.0, peak_decoder="seed", topk=1)
    return InferConfig(**{**base, **kw})


def test_two_views_of_a_symmetric_ball_give_two_lists_that_fuse_to_the_single_list(ball):
    apart = Predictor([_spec()], _cfg(tta=SEED_PAIR, tta_identity=False, views_apart=True))
    together = Predictor([_spec()], _cfg(tta=SEED_PAIR, tta_identity=False))
    assert len(apart.weights) == 2 and len(together.weights) == 1
    parts = apart.scale_logits(ball, SPACING)
    assert len(parts) == 2
    # each view's list finds the ball on its own
    for (logits, grid), *_ in parts:
        one = Predictor([_spec()], _cfg()).candidates_from_logits([[(logits, grid)]], ball, SPACING)
        assert np.linalg.norm(np.asarray(one[0][:3]) - CENTRE) < NEAR
    fused = apart.candidates_from_logits(parts, ball, SPACING)
    single = together.predict_volume(ball, SPACING)
    assert fused[0][3] == pytest.approx(single[0][3], rel=1e-5)
    assert np.allclose(fused[0][:3], single[0][:3], atol=1e-3)


def test_the_fusion_sees_members_times_views_lists(ball, monkeypatch):
    seen = []
    real = merges.wbf_points

    def spy(lists, *args, **kwargs):
        seen.append(len(lists))
        return real(lists, *args, **kwargs)

    monkeypatch.setattr(merges, "wbf_points", spy)
    members = [_spec(("flip_x", "flip_y")), _spec(SEED_PAIR), _spec(("identity", "rot90"))]
    tta = ("flip_x", "flip_y", *SEED_PAIR, "identity", "rot90")
    for identity, n_lists in [(False, 6), (True, 8)]:  # identity added to the first two members: 3 + 3 + 2
        seen.clear()
        cfg = _cfg(tta=tta, tta_identity=identity, views_apart=True)
        pred = Predictor(members, cfg)
        assert pred.weights == [1.0] * n_lists
        cands = pred.predict_volume(ball, SPACING)
        assert seen == [n_lists]
        assert np.linalg.norm(np.asarray(cands[0][:3]) - CENTRE) < NEAR
    seen.clear()
    Predictor(members, _cfg(tta=tta)).predict_volume(ball, SPACING)
    assert seen == [3]  # views averaged per member: one list each


def test_a_member_weight_is_repeated_per_view():
    heavy = ModelSpec(BallModel(4), 4, 20.0, patch_size=(16, 16, 16), views=("flip_x", "flip_y"), weight=2.0)
    pred = Predictor([heavy, _spec(("rot90",))], _cfg(tta=("flip_x", "flip_y", "rot90"), views_apart=True))
    assert pred.weights == [2.0, 2.0, 2.0, 1.0, 1.0]  # identity added: (id, flip_x, flip_y), (id, rot90)


def test_without_identity_a_member_with_no_views_left_still_runs_identity(ball):
    # the time budget may shed every view a member listed: it falls back to identity alone
    pred = Predictor([_spec(("flip_x",))], _cfg(tta=(), tta_identity=False, views_apart=True))
    assert len(pred.weights) == 1
    assert pred.predict_volume(ball, SPACING)


def test_the_peak_decoder_is_checked_when_the_predictor_is_built():
    with pytest.raises(ValueError, match="peak_decoder"):
        Predictor([_spec()], _cfg(peak_decoder="centroid"))
