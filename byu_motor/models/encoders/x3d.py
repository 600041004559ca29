"""X3D encoders (Feichtenhofer 2020) rewritten for isotropic 3D volumes: every axis is downsampled by default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from byu_motor.models.encoders._registry import ENCODERS
from byu_motor.models.layers import (
    StagedEncoder,
    as_triple,
    check_no_extra_kwargs,
    cumulative_strides,
    load_weights,
)


def _round_width(width: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` (at least ``divisor``), not below 90% of it."""
    rounded = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * width else rounded


class SqueezeExcite3d(nn.Module):
    """Squeeze-and-excitation: global average over (D, H, W), 1x1x1 reduce, ReLU, 1x1x1 expand, sigmoid gate.

    Args:
        channels: input and output channels.
        ratio: reduced width as a fraction of ``channels`` (rounded to a multiple of 8).
    """

    def __init__(self, channels: int, ratio: float = 1 / 16):
        super().__init__()
        reduced = _round_width(channels * ratio)
        self.fc1 = nn.Conv3d(channels, reduced, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv3d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, D, H, W] -> [B, C, D, H, W]`` (channels rescaled)."""
        gate = self.fc2(self.act(self.fc1(x.mean(dim=(2, 3, 4), keepdim=True))))
        return x * torch.sigmoid(gate)


class X3DBlock(nn.Module):
    """X3D residual bottleneck: 1x1x1 expand, BN, ReLU; depthwise 3x3x3 (strided), BN, [SE], SiLU;
    1x1x1 project, BN; add the (projected) shortcut; ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        inner_channels: expanded width of the depthwise conv.
        stride: per-axis stride of the depthwise conv.
        use_se: add squeeze-excitation after the depthwise conv.
        se_ratio: SE reduction ratio.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        inner_channels: int,
        stride: tuple[int, int, int] = (1, 1, 1),
        use_se: bool = False,
        se_ratio: float = 1 / 16,
    ):
        super().__init__()
        self.conv_a = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.bn_a = nn.BatchNorm3d(inner_channels)
        self.conv_b = nn.Conv3d(
            inner_channels, inner_channels, 3, stride=stride, padding=1, groups=inner_channels, bias=False
        )
        self.bn_b = nn.BatchNorm3d(inner_channels)
        self.se = SqueezeExcite3d(inner_channels, se_ratio) if use_se else nn.Identity()
        self.conv_c = nn.Conv3d(inner_channels, out_channels, 1, bias=False)
        self.bn_c = nn.BatchNorm3d(out_channels)
        # zero-init the last BN so each block starts as identity (X3D's "zero_init_final_bn"): eases training
        nn.init.zeros_(self.bn_c.weight)
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels or stride != (1, 1, 1):
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm3d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)
        self.silu = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in, D, H, W] -> [B, out, D/sz, H/sy, W/sx]``."""
        y = self.relu(self.bn_a(self.conv_a(x)))
        y = self.silu(self.se(self.bn_b(self.conv_b(y))))
        y = self.bn_c(self.conv_c(y))
        return self.relu(y + self.shortcut(x))


def _stem(in_channels: int, stem_width: int, stem: tuple[int, int, int]) -> nn.Sequential:
    """X3D's factorised stem: conv 1x3x3 with in-plane stride, depthwise conv 5x1x1 with z stride, BN, ReLU."""
    return nn.Sequential(
        nn.Conv3d(
            in_channels,
            stem_width,
            (1, 3, 3),
            stride=(1, stem[1], stem[2]),
            padding=(0, 1, 1),
            bias=False,
        ),
        nn.Conv3d(
            stem_width,
            stem_width,
            (5, 1, 1),
            stride=(stem[0], 1, 1),
            padding=(2, 0, 0),
            groups=stem_width,
            bias=False,
        ),
        nn.BatchNorm3d(stem_width),
        nn.ReLU(inplace=True),
    )


