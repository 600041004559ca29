"""Hand-computed cases of the competition metric and its validation variant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from byu_motor.metric import MetricError, fbeta, score, score_details, validation_details, wrong_predictions

AX = ["Motor axis 0", "Motor axis 1", "Motor axis 2"]


def sol(rows):
    return pd.DataFrame(rows, columns=["tomo_id", *AX, "Voxel spacing"])


def sub(rows):
    return pd.DataFrame(rows, columns=["tomo_id", *AX])


def test_fbeta_formula_and_zero_case():
    assert fbeta(3, 1, 2) == pytest.approx(15 / (15 + 8 + 1))
    assert fbeta(0, 0, 0) == 0.0
    assert fbeta(0, 5, 0) == 0.0


def test_abstain_on_positive_is_one_false_negative():
    d = score_details(sol([("a", 10, 10, 10, 10.0)]), sub([("a", -1, -1, -1)]))
    assert (d["tp"], d["fp"], d["fn"]) == (0, 0, 1)
    assert d["misplaced"] == 0  # abstained: below the threshold, not a localisation error
    assert d["f2"] == 0.0


def test_near_hit_and_far_miss_on_positive_counts_one_fn_only():
    # spacing 10 A -> radius 100 voxels
    s = sol([("a", 100, 100, 100, 10.0), ("b", 100, 100, 100, 10.0)])
    p = sub([("a", 160, 160, 100), ("b", 200, 200, 200)])  # a: 84.9 voxels (hit); b: 173 voxels (miss)
    d = score_details(s, p)
    assert (d["tp"], d["fp"], d["fn"]) == (1, 0, 1)
    assert d["misplaced"] == 1  # b predicted a motor, too far away
    assert d["f2"] == pytest.approx(5 / (5 + 4))


def test_wrong_predictions_lists_false_positives_and_misplaced_rows_only():
    s = sol([("c", -1, -1, -1, 10.0), ("a", 100, 100, 100, 10.0), ("b", 100, 100, 100, 10.0),
             ("d", 100, 100, 100, 10.0), ("e", -1, -1, -1, 10.0)])  # fmt: skip
    p = sub(
        [("a", 160, 160, 100), ("b", 200, 200, 200), ("c", 5, 6, 7), ("d", -1, -1, -1), ("e", -1, -1, -1)]
    )
    w = wrong_predictions(s, p)
    assert w["tomo_id"].tolist() == ["b", "c"]  # a hits, d abstains, e is a true negative
    assert w["error"].tolist() == ["misplaced", "false_positive"]
    assert w.loc[1, AX].tolist() == [5.0, 6.0, 7.0]
    assert len(w) == score_details(s, p)["fp"] + score_details(s, p)["misplaced"]
    with pytest.raises(MetricError, match="unexpected"):
        wrong_predictions(s, pd.concat([p, sub([("z", 1, 1, 1)])]))


def test_distance_exactly_at_threshold_is_a_hit_and_just_beyond_is_not():
    s = sol([("a", 0, 0, 0, 20.0)])  # radius 50 voxels
    assert score_details(s, sub([("a", 30, 40, 0)]))["tp"] == 1  # 3-4-5 triangle: exactly 50
    assert score_details(s, sub([("a", 30, 40.01, 0)]))["fn"] == 1


def test_single_minus_one_coordinate_means_no_motor():
    s = sol([("a", 10, 10, 10, 10.0), ("b", -1, -1, -1, 10.0)])
    d = score_details(s, sub([("a", 10, -1, 10), ("b", 5, 5, -1)]))
    assert (d["tp"], d["fp"], d["fn"], d["tn"]) == (0, 0, 1, 1)


def test_false_positive_on_motor_free_tomogram_and_order_independence():
    s = sol([("a", 10, 10, 10, 10.0), ("b", -1, -1, -1, 10.0), ("c", 5, 5, 5, 15.6)])
    p = sub([("c", 5, 5, 6), ("b", 1, 2, 3), ("a", 10, 10, 10)])  # shuffled order
    d = score_details(s, p)
    assert (d["tp"], d["fp"], d["fn"]) == (2, 1, 0)
    assert score(s, p) == pytest.approx(10 / 11)
    assert d["precision"] == pytest.approx(2 / 3) and d["recall"] == 1.0


def test_mismatched_ids_duplicates_and_nan_raise():
    s = sol([("a", 1, 1, 1, 10.0)])
    with pytest.raises(MetricError, match="missing"):
        score(s, sub([("b", 1, 1, 1)]))
    with pytest.raises(MetricError, match="duplicate"):
        score(s, sub([("a", 1, 1, 1), ("a", 1, 1, 1)]))
    with pytest.raises(MetricError, match="'a'"):
        score(s, sub([("a", np.nan, 1, 1)]))
    with pytest.raises(MetricError, match="missing column"):
        score(s, pd.DataFrame({"tomo_id": ["a"]}))


def test_validation_variant_hits_any_motor(tmp_path):
    from byu_motor.data.layout import TomoRecord

    recs = {
        "a": TomoRecord("a", (100, 100, 100), 10.0, np.array([[10.0, 10, 10], [90, 90, 90]]), 2),
        "b": TomoRecord("b", (100, 100, 100), 10.0, np.zeros((0, 3)), 0),
    }
    # Far from the first motor, near the second: a hit under the validation rule.
    d = validation_details(recs, sub([("a", 88, 90, 91), ("b", -1, -1, -1)]), distance_a=50.0)
    assert (d["tp"], d["fp"], d["fn"], d["tn"]) == (1, 0, 0, 1)
    d = validation_details(recs, sub([("a", 50, 50, 50), ("b", 3, 3, 3)]), distance_a=50.0)
    assert (d["tp"], d["fp"], d["fn"]) == (0, 1, 1)
    assert d["misplaced"] == 1  # a only: the false positive on motor-free b is not a misplaced motor
