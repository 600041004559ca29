"""Optimiser, learning-rate schedule and mixed-precision settings of a training run."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch
from torch import nn

from byu_motor.config import Config

if TYPE_CHECKING:
    from timm.scheduler import CosineLRScheduler

AMP_MODES = ("fp16", "bf16", "none")


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW over ``model``'s trainable parameters (``train.lr``, ``train.adam_eps``, default betas 0.9, 0.999);
    biases and norm weights (1-D) get no weight decay, the others ``train.weight_decay``."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.train.lr, eps=cfg.train.adam_eps)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config) -> CosineLRScheduler:
    """timm's cosine schedule with linear warmup, stepped per optimiser step (``step_update(step)``).

    With ``lr``, ``w`` = ``warmup_steps``, ``n`` = ``steps``, ``lr0`` = ``warmup_lr_init`` and ``lr_min`` =
    ``min_lr`` (the seed: ``lr0`` = 0.01 x lr, ``lr_min`` = 0.005 x lr, ``w`` 3000, ``n`` 32000), the rate
    after ``s`` optimiser steps is ``lr0 + s (lr - lr0) / w`` for ``s < w``, then
    ``lr_min + (lr - lr_min) (1 + cos(pi (s - w) / (n - w))) / 2``, reaching ``lr_min`` at ``s = n``.
    """
    from timm.scheduler import CosineLRScheduler

    t = cfg.train
    warmup = max(0, min(int(t.warmup_steps), int(t.steps) - 1))
    return CosineLRScheduler(
        optimizer,
        t_initial=max(1, int(t.steps) - warmup),
        lr_min=t.min_lr,
        warmup_t=warmup,
        warmup_lr_init=t.warmup_lr_init,
        warmup_prefix=True,  # the cosine starts after the warmup and ends exactly at train.steps
        t_in_epochs=False,
    )


def resolve_amp(amp: str, device: torch.device) -> str:
    """The effective AMP mode: ``fp16`` becomes ``none`` on CPU (no fp16 autocast/GradScaler there).

    Raises:
        ValueError: for an unknown mode, naming it.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"train.amp={amp!r} is not one of {AMP_MODES}")
    if amp == "fp16" and device.type != "cuda":
        return "none"
    return amp


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of an effective AMP mode (:func:`resolve_amp`); a no-op for ``none``."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)
