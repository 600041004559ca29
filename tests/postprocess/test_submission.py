"""Tests of submission rows, the completeness check and the atomic write."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from byu_motor.postprocess.submission import (
    SubmissionError,
    check_submission,
    row_for,
    rows_from_candidates,
    write_submission,
)

COLS = ["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"]


def test_row_for_threshold_rounding_and_clipping() -> None:
    assert row_for([(10.4, 20.6, 30.5, 0.9)], 0.5) == (10, 21, 30)  # round half to even on .5
    assert row_for([(10.0, 20.0, 30.0, 0.4)], 0.5) == (-1, -1, -1)
    assert row_for([(10.0, 20.0, 30.0, 0.5)], 0.5) == (10, 20, 30)  # equal to the threshold: kept
    assert row_for([], 0.0) == (-1, -1, -1)
    assert row_for(None, 0.0) == (-1, -1, -1)
    assert row_for([(-0.7, 5.0, 99.8, 1.0)], 0.5, shape=(10, 10, 100)) == (0, 5, 99)
    assert row_for([(float("nan"), 1.0, 1.0, 1.0)], 0.5) == (-1, -1, -1)


def test_rows_from_candidates_keeps_order_and_fills_missing() -> None:
    cands = {"b": [(1.0, 2.0, 3.0, 0.9), (5.0, 5.0, 5.0, 0.1)], "a": [(4.0, 4.0, 4.0, 0.2)]}
    df = rows_from_candidates(["c", "b", "a"], cands, 0.5)
    assert df.columns.tolist() == COLS
    assert df.values.tolist() == [["c", -1, -1, -1], ["b", 1, 2, 3], ["a", -1, -1, -1]]
    assert all(df[c].dtype == np.int64 for c in COLS[1:])


def frame(rows: list) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLS)


def test_check_accepts_a_good_submission() -> None:
    check_submission(frame([["a", 1, 2, 3], ["b", -1, -1, -1]]), ["b", "a"])


@pytest.mark.parametrize(
    "rows,bad",
    [
        ([["a", 1, 2, 3], ["a", 1, 2, 3]], "a"),  # duplicate (and b missing)
        ([["a", 1, 2, 3]], "b"),  # missing
        ([["a", 1, 2, 3], ["b", 1, 2, 3], ["zz", 1, 2, 3]], "zz"),  # extra
        ([["a", 1, 2, np.nan], ["b", 1, 2, 3]], "a"),  # NaN
        ([["a", 1, 2.5, 3], ["b", 1, 2, 3]], "a"),  # not an integer
        ([["a", 1, 2, 3], ["b", -1, 2, -1]], "b"),  # -1 on some axes only
        ([["a", 1, -3, 3], ["b", 1, 2, 3]], "a"),  # negative
    ],
)
def test_check_rejects_naming_the_row(rows: list, bad: str) -> None:
    with pytest.raises(SubmissionError, match=repr(bad)):
        check_submission(frame(rows), ["a", "b"])


def test_check_rejects_missing_column() -> None:
    with pytest.raises(SubmissionError, match="Motor axis 2"):
        check_submission(frame([["a", 1, 2, 3]]).drop(columns=["Motor axis 2"]), ["a"])


def test_write_is_atomic_and_readable(tmp_path) -> None:
    df = frame([["a", 1, 2, 3], ["b", -1, -1, -1]])
    out = write_submission(df, tmp_path / "sub" / "submission.csv")
    back = pd.read_csv(out)
    assert back.values.tolist() == df.values.tolist()
    assert [p.name for p in out.parent.iterdir()] == ["submission.csv"]  # no temp file left
