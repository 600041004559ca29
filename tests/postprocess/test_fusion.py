"""Weighted point fusion of candidates across models (hand-computed cases)."""

from __future__ import annotations

import pytest

from byu_motor.postprocess.fusion import fuse_points, lift_points


def test_agreeing_models_fuse_to_weighted_mean():
    a = [(10.0, 20.0, 30.0, 0.8)]
    b = [(12.0, 20.0, 30.0, 0.4)]
    ((z, y, x, s),) = fuse_points([a, b], spacing_a=10.0, radius_a=50.0)
    assert z == pytest.approx((10 * 0.8 + 12 * 0.4) / 1.2)
    assert (y, x) == pytest.approx((20.0, 30.0))
    assert s == pytest.approx((0.8 + 0.4) / 2)


def test_distant_points_stay_apart_and_lose_half_their_score():
    a = [(10.0, 10.0, 10.0, 0.8)]
    b = [(30.0, 10.0, 10.0, 0.6)]
    out = fuse_points([a, b], spacing_a=10.0, radius_a=100.0)  # 200 A apart
    assert [p[:3] for p in out] == [(10.0, 10.0, 10.0), (30.0, 10.0, 10.0)]
    assert [p[3] for p in out] == pytest.approx([0.4, 0.3])


def test_one_model_never_fuses_with_itself_and_topk():
    a = [(10.0, 10.0, 10.0, 0.9), (11.0, 10.0, 10.0, 0.5)]
    out = fuse_points([a], spacing_a=10.0, radius_a=100.0)
    assert len(out) == 2
    assert len(fuse_points([a], spacing_a=10.0, radius_a=100.0, topk=1)) == 1


def test_model_weights_and_anisotropic_spacing():
    a = [(10.0, 10.0, 10.0, 0.5)]
    b = [(10.0, 10.0, 13.0, 0.5)]
    # 3 voxels along x at 20 A = 60 A: inside 70 A, but not at 10 A x-spacing with radius 25 A
    fused = fuse_points([a, b], spacing_a=(10.0, 10.0, 20.0), radius_a=70.0, weights=[3.0, 1.0])
    assert len(fused) == 1
    assert fused[0][2] == pytest.approx((10 * 1.5 + 13 * 0.5) / 2.0)
    assert fused[0][3] == pytest.approx((3 * 0.5 + 1 * 0.5) / 4)
    assert len(fuse_points([a, b], spacing_a=(10.0, 10.0, 10.0), radius_a=25.0)) == 2
    with pytest.raises(ValueError):
        fuse_points([a, b], spacing_a=10.0, radius_a=10.0, weights=[1.0])


def test_lift_raises_anchor_scores_never_lowers_and_adds_lone_points():
    anchor = [(10.0, 10.0, 10.0, 0.5), (40.0, 40.0, 40.0, 0.6)]
    others = [
        (11.0, 10.0, 10.0, 0.7),  # 1 voxel from the first anchor point: raises it to 0.7
        (40.0, 41.0, 40.0, 0.2),  # near the second: lower, so it keeps 0.6
        (70.0, 70.0, 70.0, 0.3),  # near nothing: added as it is
    ]
    out = lift_points(anchor, others, 20.0, radius_a=50.0)
    assert out == [(10.0, 10.0, 10.0, 0.7), (40.0, 40.0, 40.0, 0.6), (70.0, 70.0, 70.0, 0.3)]
    assert lift_points(anchor, others, 20.0, 50.0, topk=2) == out[:2]


def test_lift_radius_is_in_angstrom_per_axis():
    anchor = [(10.0, 10.0, 10.0, 0.5)]
    others = [(13.0, 10.0, 10.0, 0.9)]  # 3 voxels away along z
    # 3 x 10 A = 30 A <= 40 A: one object; 3 x 20 A = 60 A > 40 A: two
    assert lift_points(anchor, others, (10.0, 20.0, 20.0), 40.0) == [(10.0, 10.0, 10.0, 0.9)]
    assert lift_points(anchor, others, (20.0, 10.0, 10.0), 40.0) == [others[0], anchor[0]]
    assert lift_points([], others, 10.0, 40.0) == others
    assert lift_points(anchor, [], 10.0, 40.0) == anchor
