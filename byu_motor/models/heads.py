"""Heads: map neck outputs to one heatmap logit channel (registry ``HEADS``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from byu_motor.models.necks import ConvNormAct
from byu_motor.models.registry import Registry

HEADS: Registry[nn.Module] = Registry("head")


def _init_prior(conv: nn.Conv3d, prior: float) -> None:
    # Motors fill a tiny fraction of the heatmap: starting every logit at logit(prior) instead of 0 keeps
    # the first BCE steps from being dominated by a flood of confident-looking background gradients.
    nn.init.constant_(conv.bias, math.log(prior / (1.0 - prior)))


class HeatmapHead(nn.Module):
    """Conv block + 1x1x1 conv to one logit channel; optional 1x1x1 logits on coarser maps.

    Args:
        in_channels: channels of the neck outputs ``[main, coarser...]``.
        deep_supervision: in training mode also return logits of the coarser neck maps.
        mid_channels: channels of the conv block (default: those of the main map).
        prior: initial foreground probability the output bias encodes (0.01 -> bias -4.6).
        norm: normalisation of the conv block.
        act: activation of the conv block.
        ds_levels: how many coarser maps get auxiliary logits (default: all).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        deep_supervision: bool = False,
        mid_channels: int | None = None,
        prior: float = 0.01,
        norm: str = "batch",
        act: str = "relu",
        ds_levels: int | None = None,
    ):
        super().__init__()
        if not 0.0 < prior < 1.0:
            raise ValueError(f"head prior must be in (0, 1), got {prior}")
        c0 = in_channels[0]
        mid = mid_channels or c0
        self.deep_supervision = deep_supervision
        self.block = ConvNormAct(c0, mid, 3, norm, act)
        self.out = nn.Conv3d(mid, 1, 1)
        _init_prior(self.out, prior)
        coarse = list(in_channels[1:]) if deep_supervision else []
        if ds_levels is not None:
            coarse = coarse[:ds_levels]
        self.aux = nn.ModuleList(nn.Conv3d(c, 1, 1) for c in coarse)
        for conv in self.aux:
            _init_prior(conv, prior)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """``features`` [main, coarser...] -> logits [B, 1, D, H, W] (a list ``[main, coarser...]`` when
        training with deep supervision)."""
        main = self.out(self.block(features[0]))
        if self.training and self.deep_supervision and len(self.aux):
            return [main] + [conv(f) for conv, f in zip(self.aux, features[1:])]
        return main


@HEADS.register("heatmap")
def heatmap(**kwargs) -> HeatmapHead:
    """One-channel heatmap logits (see :class:`HeatmapHead`)."""
    return HeatmapHead(**kwargs)
