"""Name the synthetic object behind each false positive and each misplaced prediction.

:func:`byu_motor.synth.generate_dataset` records, per tomogram in ``synth_meta.json``, the motor
look-alikes it drew (storage granules, ring-only decoys, vesicles, gold fiducials) and the reconstruction
edge bands. Matching a wrong prediction against them turns "FP 4" into "granule 2, decoy 1, other 1": the
figure that says what a detector confuses with a motor.

Example:
    >>> meta = json.loads((data / "synth_meta.json").read_text())
    >>> error_sources(solution, submission, meta)["false_positive"]
    {'granule': 2, 'decoy': 1, 'other': 1}
    >>> lookalikes_above(candidates, meta, threshold)   # before any threshold is applied per tomogram
    {'granule': (11, 22), 'decoy': (3, 6), 'vesicle': (0, 4)}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from byu_motor.metric import AXES, wrong_predictions

#: every name :func:`explain_point` can return
KINDS = ("decoy", "granule", "vesicle", "gold", "edge band", "other", "unrecorded")


def _surface_gap_a(points_zyx: np.ndarray, obj: Mapping[str, Any], spacing_a: float) -> np.ndarray:
    """Distance in Angstrom from voxel points ``(n, 3)`` (or one ``(3,)``) to a recorded object's surface
    (negative inside it): ``(n,)``."""
    pts = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    centre = np.asarray(obj["zyx"], dtype=np.float64)
    return np.linalg.norm(pts - centre, axis=1) * spacing_a - 10.0 * float(obj["radius_nm"])


def explain_point(entry: Mapping[str, Any], zyx: Sequence[float], margin_a: float = 300.0) -> str:
    """The recorded distractor at a voxel point of one synthetic tomogram.

    Args:
        entry: the tomogram's ``synth_meta.json`` entry (``shape``, ``voxel_spacing``, ``distractors``).
        zyx: the point (z, y, x) in the tomogram's voxels.
        margin_a: how far outside an object's radius (Angstrom) a point still counts as on it; also the
            slack added to an edge band's width.

    Returns:
        the kind of the object whose surface is nearest (``"decoy"``, ``"granule"``, ``"vesicle"``,
        ``"gold"``) if one lies within ``margin_a``; else ``"edge band"`` inside a band; else ``"other"``.
        ``"unrecorded"`` when the entry holds no distractor record (data made before it was kept).
        Objects recorded with ``"drawn": False`` (left out of the volume) are ignored.
    """
    if "distractors" not in entry:
        return "unrecorded"
    spacing = float(entry["voxel_spacing"])
    point = np.asarray(zyx, dtype=np.float64)
    best_kind, best_gap = "other", float("inf")
    for obj in entry["distractors"]:
        # edge bands are checked below; undrawn objects were left out by generate_tomogram(without=...)
        if obj["kind"] == "edge_band" or not obj.get("drawn", True):
            continue
        gap = float(_surface_gap_a(point, obj, spacing)[0])
        if gap <= margin_a and gap < best_gap:
            best_kind, best_gap = obj["kind"], gap
    if best_kind != "other":
        return best_kind
    shape = entry["shape"]
    slack = margin_a / spacing
    for band in (o for o in entry["distractors"] if o["kind"] == "edge_band"):
        axis = 1 if band["side"][0] == "y" else 2
        depth = point[axis] if band["side"][1] == "0" else shape[axis] - 1 - point[axis]
        if depth <= band["width"] + slack:
            return "edge band"
    return "other"


def error_sources(
    solution: pd.DataFrame,
    submission: pd.DataFrame,
    meta: Mapping[str, Mapping[str, Any]],
    distance_a: float = 1000.0,
) -> dict[str, dict[str, int]]:
    """Count what the wrong predictions of a synthetic test set landed on.

    Args:
        solution: ``tomo_id, Motor axis 0/1/2, Voxel spacing`` (-1: no motor), e.g. ``test_labels.csv``.
        submission: ``tomo_id, Motor axis 0/1/2`` (-1: no motor predicted).
        meta: ``synth_meta.json`` loaded (tomo_id -> entry).
        distance_a: hit radius in Angstrom, as in the metric.

    Returns:
        ``{"false_positive": {kind: n}, "misplaced": {kind: n}}``, most frequent first: false positives
        are predictions on motor-free tomograms; misplaced ones lie farther than ``distance_a`` from the
        tomogram's motor. Kinds are those of :func:`explain_point`.

    Raises:
        MetricError: malformed frames or tomo_ids that differ (as :func:`~byu_motor.metric.score_details`).
    """
    counts: dict[str, Counter[str]] = {"false_positive": Counter(), "misplaced": Counter()}
    wrong = wrong_predictions(solution, submission, distance_a)
    for tid, pred, error in zip(wrong["tomo_id"], wrong[list(AXES)].to_numpy(np.float64), wrong["error"]):
        counts[error][explain_point(meta.get(tid, {}), pred)] += 1
    return {error: dict(c.most_common()) for error, c in counts.items()}


def format_sources(counts: Mapping[str, int]) -> str:
    """``"granule 2, decoy 1"`` (``"none"`` when empty)."""
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def lookalikes_above(
    candidates: Mapping[str, Sequence[Sequence[float]]],
    meta: Mapping[str, Mapping[str, Any]],
    threshold: float,
    margin_a: float = 300.0,
    kinds: Sequence[str] = ("granule", "decoy", "vesicle"),
) -> dict[str, tuple[int, int]]:
    """How many recorded look-alikes a detector scores at or above ``threshold``, per kind.

    Unlike :func:`error_sources`, which sees only the one prediction per tomogram, this looks at every
    candidate: a granule next to a stronger motor still counts when its own score passes the threshold.
    It says whether a change teaches the model to score a kind of look-alike lower, which F2 hides when
    another false positive takes its place.

    Args:
        candidates: ``tomo_id -> [(z, y, x, score), ...]`` in the tomogram's voxels (e.g.
            :meth:`byu_motor.train.validate.Validator.candidates`); tomograms missing here count as
            scoring nothing.
        meta: ``synth_meta.json`` loaded (tomo_id -> entry with ``voxel_spacing`` and ``distractors``).
        threshold: score a look-alike must reach to count.
        margin_a: a candidate scores an object when it lies within the object's radius plus this
            (Angstrom), as in :func:`explain_point`.
        kinds: the object kinds to count (edge bands have no position and are never counted).

    Returns:
        ``{kind: (n_at_or_above, n_drawn)}`` for each of ``kinds``; objects recorded with
        ``"drawn": False`` are left out of both counts.
    """
    out = {k: [0, 0] for k in kinds}
    for tid, entry in meta.items():
        spacing = float(entry["voxel_spacing"])
        rows = np.asarray(candidates.get(tid, []), dtype=np.float64).reshape(-1, 4)
        for obj in entry.get("distractors", []):
            if obj["kind"] not in out or not obj.get("drawn", True):
                continue
            near = _surface_gap_a(rows[:, :3], obj, spacing) <= margin_a
            out[obj["kind"]][1] += 1
            out[obj["kind"]][0] += bool(near.any() and rows[near, 3].max() >= threshold)
    return {k: (v[0], v[1]) for k, v in out.items()}