def _stage(
    channels: int, width: int, depth: int, stride: tuple[int, int, int], expansion: float, se_ratio: float
) -> nn.Sequential:
    """``depth`` X3D blocks, strided in the first; SE on every other block (the 1st, 3rd, ...)."""
    inner = int(round(expansion * width))
    blocks = [
        X3DBlock(
            channels if i == 0 else width,
            width,
            inner,
            stride=stride if i == 0 else (1, 1, 1),
            use_se=i % 2 == 0,
            se_ratio=se_ratio,
        )
        for i in range(depth)
    ]
    return nn.Sequential(*blocks)


def build_x3d(
    name: str,
    *,
    widths: Sequence[int] = (24, 48, 96, 192),
    depths: Sequence[int] = (3, 5, 11, 7),
    stem_width: int | None = None,
    expansion: float = 2.25,
    se_ratio: float = 1 / 16,
    stage_strides: Sequence[int | Sequence[int]] = (2, 2, 2, 2),
    in_channels: int = 1,
    stem_stride: int | Sequence[int] = 2,
    grad_checkpointing: bool = False,
    pretrained_file: str | None = None,
    **kwargs: Any,
) -> StagedEncoder:
    """X3D encoder: stem, then 4 stages of ``X3DBlock``; 5 feature maps (stem and each stage).

    Stem: conv 1x3x3 with in-plane stride (sy, sx), then depthwise conv 5x1x1 with stride sz, BN, ReLU
    (X3D's factorised stem; z is strided in the depthwise conv). Each stage strides in its first block.
    SE is on every other block (the 1st, 3rd, ...), inner width ``expansion * width``.

    Args:
        name: encoder name for messages.
        widths: output channels of the 4 stages.
        depths: blocks per stage.
        stem_width: stem channels (default ``widths[0]``).
        expansion: inner width factor of the bottlenecks.
        se_ratio: SE reduction ratio.
        stage_strides: per-stage stride (int or ``(z, y, x)``), e.g. ``(2, (1, 2, 2), 2, 2)``.
        in_channels: input channels.
        stem_stride: per-axis stride of the stem.
        grad_checkpointing: checkpoint each stage while training.
        pretrained_file: local state dict of this encoder (same settings).

    Returns:
        Encoder with channels ``[stem_width, *widths]``.
    """
    check_no_extra_kwargs(name, kwargs)
    if not (len(widths) == len(depths) == len(stage_strides)):
        raise ValueError(f"encoder {name!r}: widths, depths and stage_strides need the same length")
    stem = as_triple(stem_stride, "stem_stride")
    strides = [as_triple(s, "stage_strides") for s in stage_strides]
    stem_width = stem_width or widths[0]
    stages: list[nn.Module] = [_stem(in_channels, stem_width, stem)]
    channels = stem_width
    for width, depth, stride in zip(widths, depths, strides):
        stages.append(_stage(channels, width, depth, stride, expansion, se_ratio))
        channels = width
    encoder = StagedEncoder(
        stages, [stem_width, *widths], cumulative_strides(stem, strides), grad_checkpointing
    )
    for m in encoder.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    if pretrained_file:
        load_weights(encoder, pretrained_file)
    return encoder


@ENCODERS.register("x3d_tiny", tiny=True)
def x3d_tiny(**kwargs: Any) -> StagedEncoder:
    """Tiny X3D for tests: widths 8-16-24-32, one block per stage; channels 8, 8, 16, 24, 32."""
    return build_x3d("x3d_tiny", widths=(8, 16, 24, 32), depths=(1, 1, 1, 1), **kwargs)


@ENCODERS.register("x3d_s")
def x3d_s(**kwargs: Any) -> StagedEncoder:
    """X3D-S: widths 24-48-96-192, depths 3-5-11-7 (the paper's S/M block layout); channels 24, 24, ..., 192."""
    return build_x3d("x3d_s", **kwargs)


@ENCODERS.register("x3d_m")
def x3d_m(**kwargs: Any) -> StagedEncoder:
    """X3D-M: 4/3 wider than S (widths 32-64-128-256, depths 3-5-11-7).

    In the video paper S and M share the network and differ by input size; our inputs are fixed by the
    patch and spacing, so M instead gets more width, which the detector can use at the same resolution.
    """
    return build_x3d("x3d_m", widths=(32, 64, 128, 256), **kwargs)
