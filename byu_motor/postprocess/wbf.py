"""Point weighted-box fusion as the 3rd-place BYU 2025 solution fused its model x view candidate lists.

A point version of ZFTurbo's Weighted Boxes Fusion (``conf_type="avg"``, linear rescale, no overflow):

1. candidates scoring below ``floor`` are dropped;
2. the others are visited by weighted confidence (score x the weight of their list), best first; each joins
   the cluster whose CURRENT fused centre is nearest and strictly closer than ``radius_a``, else opens a new
   cluster (one list may put several points into one cluster);
3. a cluster's position is the confidence-weighted mean of its members' positions; its confidence is the mean
   member confidence times ``min(n_members, sum(weights)) / sum(weights)``, so with ``n`` unit-weight lists a
   point seen by one list keeps ``1/n`` of its score and one seen by all keeps its mean score.

Unlike :func:`byu_motor.postprocess.fusion.fuse_points` (one point per list and cluster, radius inclusive,
score ``sum(weight x score) / sum(weights)``), this is the seed's formula exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from byu_motor.data.grid import as_triple

Candidate = tuple[float, float, float, float]


def wbf_points(
    candidate_lists: Sequence[Sequence[Candidate]],
    spacing_a: float | Sequence[float],
    radius_a: float = 1000.0,
    weights: Sequence[float] | None = None,
    floor: float = 0.0,
    topk: int | None = None,
) -> list[Candidate]:
    """Fuse candidate lists (one per model x view) of one tomogram with the seed's point WBF.

    Args:
        candidate_lists: per list, ``(z, y, x, score)`` in voxels of one tomogram (score a probability).
        spacing_a: the (assumed) voxel spacing of those coordinates, Angstrom (scalar or per axis).
        radius_a: clustering distance in Angstrom; a point joins a cluster strictly closer than this.
        weights: one positive weight per list (default 1 each); a member's confidence is score x weight.
        floor: candidates with a score below this are dropped before fusion.
        topk: keep at most this many fused points.

    Returns:
        Fused ``[(z, y, x, confidence)]`` in the same voxels, best first (the tomogram's answer is the first).
    """
    n_lists = len(candidate_lists)
    w = np.ones(n_lists) if weights is None else np.asarray(weights, dtype=np.float64)
    if n_lists == 0 or len(w) != n_lists or not (w > 0).all():
        raise ValueError(f"need one positive weight per list: {n_lists} lists, weights {weights!r}")
    if radius_a <= 0:
        raise ValueError(f"radius_a must be positive, got {radius_a}")
    sp = np.asarray(as_triple(spacing_a, "spacing_a"))
    items = [
        (float(c[3]) * w[m], np.asarray(c[:3], dtype=np.float64))
        for m, cands in enumerate(candidate_lists)
        for c in cands
        if float(c[3]) >= floor
    ]
    items.sort(key=lambda t: -t[0])  # stable: ties keep list order
    centres = np.zeros((0, 3))
    pos_sums: list[np.ndarray] = []
    wsums: list[float] = []
    confs: list[list[float]] = []
    for conf, pos in items:
        k = -1
        if len(confs):
            d = np.linalg.norm((centres - pos) * sp, axis=1)
            k = int(np.argmin(d))
            if not d[k] < radius_a:
                k = -1
        if k < 0:
            pos_sums.append(np.zeros(3))
            wsums.append(0.0)
            confs.append([])
            centres = np.vstack([centres, pos])
        c = max(conf, 1e-12)
        pos_sums[k] = pos_sums[k] + c * pos
        wsums[k] += c
        confs[k].append(conf)
        centres[k] = pos_sums[k] / wsums[k]
    total_w = float(w.sum())
    fused = [
        (*map(float, centres[k]), float(np.mean(confs[k])) * min(len(confs[k]), total_w) / total_w)
        for k in range(len(confs))
    ]
    fused.sort(key=lambda t: -t[3])
    return fused if topk is None else fused[:topk]
