"""The seed's optimiser and schedule: the learning rate formula, accumulation, per-micro-batch EMA, eps."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from byu_motor.presets import get_preset
from byu_motor.train.distributed import DistInfo
from byu_motor.train.losses import HeatmapLoss
from byu_motor.train.optim import build_optimizer, build_scheduler
from byu_motor.train.step import optimizer_step
from tests.train.test_engine import tiny_config


def _lr_at(cfg, steps: list[int]) -> list[float]:
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    sched = build_scheduler(opt, cfg)
    out = []
    for s in steps:
        sched.step_update(s)
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("name", ["seed_resnext50", "seed_densenet121", "seed_x3d_m"])
def test_seed_schedule_matches_the_formula(name: str) -> None:
    t = get_preset(name).train
    lr, w, n = t.lr, t.warmup_steps, t.steps
    lr0, floor = 0.01 * lr, 0.005 * lr
    mid = w + (n - w) // 3

    def cosine(s: int) -> float:
        return floor + (lr - floor) * (1 + math.cos(math.pi * (s - w) / (n - w))) / 2

    got = _lr_at(get_preset(name), [0, w // 2, w, 3000, mid, n])
    want = [lr0, lr0 + (w // 2) * (lr - lr0) / w, lr, cosine(3000) if w <= 3000 else None, cosine(mid), floor]
    for s, g, e in zip([0, w // 2, w, 3000, mid, n], got, want, strict=True):
        if e is not None:
            assert g == pytest.approx(e, rel=1e-9), (name, s)
    if w == 3000:  # ResNeXt, DenseNet: the peak right after the warmup
        assert got[3] == pytest.approx(lr, rel=1e-12)


def test_adamw_uses_the_configured_eps() -> None:
    cfg = tiny_config(adam_eps=1e-7)
    opt = build_optimizer(nn.Linear(2, 2), cfg)
    assert {g["eps"] for g in opt.param_groups} == {1e-7}
    assert get_preset("seed_resnext50").train.adam_eps == 1e-7


def _fake_trainer(cfg, batches: list[dict], seed: int = 0):
    """What :func:`optimizer_step` reads of a Trainer, around a linear model (a 1x1x1 conv, no batch norm)."""
    from timm.utils import ModelEmaV3

    torch.manual_seed(seed)
    core = nn.Conv3d(1, 1, 1).double()
    return SimpleNamespace(
        cfg=cfg,
        core=core,
        model=core,
        ema=ModelEmaV3(core, decay=cfg.train.ema) if cfg.train.ema > 0 else None,
        optimizer=build_optimizer(core, cfg),
        scheduler=build_scheduler(build_optimizer(core, cfg), cfg),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        criterion=HeatmapLoss(cfg.train),
        device=torch.device("cpu"),
        layout=torch.contiguous_format,
        amp="none",
        info=DistInfo(),
        step=0,
        _batches=iter(batches),
    )


def _batches(n: int, batch: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randn(batch, 1, 2, 4, 4, generator=g, dtype=torch.float64),
            "target": torch.rand(batch, 1, 2, 4, 4, generator=g, dtype=torch.float64),
        }
        for _ in range(n)
    ]


def test_accumulating_two_batches_of_one_equals_one_batch_of_two() -> None:
    losses = {"bce": 1.0}
    big = _batches(3, 2, seed=1)  # three optimiser steps of batch 2
    halves = [{k: v[i : i + 1] for k, v in b.items()} for b in big for i in range(2)]
    one = _fake_trainer(tiny_config(grad_accum=1, ema=0.0, losses=losses, pos_weight=1.0, clip_grad=0.0), big)
    two = _fake_trainer(
        tiny_config(grad_accum=2, ema=0.0, losses=losses, pos_weight=1.0, clip_grad=0.0), halves
    )
    before = one.core.weight.detach().clone()
    for _ in range(3):
        loss_one, loss_two = optimizer_step(one), optimizer_step(two)
        torch.testing.assert_close(loss_one, loss_two, rtol=1e-6, atol=1e-7)  # float32 step loss
    assert one.step == two.step == 3
    for a, b in zip(one.core.parameters(), two.core.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert float((one.core.weight.detach() - before).abs().max()) > 1e-4  # the steps did move the weights


def test_ema_is_updated_after_every_micro_batch() -> None:
    d = 0.5
    cfg = tiny_config(grad_accum=2, ema=d, ema_every_micro=True, losses={"bce": 1.0}, pos_weight=1.0)
    tr = _fake_trainer(cfg, _batches(6, 1, seed=2))
    weights = []  # the raw weights after each optimiser step
    for _ in range(3):
        optimizer_step(tr)
        weights.append(tr.core.weight.detach().clone())
    w1, w2, w3 = weights
    # timm's EMA copies the weights while its step count is <= 1, then decays by d; the micro-batch before
    # each step's update sees the weights before that step
    e2 = d * w1 + (1 - d) * w2
    e3 = d * (d * e2 + (1 - d) * w2) + (1 - d) * w3
    torch.testing.assert_close(tr.ema.module.weight, e3, rtol=1e-9, atol=1e-12)
    # per optimiser step only: one update per step
    cfg_step = tiny_config(grad_accum=2, ema=d, ema_every_micro=False, losses={"bce": 1.0}, pos_weight=1.0)
    per_step = _fake_trainer(cfg_step, _batches(6, 1, seed=2))
    for _ in range(3):
        optimizer_step(per_step)
    torch.testing.assert_close(per_step.ema.module.weight, d * e2 + (1 - d) * w3, rtol=1e-9, atol=1e-12)
