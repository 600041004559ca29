"""The competition's F-beta metric over tomograms, and its multi-motor validation variant.

Rule (COMPETITION.md): each tomogram is one binary decision. A row "has a motor" unless any coordinate is
-1. A motor prediction on a tomogram with a motor is a true positive when its Euclidean distance (original
voxels) is at most ``distance_a / spacing``; farther, it counts as "no motor" (one false negative, never a
false positive). A motor prediction on a motor-free tomogram is a false positive.
F2 = 5 TP / (5 TP + 4 FN + FP); 0 when TP, FP and FN are all zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from byu_motor.data.layout import TomoRecord

__all__ = [
    "AXES",
    "SPACING",
    "MetricError",
    "fbeta",
    "score",
    "score_details",
    "validation_details",
    "wrong_predictions",
]

AXES = ["Motor axis 0", "Motor axis 1", "Motor axis 2"]
SPACING = "Voxel spacing"


class MetricError(ValueError):
    """The solution or submission frame is malformed or they disagree on tomo_ids."""


def fbeta(tp: int, fp: int, fn: int, beta: float = 2.0) -> float:
    """F-beta from counts; 0.0 when all counts are zero (scikit-learn's zero-division value)."""
    b2 = beta * beta
    denom = (1 + b2) * tp + b2 * fn + fp
    return float((1 + b2) * tp / denom) if denom > 0 else 0.0


def _check_frame(df: pd.DataFrame, columns: list[str], name: str) -> pd.DataFrame:
    missing = [c for c in ["tomo_id", *columns] if c not in df.columns]
    if missing:
        raise MetricError(f"{name}: missing column(s) {missing}; has {list(df.columns)}")
    dup = df["tomo_id"][df["tomo_id"].duplicated()]
    if len(dup):
        raise MetricError(f"{name}: duplicate tomo_id {dup.iloc[0]!r} (one row per tomogram expected)")
    values = df[columns].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1) | ~np.isfinite(values.to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        row = df.loc[bad].iloc[0]
        raise MetricError(f"{name}: non-numeric or missing value in row of tomo_id {row['tomo_id']!r}")
    out = df[["tomo_id"]].copy()
    out[columns] = values.astype(float)
    return out.sort_values("tomo_id").reset_index(drop=True)


def _align(solution: pd.DataFrame, submission: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    sol = _check_frame(solution, [*AXES, SPACING], "solution")
    sub = _check_frame(submission, AXES, "submission")
    sol_ids, sub_ids = set(sol["tomo_id"]), set(sub["tomo_id"])
    if sol_ids != sub_ids:
        missing = sorted(sol_ids - sub_ids)[:5]
        extra = sorted(sub_ids - sol_ids)[:5]
        raise MetricError(
            f"submission tomo_ids differ from the solution's: missing {missing}, unexpected {extra}"
        )
    bad_spacing = sol[SPACING] <= 0
    if bad_spacing.any():
        raise MetricError(
            f"solution: non-positive voxel spacing for {sol.loc[bad_spacing, 'tomo_id'].iloc[0]!r}"
        )
    return sol, sub


def score_details(
    solution: pd.DataFrame, submission: pd.DataFrame, distance_a: float = 1000.0, beta: float = 2.0
) -> dict[str, Any]:
    """Counts and scores of the competition rule.

    Args:
        solution: one row per tomogram: ``tomo_id, Motor axis 0, Motor axis 1, Motor axis 2, Voxel spacing``.
        submission: one row per tomogram: ``tomo_id, Motor axis 0, Motor axis 1, Motor axis 2``.
        distance_a: hit radius in Angstrom (threshold in voxels = distance_a / spacing).
        beta: the F-beta's beta.

    Returns:
        dict with ``tp, fp, fn, tn, misplaced, precision, recall, f2`` (``f2`` is the F-beta). ``misplaced``
        counts the false negatives that did predict a motor, but farther than ``distance_a`` from it: the
        localisation errors, as opposed to the tomograms left below the threshold (``fn - misplaced``).

    Raises:
        MetricError: missing columns, NaN values, duplicate or mismatched tomo_ids.
    """
    _, hit, p_pos, t_pos = _decisions(solution, submission, distance_a)
    return _counts(hit, p_pos, t_pos, beta)


def wrong_predictions(
    solution: pd.DataFrame, submission: pd.DataFrame, distance_a: float = 1000.0
) -> pd.DataFrame:
    """The submission rows that predicted a motor wrongly, under the rule of :func:`score_details`.

    Returns:
        ``tomo_id``, the three axes (the prediction, original voxels) and ``error``: ``"false_positive"``
        (a motor-free tomogram) or ``"misplaced"`` (farther than ``distance_a`` from the motor); sorted by
        tomo_id.

    Raises:
        MetricError: as :func:`score_details`.
    """
    sub, hit, p_pos, t_pos = _decisions(solution, submission, distance_a)
    wrong = p_pos & ~hit
    out = sub.loc[wrong, ["tomo_id", *AXES]].reset_index(drop=True)
    out["error"] = np.where(t_pos[wrong], "misplaced", "false_positive")
    return out


def _decisions(solution: pd.DataFrame, submission: pd.DataFrame, distance_a: float):
    """The aligned submission (sorted by tomo_id) and per-row ``hit``, ``p_pos`` (motor predicted), ``t_pos``."""
    sol, sub = _align(solution, submission)
    t = sol[AXES].to_numpy(float)
    p = sub[AXES].to_numpy(float)
    t_pos = ~(t == -1).any(axis=1)
    p_pos = ~(p == -1).any(axis=1)
    dist = np.linalg.norm(p - t, axis=1)
    radius_vox = distance_a / sol[SPACING].to_numpy(float)
    hit = t_pos & p_pos & (dist <= radius_vox)
    return sub, hit, p_pos, t_pos


def _counts(hit: np.ndarray, p_pos: np.ndarray, t_pos: np.ndarray, beta: float) -> dict[str, Any]:
    tp = int(hit.sum())
    fn = int(t_pos.sum()) - tp  # misses and misplaced predictions alike
    fp = int((p_pos & ~t_pos).sum())
    tn = int((~p_pos & ~t_pos).sum())
    misplaced = int((p_pos & t_pos & ~hit).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "misplaced": misplaced, "precision": precision, "recall": recall,
            "f2": fbeta(tp, fp, fn, beta)}  # fmt: skip


def score(
    solution: pd.DataFrame, submission: pd.DataFrame, distance_a: float = 1000.0, beta: float = 2.0
) -> float:
    """The competition score (F2 by default); see :func:`score_details`."""
    return score_details(solution, submission, distance_a, beta)["f2"]


def validation_details(
    records: Mapping[str, TomoRecord], submission: pd.DataFrame, distance_a: float = 1000.0, beta: float = 2.0
) -> dict[str, Any]:
    """The competition rule on train tomograms with any number of motors: a hit is within the radius of ANY motor.

    Args:
        records: ``{tomo_id: TomoRecord}`` (motors ``(n, 3)`` original voxels, ``spacing_a``).
        submission: one row per tomogram with ``tomo_id`` and the three axes; must cover exactly ``records``.

    Returns:
        The same dict as :func:`score_details`.
    """
    sub = _check_frame(submission, AXES, "submission").set_index("tomo_id")
    ids = sorted(records)
    if set(ids) != set(sub.index):
        missing = sorted(set(ids) - set(sub.index))[:5]
        extra = sorted(set(sub.index) - set(ids))[:5]
        raise MetricError(
            f"submission tomo_ids differ from the labels': missing {missing}, unexpected {extra}"
        )
    p = sub.loc[ids, AXES].to_numpy(float)
    p_pos = ~(p == -1).any(axis=1)
    t_pos = np.array([len(records[i].motors) > 0 for i in ids])
    hit = np.zeros(len(ids), dtype=bool)
    for k, tid in enumerate(ids):
        rec = records[tid]
        if p_pos[k] and len(rec.motors):
            d = np.linalg.norm(np.asarray(rec.motors, float) - p[k], axis=1)
            hit[k] = bool((d <= distance_a / rec.spacing_a).any())
    return _counts(hit, p_pos, t_pos, beta)
