"""Heatmap losses against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from byu_motor.config import TrainConfig
from byu_motor.train.losses import (
    LOSSES,
    HeatmapLoss,
    bce_loss,
    focal_loss,
    jsd_loss,
    pool_target,
    tversky_loss,
)

LN2 = math.log(2.0)


def _vol(values: list[float]) -> torch.Tensor:
    """A [1, 1, 1, 1, n] tensor."""
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, 1, -1)


def test_bce_pos_weight_hand_value() -> None:
    # logits 0 -> p = 0.5: the positive cell costs pos_weight * ln 2, the negative one ln 2.
    got = bce_loss(_vol([0.0, 0.0]), _vol([1.0, 0.0]), pos_weight=3.0)
    assert got.item() == pytest.approx((3 * LN2 + LN2) / 2, rel=1e-6)


def test_focal_hand_value() -> None:
    # p = 0.5 everywhere: (1 - p_t)^2 = 0.25; alpha_t = 0.25 (positive) and 0.75 (negative).
    got = focal_loss(_vol([0.0, 0.0]), _vol([1.0, 0.0]), alpha=0.25, gamma=2.0)
    assert got.item() == pytest.approx((0.25 * 0.25 + 0.75 * 0.25) * LN2 / 2, rel=1e-6)
    # gamma = 0, alpha disabled: plain BCE
    got0 = focal_loss(_vol([2.0, -1.0]), _vol([1.0, 0.0]), alpha=-1, gamma=0.0)
    want = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-1.0))) / 2
    assert got0.item() == pytest.approx(want, rel=1e-6)


def test_tversky_hand_value() -> None:
    # p = 0.5 on 4 cells, one positive: TP = 0.5, FP = 1.5, FN = 0.5.
    got = tversky_loss(_vol([0.0] * 4), _vol([1.0, 0.0, 0.0, 0.0]), alpha=0.3, beta=0.7, smooth=1.0)
    assert got.item() == pytest.approx(1 - 1.5 / (0.5 + 0.3 * 1.5 + 0.7 * 0.5 + 1.0), rel=1e-6)


def test_tversky_is_mean_over_samples() -> None:
    logits = torch.zeros(2, 1, 1, 1, 2)
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(2, 1, 1, 1, 2)
    # sample 0: TP = 1, FP = 0, FN = 1 -> 1 - 2 / 2.5; sample 1: TP = 0, FP = 1, FN = 0 -> 1 - 1 / 1.5
    want = ((1 - 2 / 2.5) + (1 - 1 / 1.5)) / 2
    assert tversky_loss(logits, target, 0.5, 0.5).item() == pytest.approx(want, rel=1e-6)


def test_jsd_hand_value_with_background_cell() -> None:
    # 3 cells + background, all logits 0 -> p = 1/4 each; q one-hot -> m = (5/8, 1/8, 1/8, 1/8).
    kl_pm = 0.25 * math.log(0.25 / 0.625) + 3 * 0.25 * math.log(0.25 / 0.125)
    kl_qm = math.log(1 / 0.625)
    want = 0.5 * (kl_pm + kl_qm)
    assert jsd_loss(_vol([0.0] * 3), _vol([1.0, 0.0, 0.0])).item() == pytest.approx(want, rel=1e-6)
    # an empty target puts its mass on the background cell: same value by symmetry
    assert jsd_loss(_vol([0.0] * 3), _vol([0.0, 0.0, 0.0])).item() == pytest.approx(want, rel=1e-6)
    # the target is normalised: scaling it changes nothing
    assert jsd_loss(_vol([0.0] * 3), _vol([0.5, 0.0, 0.0])).item() == pytest.approx(want, rel=1e-6)


def test_jsd_near_zero_when_right_and_bounded_by_ln2() -> None:
    right = jsd_loss(_vol([40.0, -40.0, -40.0]), _vol([1.0, 0.0, 0.0]))
    assert right.item() < 1e-6
    empty_right = jsd_loss(_vol([-40.0, -40.0, -40.0]), _vol([0.0, 0.0, 0.0]))
    assert empty_right.item() < 1e-6
    wrong = jsd_loss(_vol([-40.0, 40.0, -40.0]), _vol([1.0, 0.0, 0.0]))
    assert wrong.item() == pytest.approx(LN2, rel=1e-4)


def test_pool_target_keeps_peaks() -> None:
    t = torch.zeros(1, 1, 2, 2, 2)
    t[0, 0, 1, 0, 1] = 0.7
    t[0, 0, 0, 1, 0] = 0.3
    pooled = pool_target(t, (1, 1, 1))
    assert pooled.shape == (1, 1, 1, 1, 1)
    assert pooled.item() == pytest.approx(0.7)


def test_heatmap_loss_combines_weights_and_deep_supervision() -> None:
    cfg = TrainConfig(losses={"bce": 1.0, "tversky": 0.5}, pos_weight=1.0, ds_decay=0.5)
    crit = HeatmapLoss(cfg)
    target = torch.zeros(1, 1, 2, 2, 2)
    target[0, 0, 0, 0, 0] = 1.0
    main = torch.zeros(1, 1, 2, 2, 2, requires_grad=True)
    coarse = torch.zeros(1, 1, 1, 1, 1, requires_grad=True)
    total, parts = crit([main, coarse], target)
    # main: BCE ln2; tversky TP=0.5 FP=3.5 FN=0.5 -> 1 - 1.5/(0.5+1.75+0.25+1)
    # coarse (target pooled to 1): BCE ln2; tversky TP=0.5 FP=0 FN=0.5 -> 1 - 1.5/1.75
    tv_main = 1 - 1.5 / 3.5
    tv_coarse = 1 - 1.5 / 1.75
    want = (LN2 + 0.5 * tv_main) + 0.5 * (LN2 + 0.5 * tv_coarse)
    assert total.item() == pytest.approx(want, rel=1e-6)
    assert float(parts["bce"]) == pytest.approx(1.5 * LN2, rel=1e-6)
    assert float(parts["tversky"]) == pytest.approx(tv_main + 0.5 * tv_coarse, rel=1e-6)
    total.backward()
    assert main.grad is not None and coarse.grad is not None
    assert coarse.grad.abs().sum() > 0


def test_single_output_and_errors() -> None:
    crit = HeatmapLoss(TrainConfig(losses={"bce": 2.0}, pos_weight=1.0))
    total, _ = crit(_vol([0.0, 0.0]), _vol([1.0, 0.0]))
    assert total.item() == pytest.approx(2 * LN2, rel=1e-6)
    with pytest.raises(KeyError, match="unknown loss"):
        HeatmapLoss(TrainConfig(losses={"nope": 1.0}))
    with pytest.raises(ValueError, match="empty"):
        HeatmapLoss(TrainConfig(losses={}))
    with pytest.raises(ValueError, match="differ"):
        crit(_vol([0.0, 0.0]), _vol([1.0, 0.0, 0.0]))
    assert {"bce", "focal", "tversky", "jsd"} <= set(LOSSES.names())
