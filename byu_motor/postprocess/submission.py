"""Submission rows: candidates -> one integer row per tomogram, the completeness check and the atomic write."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from byu_motor.atomic import atomic_write

MOTOR_COLUMNS = ("Motor axis 0", "Motor axis 1", "Motor axis 2")
SUBMISSION_COLUMNS = ("tomo_id", *MOTOR_COLUMNS)

Candidate = tuple[float, float, float, float]


class SubmissionError(ValueError):
    """A submission that Kaggle would reject or mis-score (the message names the tomo_id)."""


def row_for(
    candidates: Sequence[Sequence[float]] | None,
    threshold: float,
    shape: Sequence[int] | None = None,
) -> tuple[int, int, int]:
    """The submission coordinates of one tomogram: its best candidate when its score >= threshold.

    Args:
        candidates: ``(z, y, x, score)`` in original voxels, best first (``None`` or empty: no motor).
        threshold: minimum score of a detection.
        shape: ``(Z, Y, X)`` of the tomogram; when given, coordinates are clipped into it.

    Returns:
        Rounded ``(z, y, x)`` integers, or ``(-1, -1, -1)``.
    """
    if not candidates:
        return (-1, -1, -1)
    z, y, x, score = (float(v) for v in candidates[0][:4])
    if not (score >= threshold) or not all(math.isfinite(v) for v in (z, y, x)):
        return (-1, -1, -1)
    # Clip at 0: a centre at -0.6 would round to -1 and read as "no motor" on that axis only.
    upper = [int(n) - 1 for n in shape] if shape is not None else [None] * 3
    out = []
    for value, hi in zip((z, y, x), upper):
        v = max(0, int(round(value)))
        out.append(min(v, hi) if hi is not None else v)
    return tuple(out)  # type: ignore[return-value]


def rows_from_candidates(
    tomo_ids: Sequence[str],
    candidates: Mapping[str, Sequence[Sequence[float]] | None],
    threshold: float,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> pd.DataFrame:
    """One row per ``tomo_ids`` entry (in that order); tomograms absent from ``candidates`` get -1.

    Args:
        tomo_ids: every tomogram of the submission, in output order.
        candidates: ``{tomo_id: [(z, y, x, score), ...]}`` best first (original voxels).
        threshold: minimum score of a detection.
        shapes: optional ``{tomo_id: (Z, Y, X)}`` to clip coordinates.

    Returns:
        DataFrame ``tomo_id, Motor axis 0, Motor axis 1, Motor axis 2`` with int64 coordinates.
    """
    shapes = shapes or {}
    rows = [(tid, *row_for(candidates.get(tid), threshold, shapes.get(tid))) for tid in tomo_ids]
    frame = pd.DataFrame(rows, columns=list(SUBMISSION_COLUMNS))
    return frame.astype(dict.fromkeys(MOTOR_COLUMNS, np.int64))


def check_submission(df: pd.DataFrame, expected_ids: Sequence[str]) -> None:
    """Check a submission before it is written.

    Checks: the competition columns; exactly the tomo_ids of ``expected_ids`` (none missing, none extra,
    no duplicates); no NaN; integer-valued coordinates >= 0 or -1; the three -1 together.

    Args:
        df: the submission frame.
        expected_ids: the tomo_ids of the sample submission (or of the test folder).

    Raises:
        SubmissionError: naming the offending tomo_id (or column).
    """
    missing_cols = [c for c in SUBMISSION_COLUMNS if c not in df.columns]
    if missing_cols:
        raise SubmissionError(f"submission lacks column(s) {missing_cols}; has {list(df.columns)}")
    ids = df["tomo_id"].astype(str).tolist()
    seen: set[str] = set()
    for tid in ids:
        if tid in seen:
            raise SubmissionError(f"submission: tomo_id {tid!r} appears more than once")
        seen.add(tid)
    expected = [str(t) for t in expected_ids]
    missing = [t for t in expected if t not in seen]
    if missing:
        raise SubmissionError(f"submission: tomo_id {missing[0]!r} is missing ({len(missing)} missing)")
    extra = [t for t in ids if t not in set(expected)]
    if extra:
        raise SubmissionError(
            f"submission: tomo_id {extra[0]!r} is not in the expected set ({len(extra)} extra)"
        )
    values = df[list(MOTOR_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    for i, tid in enumerate(ids):
        row = values[i]
        if np.isnan(row).any():
            raise SubmissionError(f"submission: tomo_id {tid!r} has a NaN or non-numeric coordinate")
        if not np.all(row == np.round(row)):
            raise SubmissionError(f"submission: tomo_id {tid!r} has a non-integer coordinate {row.tolist()}")
        is_neg = row == -1
        if is_neg.any() and not is_neg.all():
            raise SubmissionError(f"submission: tomo_id {tid!r} has -1 on some axes only: {row.tolist()}")
        if not is_neg.any() and (row < 0).any():
            raise SubmissionError(f"submission: tomo_id {tid!r} has a negative coordinate {row.tolist()}")


def write_submission(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as CSV atomically (temp file in the same folder, then ``os.replace``).

    A kill during the write leaves the previous file (or none), never half a CSV.
    """
    return atomic_write(path, lambda fh: df.to_csv(fh, index=False), text=True)
