"""The seed's 2D neck, decoder block and head: factorised FPN to stride 16 (bilinear), one U-Net block, a logit map.

``FactorizedFPN2d`` brings every non-target encoder level to the target level (stride 16) through a
conv-GELU-LayerNorm-conv branch and a bilinear resize, and concatenates them with the target level;
``UNetBlock2d`` merges the deepest level into it (pixel-shuffle upsampler); ``LogitHead2d`` maps the result
to one logit per stride-16 cell (their ``FactorizedFPN2d`` + ``UnetBlock`` + ``seg_head``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from byu_motor.models.registry import Registry

NECKS_2D: Registry[nn.Module] = Registry("2D neck")
HEADS_2D: Registry[nn.Module] = Registry("2D head")


def branch_2d(in_channels: int, channels: int) -> nn.Sequential:
    """Conv2d 3x3 (C_in -> m) -> GELU -> LayerNorm2d -> Conv2d 3x3 (m -> m); ``m = channels``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1),
        nn.GELU(),
        LayerNorm2d(channels),
        nn.Conv2d(channels, channels, 3, padding=1),
    )


class PixelShuffleUp2d(nn.Sequential):
    """x2 upsampler: 1x1 conv C -> 4 C_out (ICNR init), LayerNorm2d, GELU, pixel shuffle (no blur)."""

    def __init__(self, in_channels: int, out_channels: int):
        conv = nn.Conv2d(in_channels, out_channels * 4, 1)
        # ICNR: the 4 sub-pixel kernels start equal, so the shuffle starts as a nearest-neighbour upsample
        base = torch.empty(out_channels, in_channels, 1, 1)
        nn.init.kaiming_normal_(base)
        with torch.no_grad():
            conv.weight.copy_(base.repeat_interleave(4, dim=0))
        super().__init__(conv, LayerNorm2d(out_channels * 4), nn.GELU(), nn.PixelShuffle(2))


class UNetBlock2d(nn.Module):
    """One decoder block: ``up(deep) || LayerNorm2d(skip)`` -> GELU -> conv3x3 -> GELU -> conv3x3 -> GELU.

    Args:
        deep_channels: channels C of the deeper map (stride 2s); it is upsampled to C / 2 channels.
        skip_channels: channels of the skip map (stride s).
        out_channels: width of the two convolutions.
    """

    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = PixelShuffleUp2d(deep_channels, deep_channels // 2)
        self.skip_norm = LayerNorm2d(skip_channels)
        self.conv1 = nn.Conv2d(deep_channels // 2 + skip_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``deep`` [B, C, h, w], ``skip`` [B, C_s, 2h, 2w] -> [B, out_channels, 2h, 2w]."""
        up = self.up(deep)[..., : skip.shape[-2], : skip.shape[-1]]
        x = F.gelu(torch.cat([up, self.skip_norm(skip)], dim=1))
        return F.gelu(self.conv2(F.gelu(self.conv1(x))))


class FactorizedFPN2d(nn.Module):
    """Encoder levels -> one map at the target stride, then one decoder block with the next deeper level.

    Args:
        in_channels: channels of the encoder levels, fine to coarse.
        strides: in-plane stride of each level.
        out_stride: the target stride (one of ``strides``, not the last).
        branch_channels: width ``m`` of each non-target level's branch.
        decoder_channels: width of the decoder block (its output).

    Attributes:
        out_channels: ``[decoder_channels]``; ``stride``: ``out_stride``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        out_stride: int = 16,
        branch_channels: int = 64,
        decoder_channels: int = 256,
    ):
        super().__init__()
        strides = [int(s) for s in strides]
        if out_stride not in strides[:-1]:
            raise ValueError(
                f"2D neck: target stride {out_stride} is not a non-final encoder stride {strides}"
            )
        self.target = strides.index(out_stride)
        self.branches = nn.ModuleDict(
            {str(i): branch_2d(c, branch_channels) for i, c in enumerate(in_channels) if i != self.target}
        )
        fused = in_channels[self.target] + branch_channels * (len(in_channels) - 1)
        self.decoder = UNetBlock2d(in_channels[self.target + 1], fused, decoder_channels)
        self.out_channels = [decoder_channels]
        self.stride = int(out_stride)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Encoder maps (fine to coarse) -> [B, decoder_channels, H / out_stride, W / out_stride]."""
        size = features[self.target].shape[-2:]
        parts = [features[self.target]]
        for key, branch in self.branches.items():
            y = branch(features[int(key)])
            parts.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        return self.decoder(features[self.target + 1], torch.cat(parts, dim=1))


class LogitHead2d(nn.Sequential):
    """conv3x3 (C) -> LayerNorm2d -> GELU -> conv1x1 -> 1 logit per cell, bias at ``logit(prior)``."""

    def __init__(self, in_channels: int, prior: float = 5e-5):
        last = nn.Conv2d(in_channels, 1, 1)
        nn.init.constant_(last.bias, math.log(prior / (1.0 - prior)))
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, padding=1), LayerNorm2d(in_channels), nn.GELU(), last
        )


@NECKS_2D.register("factorized_fpn")
def factorized_fpn_2d(**kwargs) -> FactorizedFPN2d:
    """The seed's FactorizedFPN2d + one U-Net block (see :class:`FactorizedFPN2d`)."""
    return FactorizedFPN2d(**kwargs)


@HEADS_2D.register("conv3")
def conv3_head_2d(in_channels: int, prior: float = 5e-5) -> LogitHead2d:
    """The seed's 2D segmentation head (see :class:`LogitHead2d`)."""
    return LogitHead2d(in_channels, prior)
