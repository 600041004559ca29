"""CropClassifier: the second stage's small 3D CNN, one logit per crop centred on a detector candidate."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class CropClassifier(nn.Module):
    """Conv-BN-ReLU blocks (max-pool between them), global average pooling, dropout, one linear logit.

    Args:
        widths: output channels of each conv block; a 2x max-pool follows every block but the last.
        stem_stride: stride of the first conv.
        dropout: dropout before the linear layer.
        in_channels: input channels (1 for a tomogram).

    Shapes:
        ``[B, C, D, H, W]`` normalised crops -> ``[B]`` logits.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 64),
        stem_stride: int = 1,
        dropout: float = 0.3,
        in_channels: int = 1,
    ):
        super().__init__()
        if not widths or min(widths) < 1:
            raise ValueError(f"rescorer widths must be positive channel counts, got {tuple(widths)!r}")
        if stem_stride < 1:
            raise ValueError(f"rescorer stem_stride must be >= 1, got {stem_stride}")
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [
                nn.Conv3d(c, w, 3, stride=stem_stride if i == 0 else 1, padding=1, bias=False),
                nn.BatchNorm3d(w),
                nn.ReLU(inplace=True),
            ]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool3d(2, ceil_mode=True))
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, D, H, W]`` -> ``[B]`` logits."""
        return self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))[:, 0]


def create_rescorer(cfg) -> CropClassifier:
    """Build the classifier described by a :class:`byu_motor.config.RescoreConfig`."""
    return CropClassifier(cfg.widths, cfg.stem_stride, cfg.dropout)
