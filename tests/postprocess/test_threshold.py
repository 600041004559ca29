"""F2-optimal and quantile thresholds on hand-made candidates."""

from __future__ import annotations

import numpy as np
import pytest

from byu_motor.metric import validation_details
from byu_motor.postprocess.threshold import (
    best_threshold,
    max_off_motor_score,
    quantile_sweep,
    quantile_threshold,
    resampled_fixed_sweep,
    resampled_quantile_sweep,
    submission_from_candidates,
)


@pytest.fixture()
def case():
    from byu_motor.data.layout import TomoRecord

    z = np.zeros((0, 3))
    recs = {
        "p1": TomoRecord("p1", (50, 50, 50), 100.0, np.array([[10.0, 10, 10]]), 1),
        "p2": TomoRecord("p2", (50, 50, 50), 100.0, np.array([[20.0, 20, 20]]), 1),
        "p3": TomoRecord("p3", (50, 50, 50), 100.0, np.array([[30.0, 30, 30]]), 1),
        "n1": TomoRecord("n1", (50, 50, 50), 100.0, z, 0),
        "n2": TomoRecord("n2", (50, 50, 50), 100.0, z, 0),
    }
    cands = {
        "p1": [(10.2, 10, 9.6, 0.9)],
        "p2": [(20, 21, 20, 0.3)],
        "p3": [(45, 45, 45, 0.8)],  # misplaced (radius 10 voxels)
        "n1": [(5, 5, 5, 0.7)],
        "n2": [],
    }
    return recs, cands


def test_submission_from_candidates_rounds_and_abstains(case):
    _, cands = case
    df = submission_from_candidates(cands, 0.5, tomo_ids=["n2", "p1", "p2"])
    assert df["tomo_id"].tolist() == ["n2", "p1", "p2"]
    assert df.iloc[0, 1:].tolist() == [-1, -1, -1]
    assert df.iloc[1, 1:].tolist() == [10, 10, 10]
    assert df.iloc[2, 1:].tolist() == [-1, -1, -1]


def test_best_threshold_matches_brute_force(case):
    recs, cands = case
    t, f = best_threshold(cands, recs)
    # By hand: t=0.9 -> TP1 FN2 -> 5/13; t=0.8 -> TP1 FN2 (misplaced) -> 5/13; t=0.7 -> +FP -> 5/14;
    # t=0.3 -> TP2 FN1 FP1 -> 10/15 = 0.667 (best).
    assert t == pytest.approx(0.3)
    assert f == pytest.approx(10 / 15)
    for thr in [0.0, 0.3, 0.5, 0.75, 0.85, 0.95]:
        f_thr = validation_details(recs, submission_from_candidates(cands, thr))["f2"]
        assert f_thr <= f + 1e-12


def test_quantile_threshold_and_sweep(case):
    recs, cands = case
    # top scores: 0.9, 0.3, 0.8, 0.7, 0.0 -> median 0.7
    assert quantile_threshold(cands, 0.5) == pytest.approx(0.7)
    sweep = quantile_sweep(cands, recs, qs=(0.2, 0.5))
    assert list(sweep.columns) == ["q", "threshold", "f2"]
    f_05 = validation_details(recs, submission_from_candidates(cands, 0.7))["f2"]
    assert sweep.loc[sweep.q == 0.5, "f2"].item() == pytest.approx(f_05)
    with pytest.raises(ValueError):
        quantile_threshold(cands, 1.5)


def test_max_off_motor_score_skips_candidates_on_motors(case):
    recs, cands = case
    # p3's misplaced 0.8 is the highest off-motor candidate; p1's 0.9 sits on its motor
    assert max_off_motor_score(cands, recs) == pytest.approx(0.8)
    cands = {**cands, "p1": [(10.2, 10, 9.6, 0.9), (40, 40, 40, 0.85)], "p3": [(30, 30, 31, 0.8)]}
    assert max_off_motor_score(cands, recs) == pytest.approx(0.85)
    # exactly at the 10-voxel radius still belongs to the motor (<=, as in the metric)
    only = {"p2": recs["p2"]}
    assert max_off_motor_score({"p2": [(30, 20, 20, 0.6)]}, only) == 0.0
    assert max_off_motor_score({"p2": [(30.5, 20, 20, 0.6)]}, only) == pytest.approx(0.6)
    assert max_off_motor_score({"p2": []}, only) == 0.0


