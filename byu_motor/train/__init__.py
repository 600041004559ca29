"""Training: heatmap losses and the training engine (AdamW + cosine warmup, AMP, EMA, DDP, resume)."""

from __future__ import annotations

from byu_motor.train.engine import StopTraining, train
from byu_motor.train.losses import LOSSES, HeatmapLoss

__all__ = ["LOSSES", "HeatmapLoss", "StopTraining", "train"]
