"""Weighted point fusion: merge candidate lists of several models into one (3D analogue of WBF)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from byu_motor.data.grid import as_triple

Candidate = tuple[float, float, float, float]


def fuse_points(
    candidate_lists: Sequence[Sequence[Candidate]],
    spacing_a: float | Sequence[float],
    radius_a: float,
    weights: Sequence[float] | None = None,
    topk: int | None = None,
) -> list[Candidate]:
    """Cluster candidates of several models and fuse each cluster into one point.

    Candidates are visited best first (score x model weight); each joins the nearest cluster whose fused
    position is within ``radius_a`` and that holds no candidate of the same model yet, else starts a new
    cluster. The fused position is the score-weighted mean of the members; the fused score is
    ``sum(weight_m * score_m) / sum(weights)`` over ALL models, so a point found by one model of two keeps
    half its score (like Weighted Boxes Fusion).

    Args:
        candidate_lists: one list per model of ``(z, y, x, score)`` in voxels of one tomogram.
        spacing_a: voxel spacing of those coordinates (Angstrom, scalar or per axis).
        radius_a: clustering radius in Angstrom.
        weights: model weights (default 1 each).
        topk: keep at most this many fused points.

    Returns:
        Fused ``[(z, y, x, score)]``, best first.
    """
    n_models = len(candidate_lists)
    w = np.ones(n_models) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != n_models or n_models == 0 or not (w > 0).all():
        raise ValueError(f"need one positive weight per model: {n_models} lists, weights {weights!r}")
    sp = np.asarray(as_triple(spacing_a, "spacing_a"))
    items = [
        (float(c[3]) * w[m], m, np.asarray(c[:3], dtype=np.float64), float(c[3]))
        for m, cands in enumerate(candidate_lists)
        for c in cands
    ]
    items.sort(key=lambda t: -t[0])
    clusters: list[dict] = []
    for _, m, pos, score in items:
        best, best_d = None, radius_a
        for cl in clusters:
            if m in cl["models"]:
                continue
            d = float(np.linalg.norm((cl["pos"] - pos) * sp))
            if d <= best_d:
                best, best_d = cl, d
        if best is None:
            best = {"models": set(), "pos_sum": np.zeros(3), "w_sum": 0.0, "score": 0.0}
            clusters.append(best)
        best["models"].add(m)
        wsc = max(score, 1e-12) * w[m]
        best["pos_sum"] = best["pos_sum"] + wsc * pos
        best["w_sum"] += wsc
        best["pos"] = best["pos_sum"] / best["w_sum"]
        best["score"] += w[m] * score
    total_w = float(w.sum())
    fused = [
        (float(c["pos"][0]), float(c["pos"][1]), float(c["pos"][2]), float(c["score"]) / total_w)
        for c in clusters
    ]
    fused.sort(key=lambda t: -t[3])
    return fused if topk is None else fused[:topk]


def lift_points(
    anchor: Sequence[Candidate],
    others: Sequence[Candidate],
    spacing_a: float | Sequence[float],
    radius_a: float,
    topk: int | None = None,
) -> list[Candidate]:
    """Merge two candidate lists so that ``others`` can raise ``anchor``'s scores but never lower them.

    Each anchor point keeps its position and takes the larger of its score and the best score of the
    ``others`` points within ``radius_a``; an ``others`` point with no anchor point within ``radius_a`` is
    added as it is. Used for multi-spacing inference: the anchor is the prediction at the assumed spacing,
    ``others`` the prediction averaged over several assumed spacings, so an object that only looks right
    at another spacing gains, while the calibration of the assumed-spacing scores is kept.

    Args:
        anchor: ``(z, y, x, score)`` in voxels of one tomogram.
        others: the same for the other prediction, in the same voxels.
        spacing_a: voxel spacing of those coordinates (Angstrom, scalar or per axis).
        radius_a: points closer than this are one object (Angstrom).
        topk: keep at most this many points.

    Returns:
        ``[(z, y, x, score)]``, best first.
    """
    sp = np.asarray(as_triple(spacing_a, "spacing_a"))
    a_pos = np.asarray([c[:3] for c in anchor], dtype=np.float64).reshape(-1, 3)
    o_pos = np.asarray([c[:3] for c in others], dtype=np.float64).reshape(-1, 3)
    # distances in Angstrom, anchor x others
    near = np.linalg.norm((a_pos[:, None, :] - o_pos[None, :, :]) * sp, axis=-1) <= radius_a
    o_score = np.asarray([float(c[3]) for c in others])
    out = [
        (*map(float, c[:3]), max(float(c[3]), float(o_score[near[i]].max(initial=-np.inf))))
        for i, c in enumerate(anchor)
    ]
    out += [tuple(map(float, c[:4])) for j, c in enumerate(others) if not near[:, j].any()]
    out.sort(key=lambda t: -t[3])
    return out if topk is None else out[:topk]
