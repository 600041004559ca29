"""The seed's point weighted-box fusion: identical lists, the 1000 A radius, the confidence formula."""

from __future__ import annotations

import numpy as np
import pytest

from byu_motor.postprocess.wbf import wbf_points

SP = 10.0  # Angstrom per voxel: 1000 A = 100 voxels


def test_two_identical_lists_give_back_the_list():
    cands = [(50.0, 400.0, 300.0, 0.9), (200.0, 100.0, 100.0, 0.6), (50.0, 100.0, 500.0, 0.3)]
    fused = wbf_points([cands, list(cands)], SP, radius_a=1000.0, floor=0.05)
    np.testing.assert_allclose(np.asarray(fused), np.asarray(cands), rtol=0, atol=1e-9)


@pytest.mark.parametrize("gap_a,merged", [(900.0, True), (1100.0, False), (999.0, True), (1000.0, False)])
def test_points_merge_within_the_radius_only(gap_a, merged):
    a = [(100.0, 100.0, 100.0, 0.8)]
    b = [(100.0, 100.0 + gap_a / SP, 100.0, 0.4)]
    fused = wbf_points([a, b], SP, radius_a=1000.0)
    if merged:
        assert len(fused) == 1
        z, y, x, conf = fused[0]
        assert y == pytest.approx(100.0 + (0.4 * gap_a / SP) / 1.2)  # confidence-weighted mean
        assert conf == pytest.approx((0.8 + 0.4) / 2)  # mean confidence x min(2, 2) / 2
    else:
        # each point seen by one list of two keeps half its confidence
        assert [c[3] for c in fused] == pytest.approx([0.4, 0.2])


def test_a_point_seen_by_one_list_of_nine_keeps_a_ninth():
    lists = [[(10.0, 10.0, 10.0, 0.9)]] + [[] for _ in range(8)]
    assert wbf_points(lists, SP)[0][3] == pytest.approx(0.1)


def test_floor_drops_weak_candidates_and_weights_scale_confidences():
    a = [(10.0, 10.0, 10.0, 0.5), (300.0, 300.0, 300.0, 0.04)]
    b = [(12.0, 10.0, 10.0, 0.5)]
    fused = wbf_points([a, b], SP, weights=[3.0, 1.0], floor=0.05)
    assert len(fused) == 1  # the 0.04 point is gone
    # member confidences 1.5 and 0.5: mean 1.0 x min(2, 4) / 4
    assert fused[0][3] == pytest.approx(0.5)
    assert fused[0][0] == pytest.approx((1.5 * 10 + 0.5 * 12) / 2.0)


def test_one_list_can_put_two_points_into_a_cluster_and_clusters_follow_their_centre():
    # 60 voxels apart (600 A): the second point joins the first; a third point 95 voxels from the first but
    # 65 from the moving centre joins too
    a = [(0.0, 0.0, 0.0, 0.9), (0.0, 60.0, 0.0, 0.9)]
    b = [(0.0, 95.0, 0.0, 0.3)]
    fused = wbf_points([a, b], SP, radius_a=1000.0)
    assert len(fused) == 1
    assert fused[0][1] == pytest.approx((0.9 * 60 + 0.3 * 95) / 2.1)
    assert fused[0][3] == pytest.approx(np.mean([0.9, 0.9, 0.3]) * min(3, 2) / 2)


def test_nothing_in_gives_nothing_out_and_bad_weights_are_refused():
    assert wbf_points([[], []], SP) == []
    with pytest.raises(ValueError, match="one positive weight per list"):
        wbf_points([[], []], SP, weights=[1.0])
