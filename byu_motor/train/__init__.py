"""Training: heatmap losses and the training engine (AdamW + cosine warmup, AMP, EMA, DDP, resume)."""

from __future__ import annotations

from byu_motor.train.engine import StopTraining, train
from byu_motor.train.hooks import Hook
from byu_motor.train.losses import LOSSES, HeatmapLoss
from byu_motor.train.trainer import Trainer

__all__ = ["LOSSES", "HeatmapLoss", "Hook", "StopTraining", "Trainer", "train"]