def _ranked_case(n_pos: int = 20, n_neg: int = 20, misplaced: int = 0):
    """Motor tomograms all outscore the motor-free ones; the first ``misplaced`` predict 30 voxels off."""
    from byu_motor.data.layout import TomoRecord

    recs, cands = {}, {}
    for i in range(n_pos):
        recs[f"p{i}"] = TomoRecord(f"p{i}", (50, 50, 50), 100.0, np.array([[10.0, 10, 10]]), 1)
        cands[f"p{i}"] = [(40.0 if i < misplaced else 10.0, 10, 10, 0.6 + 0.01 * i)]
    for i in range(n_neg):
        recs[f"n{i}"] = TomoRecord(f"n{i}", (50, 50, 50), 100.0, np.zeros((0, 3)), 0)
        cands[f"n{i}"] = [(5.0, 5, 5, 0.1 + 0.01 * i)]
    return recs, cands


def test_resampled_quantile_sweep_follows_the_prevalence():
    recs, cands = _ranked_case()
    qs = (0.3, 0.5, 0.7)
    half = resampled_quantile_sweep(cands, recs, qs, n=200, prevalence=0.5, draws=200)
    assert list(half.columns) == ["q", "f2", "f2_sd"]
    f = dict(zip(half.q, half.f2))
    # a perfect ranking at 50 % motors: q=.5 is nearly perfect, q=.3 adds ~40 FP (~.93), q=.7 drops ~40 TP (~.65)
    assert f[0.5] > 0.95
    assert 0.88 < f[0.3] < f[0.5]
    assert f[0.7] < 0.75
    # with 30 % motors the rule that predicts 30 % of the tomograms wins
    low = resampled_quantile_sweep(cands, recs, qs, n=200, prevalence=0.3, draws=200)
    assert low.f2.idxmax() == 2
    # the same seed gives the same estimate
    again = resampled_quantile_sweep(cands, recs, qs, n=200, prevalence=0.5, draws=200)
    assert np.array_equal(again.f2.to_numpy(), half.f2.to_numpy())


def test_resampled_quantile_sweep_counts_misplaced_motors_as_misses():
    recs, cands = _ranked_case(misplaced=20)  # every motor tomogram predicts 30 voxels (3000 A) away
    out = resampled_quantile_sweep(cands, recs, (0.0,), n=50, prevalence=1.0, draws=20)
    assert out.f2.item() == 0.0
    recs, cands = _ranked_case()
    out = resampled_quantile_sweep(cands, recs, (0.0,), n=50, prevalence=1.0, draws=20)
    assert out.f2.item() == pytest.approx(1.0)
    assert out.f2_sd.item() == pytest.approx(0.0)


def test_resampled_quantile_sweep_rejects_one_sided_labels_and_bad_arguments():
    recs, cands = _ranked_case(n_neg=0)
    with pytest.raises(ValueError, match="0 without"):
        resampled_quantile_sweep(cands, recs)
    recs, cands = _ranked_case()
    with pytest.raises(ValueError, match="prevalence"):
        resampled_quantile_sweep(cands, recs, prevalence=1.5)
    with pytest.raises(ValueError, match="n and draws"):
        resampled_quantile_sweep(cands, recs, n=0)


def test_resampled_fixed_sweep_is_right_at_every_prevalence_when_the_scores_separate():
    # motor tomograms score .60-.79, motor-free ones .10-.29: any cut between the two is perfect whatever the
    # share of motors, while a quantile rule is only right at its own share
    recs, cands = _ranked_case()
    for prevalence in (0.3, 0.5, 0.7):
        out = resampled_fixed_sweep(cands, recs, (0.05, 0.45, 0.7), n=40, prevalence=prevalence, draws=100)
        assert list(out.columns) == ["threshold", "f2", "f2_sd"]
        f = dict(zip(out.threshold, out.f2))
        assert f[0.45] == pytest.approx(1.0)
        assert f[0.05] < 0.99  # predicts every motor-free tomogram too
        assert f[0.7] < 0.8  # drops the motors scoring .60-.69
    q = resampled_quantile_sweep(cands, recs, (0.5,), n=40, prevalence=0.3, draws=100)
    assert q.f2.item() < 0.95
    # the same draws as the quantile sweep: a fixed cut at 0 and the 0-quantile both predict everything
    fixed_all = resampled_fixed_sweep(cands, recs, (0.0,), n=40, prevalence=0.5, draws=50, seed=3)
    quant_all = resampled_quantile_sweep(cands, recs, (0.0,), n=40, prevalence=0.5, draws=50, seed=3)
    assert fixed_all.f2.item() == pytest.approx(quant_all.f2.item())
    with pytest.raises(ValueError, match="prevalence"):
        resampled_fixed_sweep(cands, recs, prevalence=-0.1)
