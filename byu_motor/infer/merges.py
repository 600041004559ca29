"""Merges: how the Predictor turns the logits of several checkpoints and assumed spacings into one candidate list.

Two registries, each chosen by name in the recipe:

- **ensemble merges** (``InferConfig.ensemble``): ``merge(per_model, weights, decode, config, spacing_a)``
  turns one ``(logits, heatmap grid)`` per checkpoint into candidates. ``"logits"`` decodes the weighted
  logit mean; ``"fusion"`` decodes each checkpoint and fuses their points
  (:func:`byu_motor.postprocess.fusion.fuse_points`); ``"wbf"`` decodes each checkpoint and fuses their
  points with the seed's point WBF (:func:`byu_motor.postprocess.wbf.wbf_points`).
- **scale merges** (``InferConfig.scale_merge``): ``merge(parts, merge_models, config, spacing_a)`` turns
  ``parts[model][scale]`` (one entry per assumed spacing of ``InferConfig.scales``) into candidates through
  ``merge_models`` (the ensemble merge). ``"mean"`` averages each checkpoint's logits over the spacings;
  ``"lift"`` keeps the first spacing's candidates, whose scores the mean can raise but never lower
  (:func:`byu_motor.postprocess.fusion.lift_points`).

``decode(logits, grid, index=None)`` maps one logit map to top-k candidates in original voxels, best first;
``index`` names the candidate list a map belongs to (its member's own peak floor), ``None`` a merged map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from byu_motor.config import InferConfig
from byu_motor.data.grid import Grid, as_triple
from byu_motor.infer.sliding import resample_heatmap
from byu_motor.postprocess.fusion import fuse_points, lift_points
from byu_motor.postprocess.peaks import Candidate
from byu_motor.postprocess.wbf import wbf_points

Logits = tuple[torch.Tensor, Grid]
Decode = Callable[..., list[Candidate]]
EnsembleMerge = Callable[[Sequence[Logits], Sequence[float], Decode, InferConfig, Any], list[Candidate]]
MergeModels = Callable[[Sequence[Logits]], list[Candidate]]
ScaleMerge = Callable[[Sequence[Sequence[Logits]], MergeModels, InferConfig, Any], list[Candidate]]

ENSEMBLE_MERGES: dict[str, EnsembleMerge] = {}
SCALE_MERGES: dict[str, ScaleMerge] = {}


def register_ensemble_merge(name: str) -> Callable[[EnsembleMerge], EnsembleMerge]:
    """Decorator: register an ensemble merge under ``name`` (a value of ``InferConfig.ensemble``)."""

    def wrap(fn: EnsembleMerge) -> EnsembleMerge:
        ENSEMBLE_MERGES[name] = fn
        return fn

    return wrap


def register_scale_merge(name: str) -> Callable[[ScaleMerge], ScaleMerge]:
    """Decorator: register a scale merge under ``name`` (a value of ``InferConfig.scale_merge``)."""

    def wrap(fn: ScaleMerge) -> ScaleMerge:
        SCALE_MERGES[name] = fn
        return fn

    return wrap


def finest(grids: Sequence[Grid]) -> Grid:
    """The grid with the smallest cell volume (ties: the first)."""
    return min(grids, key=lambda g: float(np.prod(g.spacing_a)))


def mean_on_finest(parts: Sequence[Logits]) -> Logits:
    """Mean of several logit maps of one model on the finest of their grids."""
    if len(parts) == 1:
        return parts[0]
    target = finest([g for _, g in parts])
    return sum(resample_heatmap(lg, g, target) for lg, g in parts) / len(parts), target


def weighted_mean(per_model: Sequence[Logits], weights: Sequence[float]) -> Logits:
    """Weighted mean of the models' logits on the finest heatmap grid (before the sigmoid)."""
    if len(per_model) == 1:
        return per_model[0]
    target = finest([g for _, g in per_model])
    total = float(sum(weights))
    acc = None
    for w, (lg, g) in zip(weights, per_model):
        r = resample_heatmap(lg, g, target) * (w / total)
        acc = r if acc is None else acc.add_(r)
    return acc, target  # type: ignore[return-value]


@register_ensemble_merge("logits")
def logit_mean(
    per_model: Sequence[Logits], weights: Sequence[float], decode: Decode, config: InferConfig, spacing_a: Any
) -> list[Candidate]:
    """Decode the checkpoints' weighted logit mean."""
    return decode(*weighted_mean(per_model, weights))


@register_ensemble_merge("fusion")
def point_fusion(
    per_model: Sequence[Logits], weights: Sequence[float], decode: Decode, config: InferConfig, spacing_a: Any
) -> list[Candidate]:
    """Decode each checkpoint and fuse their points within ``config.fusion_radius_a``."""
    if len(per_model) == 1:
        return decode(*per_model[0], 0)
    lists = [decode(lg, g, i) for i, (lg, g) in enumerate(per_model)]
    return fuse_points(
        lists, as_triple(spacing_a), config.fusion_radius_a, weights=list(weights), topk=config.topk
    )


@register_ensemble_merge("wbf")
def seed_point_fusion(
    per_model: Sequence[Logits], weights: Sequence[float], decode: Decode, config: InferConfig, spacing_a: Any
) -> list[Candidate]:
    """Decode each checkpoint and fuse their points with the seed's point WBF: candidates above
    ``config.fusion_floor``, clusters strictly within ``config.fusion_radius_a``, confidence = mean member
    confidence x ``min(n_members, sum(weights)) / sum(weights)`` (:func:`byu_motor.postprocess.wbf.wbf_points`).
    """
    lists = [decode(lg, g, i) for i, (lg, g) in enumerate(per_model)]
    return wbf_points(
        lists,
        as_triple(spacing_a),
        config.fusion_radius_a,
        weights=list(weights),
        floor=config.fusion_floor,
        topk=config.topk,
    )


@register_scale_merge("mean")
def scale_mean(
    parts: Sequence[Sequence[Logits]], merge_models: MergeModels, config: InferConfig, spacing_a: Any
) -> list[Candidate]:
    """Each checkpoint's logits averaged over the assumed spacings, then the ensemble merge."""
    return merge_models([mean_on_finest(p) for p in parts])


@register_scale_merge("lift")
def scale_lift(
    parts: Sequence[Sequence[Logits]], merge_models: MergeModels, config: InferConfig, spacing_a: Any
) -> list[Candidate]:
    """The first assumed spacing's candidates, raised (never lowered) by the mean over all spacings."""
    merged = merge_models([mean_on_finest(p) for p in parts])
    if max(len(p) for p in parts) < 2:
        return merged
    first = merge_models([p[0] for p in parts])
    return lift_points(first, merged, spacing_a, config.nms_kernel_a, config.topk)
