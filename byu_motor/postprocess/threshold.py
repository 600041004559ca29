"""Thresholds on per-tomogram candidates: the F2-optimal threshold and quantile thresholds.

Candidates are ``{tomo_id: [(z, y, x, score), ...]}`` best first, in original voxels. A submission keeps a
tomogram's best candidate when its score reaches the threshold and writes -1 otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from byu_motor.metric import AXES, fbeta

if TYPE_CHECKING:
    from byu_motor.data.layout import TomoRecord

Candidates = Mapping[str, Sequence[Sequence[float]]]


def top_scores(candidates: Candidates) -> dict[str, float]:
    """Best score per tomogram (0.0 for a tomogram without candidates)."""
    return {tid: (float(c[0][3]) if len(c) else 0.0) for tid, c in candidates.items()}


def submission_from_candidates(
    candidates: Candidates, threshold: float, tomo_ids: Iterable[str] | None = None
) -> pd.DataFrame:
    """One row per tomogram: its best candidate rounded to integer voxels if ``score >= threshold``, else -1.

    Args:
        candidates: ``{tomo_id: [(z, y, x, score), ...]}`` best first.
        threshold: probability threshold.
        tomo_ids: row order (default: the candidates' order); ids without candidates get -1.
    """
    ids = list(candidates) if tomo_ids is None else list(tomo_ids)
    rows = []
    for tid in ids:
        cands = candidates.get(tid, ())
        if len(cands) and float(cands[0][3]) >= threshold and np.isfinite(cands[0][:3]).all():
            z, y, x = (int(round(float(v))) for v in cands[0][:3])
            rows.append((tid, z, y, x))
        else:
            rows.append((tid, -1, -1, -1))
    return pd.DataFrame(rows, columns=["tomo_id", *AXES])


def _top_hits(candidates: Candidates, records: Mapping[str, TomoRecord], distance_a: float):
    """Arrays over the labelled tomograms: top score, whether the top candidate hits a motor, positivity."""
    ids = [tid for tid in records]
    missing = [tid for tid in ids if tid not in candidates]
    if missing:
        raise ValueError(f"no candidates given for labelled tomogram(s) {missing[:5]}")
    scores = np.zeros(len(ids))
    hit = np.zeros(len(ids), dtype=bool)
    pos = np.zeros(len(ids), dtype=bool)
    for k, tid in enumerate(ids):
        rec = records[tid]
        pos[k] = len(rec.motors) > 0
        cands = candidates[tid]
        if not len(cands):
            continue
        scores[k] = float(cands[0][3])
        if pos[k]:
            d = np.linalg.norm(np.asarray(rec.motors, float) - np.asarray(cands[0][:3], float), axis=1)
            hit[k] = bool((d <= distance_a / rec.spacing_a).any())
    return scores, hit, pos


def max_off_motor_score(
    candidates: Candidates, records: Mapping[str, TomoRecord], distance_a: float = 1000.0
) -> float:
    """Highest candidate score farther than ``distance_a`` from every motor of its tomogram (0.0 if none).

    Over all candidates (not only the top one) of the labelled tomograms. On training tomograms, a value
    well below the best threshold while held-out motor-free tomograms score above it means the model
    learned its training negatives, not what makes them negatives.

    Args:
        candidates: ``{tomo_id: [(z, y, x, score), ...]}`` in original voxels.
        records: labels (motors in original voxels, ``spacing_a`` in Angstrom per voxel).
        distance_a: distance in Angstrom within which a candidate belongs to a motor.
    """
    from byu_motor.data.salient import far_mask  # local: keeps scipy out of this module's import

    best = 0.0
    for tid, rec in records.items():
        cands = candidates.get(tid, ())
        points = np.array([c[:3] for c in cands], dtype=float).reshape(-1, 3)
        scores = np.array([c[3] for c in cands], dtype=float)
        far = scores[far_mask(points, rec.motors, rec.spacing_a, distance_a)]
        best = max(best, float(far.max(initial=0.0)))
    return best


def f2_at(scores: np.ndarray, hit: np.ndarray, pos: np.ndarray, threshold: float, beta: float = 2.0) -> float:
    """F-beta when tomograms with ``score >= threshold`` submit their top candidate."""
    pred = scores >= threshold
    tp = int((pred & hit).sum())
    return fbeta(tp, int((pred & ~pos).sum()), int(pos.sum()) - tp, beta)


def best_threshold(
    candidates: Candidates, records: Mapping[str, TomoRecord], distance_a: float = 1000.0, beta: float = 2.0
) -> tuple[float, float]:
    """The threshold that maximises F-beta on labelled tomograms, and that F-beta.

    Every distinct top score is tried (plus "abstain everywhere"); among equal F-betas the highest threshold
    wins (fewest detections). A hit is within ``distance_a`` of any motor (validation rule).

    Returns:
        ``(threshold, f_beta)``.
    """
    scores, hit, pos = _top_hits(candidates, records, distance_a)
    best_t, best_f = float(np.inf), f2_at(scores, hit, pos, np.inf, beta)
    for t in np.unique(scores)[::-1]:
        f = f2_at(scores, hit, pos, float(t), beta)
        if f > best_f:
            best_t, best_f = float(t), f
    return best_t, best_f


def quantile_threshold(candidates: Candidates, q: float) -> float:
    """The ``q``-quantile of per-tomogram best scores (tomograms without candidates count as 0).

    With ``q = 0.45`` about 55% of tomograms get a detection, whatever the calibration of the model.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    s = np.array(list(top_scores(candidates).values()), dtype=float)
    if s.size == 0:
        raise ValueError("no tomograms to take a quantile over")
    return float(np.quantile(s, q))


def quantile_sweep(
    candidates: Candidates,
    records: Mapping[str, TomoRecord],
    qs: Sequence[float] = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7),
    distance_a: float = 1000.0,
    beta: float = 2.0,
) -> pd.DataFrame:
    """F-beta of the quantile thresholds, as the winners chose them: columns ``q, threshold, f2``."""
    scores, hit, pos = _top_hits(candidates, records, distance_a)
    labelled = {tid: candidates[tid] for tid in records}
    rows = []
    for q in qs:
        t = quantile_threshold(labelled, q)
        rows.append((float(q), t, f2_at(scores, hit, pos, t, beta)))
    return pd.DataFrame(rows, columns=["q", "threshold", "f2"])


