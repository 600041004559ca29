"""Threshold rules chosen by name: the built-in rules, their fallbacks, and the registry itself."""

from __future__ import annotations

import logging

import pytest

from byu_motor.config import InferConfig
from byu_motor.postprocess.threshold_rules import THRESHOLD_RULES, choose_threshold, register_threshold_rule

# best scores 0.2, 0.4, 0.6, 0.8 and a tomogram without candidates (counts as 0)
CANDIDATES = {
    "a": [[1.0, 2.0, 3.0, 0.2]],
    "b": [[1.0, 2.0, 3.0, 0.4], [0.0, 0.0, 0.0, 0.1]],
    "c": [[1.0, 2.0, 3.0, 0.6]],
    "d": [[1.0, 2.0, 3.0, 0.8]],
    "e": [],
}


def test_fixed() -> None:
    cfg = InferConfig(threshold="fixed", threshold_value=0.3)
    assert choose_threshold(cfg, [0.9, 0.7], CANDIDATES) == (0.3, "fixed")


def test_checkpoint_mean_and_fallbacks(caplog) -> None:
    cfg = InferConfig(threshold="checkpoint", threshold_value=0.35)
    threshold, source = choose_threshold(cfg, [0.6, 0.8], CANDIDATES)
    assert threshold == pytest.approx(0.7) and source == "checkpoint mean of 2"
    with caplog.at_level(logging.WARNING):
        threshold, source = choose_threshold(cfg, [0.6, None, 0.9], CANDIDATES)
    assert threshold == pytest.approx(0.75) and source == "checkpoint mean of 2"
    assert "only 2 of 3 checkpoints" in caplog.text
    with caplog.at_level(logging.WARNING):
        assert choose_threshold(cfg, [None], CANDIDATES) == (0.35, "fixed (no checkpoint threshold)")
    assert "no checkpoint stores" in caplog.text


def test_quantile_and_fallback(caplog) -> None:
    cfg = InferConfig(threshold="quantile", threshold_quantile=0.5, threshold_value=0.35)
    threshold, source = choose_threshold(cfg, [0.9], CANDIDATES)
    assert threshold == pytest.approx(0.4)  # median of 0, 0.2, 0.4, 0.6, 0.8
    assert source == "quantile 0.5 of 5 tomograms"
    with caplog.at_level(logging.WARNING):
        assert choose_threshold(cfg, [0.9], {}) == (0.35, "fixed (nothing to take a quantile of)")
    assert "no tomogram was predicted" in caplog.text


def test_a_registered_rule_is_chosen_by_name(monkeypatch) -> None:
    monkeypatch.setattr(
        "byu_motor.postprocess.threshold_rules.THRESHOLD_RULES", dict(THRESHOLD_RULES), raising=True
    )
    seen = []

    @register_threshold_rule("lowest_checkpoint")
    def lowest(config, checkpoint_thresholds, candidates):
        seen.append((config.threshold, list(checkpoint_thresholds), sorted(candidates)))
        return min(t for t in checkpoint_thresholds if t is not None), "lowest checkpoint"

    cfg = InferConfig(threshold="lowest_checkpoint")
    assert choose_threshold(cfg, [0.6, None, 0.4], CANDIDATES) == (0.4, "lowest checkpoint")
    assert seen == [("lowest_checkpoint", [0.6, None, 0.4], sorted(CANDIDATES))]
    with pytest.raises(ValueError, match="registered twice"):
        register_threshold_rule("lowest_checkpoint")(lowest)


def test_registry_is_left_unchanged_by_the_test_above() -> None:
    assert sorted(THRESHOLD_RULES) == ["checkpoint", "fixed", "negative_share", "quantile"]


def test_unknown_rule_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'median'.*'checkpoint', 'fixed', 'negative_share', 'quantile'"):
        choose_threshold(InferConfig(threshold="median"), [0.5], CANDIDATES)


def test_negative_share_predicts_nine_of_twenty_positive_at_055() -> None:
    from byu_motor.postprocess.threshold import submission_from_candidates

    scores = [0.93, 0.12, 0.55, 0.71, 0.08, 0.34, 0.66, 0.27, 0.81, 0.49, 0.05, 0.77, 0.39, 0.6, 0.18]
    cands = {f"t{i:02d}": [[1.0, 2.0, 3.0, s]] for i, s in enumerate(scores)}
    cands.update({f"e{i}": [] for i in range(5)})  # 5 tomograms without a candidate count as 0
    threshold, source = choose_threshold(InferConfig(threshold="negative_share"), [None], cands)
    positives = [tid for tid, c in cands.items() if c and c[0][3] >= threshold]
    assert len(positives) == 9 and source == "negative share 0.55 of 20 tomograms"
    sub = submission_from_candidates(cands, threshold)
    assert int((sub.iloc[:, 1] >= 0).sum()) == 9
    # the "quantile" rule at its default 0.45 predicts the opposite share: 11 of 20 positive
    t45, _ = choose_threshold(InferConfig(threshold="quantile"), [None], cands)
    assert sum(1 for c in cands.values() if c and c[0][3] >= t45) == 11
