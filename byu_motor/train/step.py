"""One optimiser step of the :class:`~byu_motor.train.trainer.Trainer`: micro-batches, scaler, clipping, EMA.

The seed's recipe (``../shared/docs/SEED_RECIPE.md`` 5.6), all per optimiser step: ``grad_accum``
micro-batches whose losses are each divided by ``grad_accum`` (so the accumulated gradient is that of the mean
loss over the effective batch), fp16 loss scaling, optional clipping of the unscaled gradient norm
(``train.clip_grad`` 0: off, as in the seed), one optimiser and one scheduler step. The EMA follows every
optimiser step, or with ``train.ema_every_micro`` every micro-batch as the seed's Lightning callback did:
with accumulation ``k`` its decay ``d`` (0.99 in the seed) then acts ``k`` times per optimiser step, the first
``k - 1`` times towards the weights before the step (an effective ``d ** k`` = 0.9801 per step for ``k`` 2).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np
import torch

from byu_motor.train.optim import autocast

if TYPE_CHECKING:
    from byu_motor.train.trainer import Trainer


def optimizer_step(trainer: Trainer) -> torch.Tensor:
    """Run ``grad_accum`` micro-batches and one optimiser step of ``trainer``; advance ``trainer.step``.

    Returns:
        this process's mean loss over the micro-batches (a device tensor: reading it syncs).
    """
    t = trainer.cfg.train
    trainer.optimizer.zero_grad(set_to_none=True)
    step_loss = torch.zeros((), device=trainer.device)
    for micro in range(t.grad_accum):
        step_loss += micro_step(trainer, micro) / t.grad_accum
        if trainer.ema is not None and t.ema_every_micro and micro < t.grad_accum - 1:
            trainer.ema.update(trainer.core, step=trainer.step)
    if t.clip_grad and t.clip_grad > 0:
        trainer.scaler.unscale_(trainer.optimizer)
        torch.nn.utils.clip_grad_norm_(trainer.core.parameters(), t.clip_grad)
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    trainer.step += 1
    trainer.scheduler.step_update(trainer.step)
    if trainer.ema is not None:
        trainer.ema.update(trainer.core, step=trainer.step)
    return step_loss


def micro_step(trainer: Trainer, micro: int) -> torch.Tensor:
    """Forward and backward of micro-batch ``micro`` of the current step; returns its (detached) loss."""
    from byu_motor.data.dataset import mix_batch

    t, info = trainer.cfg.train, trainer.info
    batch = next(trainer._batches)
    # batch mixing draws from a generator keyed by (seed, rank, step): identical after a resume
    batch = mix_batch(batch, t, np.random.default_rng([t.seed, info.rank, trainer.step, micro]))
    x = batch["image"].to(trainer.device, non_blocking=True).contiguous(memory_format=trainer.layout)
    y = batch["target"].to(trainer.device, non_blocking=True)
    skip_sync = info.enabled and micro < t.grad_accum - 1  # DDP all-reduces on the last micro-step only
    with trainer.model.no_sync() if skip_sync else contextlib.nullcontext():
        with autocast(trainer.amp, trainer.device):
            out = trainer.model(x)
        loss, _ = trainer.criterion(out, y)
        trainer.scaler.scale(loss / t.grad_accum).backward()
    return loss.detach()