def resampled_quantile_sweep(
    candidates: Candidates,
    records: Mapping[str, TomoRecord],
    qs: Sequence[float] = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6),
    n: int = 60,
    prevalence: float = 0.5,
    draws: int = 1000,
    seed: int = 0,
    distance_a: float = 1000.0,
    beta: float = 2.0,
) -> pd.DataFrame:
    """Expected F-beta of each quantile rule on test sets of ``n`` tomograms whose motor share is ``prevalence``.

    A quantile rule predicts a motor in a fixed share of the test tomograms, so its F-beta on a labelled set
    depends on that set's share of motor tomograms: a set with 40 % motors favours a higher quantile than the
    test set would, if the test set holds about half. Each draw takes ``k ~ Binomial(n, prevalence)`` motor
    tomograms and ``n - k`` motor-free ones from ``records``, with replacement, applies
    :func:`quantile_threshold` to that draw's best scores, and scores it (a hit is the top candidate within
    ``distance_a`` of a motor). The mean over ``draws`` estimates what the rule scores on such test sets,
    including the small-set effect of ``n``.

    Args:
        candidates: ``{tomo_id: [(z, y, x, score), ...]}`` best first, for every tomogram of ``records``.
        records: labelled tomograms, at least one with a motor and one without.
        qs: quantiles to compare.
        n: tomograms per simulated test set.
        prevalence: probability that a simulated tomogram holds a motor, in ``[0, 1]``.
        draws: simulated test sets.
        seed: seed of the resampling.
        distance_a: hit radius in Angstrom.
        beta: the F-beta's beta.

    Returns:
        DataFrame with columns ``q, f2`` (mean over draws) and ``f2_sd`` (standard deviation over draws).

    Raises:
        ValueError: ``records`` lacks motor or motor-free tomograms, or an argument is out of range.
    """
    f = _resampled_f2(
        candidates, records, lambda s: np.quantile(s, qs), n, prevalence, draws, seed, distance_a, beta
    )
    return pd.DataFrame({"q": [float(q) for q in qs], "f2": f.mean(axis=0), "f2_sd": f.std(axis=0)})


def resampled_fixed_sweep(
    candidates: Candidates,
    records: Mapping[str, TomoRecord],
    thresholds: Sequence[float] = (0.2, 0.25, 0.3, 0.35, 0.4),
    n: int = 60,
    prevalence: float = 0.5,
    draws: int = 1000,
    seed: int = 0,
    distance_a: float = 1000.0,
    beta: float = 2.0,
) -> pd.DataFrame:
    """Expected F-beta of fixed score thresholds on the test sets :func:`resampled_quantile_sweep` draws.

    The same draws (same ``seed``) as :func:`resampled_quantile_sweep`, so the two tables compare rule for
    rule. Arguments as there; ``thresholds`` are score cut-offs.

    Returns:
        DataFrame with columns ``threshold, f2`` (mean over draws) and ``f2_sd``.
    """
    ts = np.asarray(thresholds, dtype=np.float64)
    f = _resampled_f2(candidates, records, lambda s: ts, n, prevalence, draws, seed, distance_a, beta)
    return pd.DataFrame({"threshold": ts, "f2": f.mean(axis=0), "f2_sd": f.std(axis=0)})


def _resampled_f2(candidates, records, rule, n, prevalence, draws, seed, distance_a, beta) -> np.ndarray:
    """``(draws, n_rules)`` F-beta of the thresholds ``rule(best scores of a draw)`` over resampled test sets."""
    if n < 1 or draws < 1:
        raise ValueError(f"n and draws must be >= 1, got n={n}, draws={draws}")
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"prevalence must be in [0, 1], got {prevalence}")
    scores, hit, pos = _top_hits(candidates, records, distance_a)
    motor, empty = np.flatnonzero(pos), np.flatnonzero(~pos)
    if not len(motor) or not len(empty):
        raise ValueError(
            f"need labelled tomograms with and without a motor; got {len(motor)} with, {len(empty)} without"
        )
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(draws):
        k = int(rng.binomial(n, prevalence))
        idx = np.concatenate([rng.choice(motor, k), rng.choice(empty, n - k)])
        s, h, p = scores[idx], hit[idx], pos[idx]
        rows.append([f2_at(s, h, p, float(t), beta) for t in rule(s)])
    return np.array(rows, dtype=np.float64)
