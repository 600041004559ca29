"""Threshold rules by name: how a prediction run turns its candidates into the one score threshold it applies.

A rule is ``rule(config, checkpoint_thresholds, candidates) -> (threshold, source)``, registered with
:func:`register_threshold_rule` and chosen by ``InferConfig.threshold``; ``source`` says in words where the
threshold came from (it goes into the run summary). Adding a rule is one decorated function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from byu_motor.postprocess.threshold import Candidates, quantile_threshold

if TYPE_CHECKING:
    from byu_motor.config import InferConfig

log = logging.getLogger(__name__)

ThresholdRule = Callable[["InferConfig", Sequence["float | None"], Candidates], tuple[float, str]]

# A plain dict, as the TTA views: importing byu_motor.models for its Registry would pull in every encoder.
THRESHOLD_RULES: dict[str, ThresholdRule] = {}


def register_threshold_rule(name: str) -> Callable[[ThresholdRule], ThresholdRule]:
    """Decorator registering a threshold rule under ``name`` (the value of ``InferConfig.threshold``).

    Raises:
        ValueError: ``name`` is already registered.
    """

    def deco(fn: ThresholdRule) -> ThresholdRule:
        if name in THRESHOLD_RULES:
            raise ValueError(f"threshold rule {name!r} is registered twice")
        THRESHOLD_RULES[name] = fn
        return fn

    return deco


def choose_threshold(
    config: InferConfig, checkpoint_thresholds: Sequence[float | None], candidates: Candidates
) -> tuple[float, str]:
    """The score threshold of a run and a words description of where it came from.

    Args:
        config: inference settings; ``config.threshold`` names the rule.
        checkpoint_thresholds: the calibrated threshold stored in each checkpoint (``None`` where absent),
            one per ensemble member.
        candidates: ``{tomo_id: [(z, y, x, score), ...]}`` best first, of the tomograms predicted.

    Returns:
        ``(threshold, source)``: a probability in [0, 1] and e.g. ``"checkpoint mean of 2"``.

    Raises:
        ValueError: ``config.threshold`` names no registered rule (the message lists the valid ones).
    """
    try:
        rule = THRESHOLD_RULES[config.threshold]
    except KeyError:
        known = ", ".join(repr(name) for name in sorted(THRESHOLD_RULES))
        raise ValueError(f"unknown infer.threshold {config.threshold!r}; expected one of {known}") from None
    return rule(config, checkpoint_thresholds, candidates)


@register_threshold_rule("fixed")
def _fixed(
    config: InferConfig, checkpoint_thresholds: Sequence[float | None], candidates: Candidates
) -> tuple[float, str]:
    """``config.threshold_value``."""
    return float(config.threshold_value), "fixed"


@register_threshold_rule("checkpoint")
def _checkpoint(
    config: InferConfig, checkpoint_thresholds: Sequence[float | None], candidates: Candidates
) -> tuple[float, str]:
    """Mean of the thresholds the checkpoints store; the fixed value when none stores one."""
    values = [t for t in checkpoint_thresholds if t is not None]
    if not values:
        log.warning(
            "threshold=checkpoint but no checkpoint stores a calibrated threshold; using the fixed %g",
            config.threshold_value,
        )
        return float(config.threshold_value), "fixed (no checkpoint threshold)"
    if len(values) < len(checkpoint_thresholds):
        log.warning(
            "only %d of %d checkpoints store a threshold; averaging those",
            len(values),
            len(checkpoint_thresholds),
        )
    return float(sum(values) / len(values)), f"checkpoint mean of {len(values)}"


@register_threshold_rule("quantile")
def _quantile(
    config: InferConfig, checkpoint_thresholds: Sequence[float | None], candidates: Candidates
) -> tuple[float, str]:
    """The ``config.threshold_quantile`` quantile of the per-tomogram best scores of this run
    (:func:`byu_motor.postprocess.threshold.quantile_threshold`); the fixed value when nothing was predicted.
    """
    if not candidates:
        log.warning(
            "threshold=quantile but no tomogram was predicted; using the fixed %g", config.threshold_value
        )
        return float(config.threshold_value), "fixed (nothing to take a quantile of)"
    q = float(config.threshold_quantile)
    return quantile_threshold(candidates, q), f"quantile {q:g} of {len(candidates)} tomograms"


@register_threshold_rule("negative_share")
def _negative_share(
    config: InferConfig, checkpoint_thresholds: Sequence[float | None], candidates: Candidates
) -> tuple[float, str]:
    """The seed's quantile rule (3rd place, BYU 2025): the threshold is the ``config.negative_share``-quantile
    (numpy's linear interpolation) of the per-tomogram best scores, 0 for a tomogram without a candidate;
    tomograms scoring below it are negative, so about ``negative_share`` of them are predicted negative
    (0.55: about 45 % positive). The formula is the ``"quantile"`` rule's; the name says which share the
    number is: ``threshold_quantile=0.45`` there predicts about 55 % POSITIVE, ``negative_share=0.55`` here
    about 45 % positive. The fixed value when nothing was predicted.
    """
    if not candidates:
        log.warning(
            "threshold=negative_share but no tomogram was predicted; using the fixed %g",
            config.threshold_value,
        )
        return float(config.threshold_value), "fixed (nothing to take a quantile of)"
    q = float(config.negative_share)
    return quantile_threshold(candidates, q), f"negative share {q:g} of {len(candidates)} tomograms"
