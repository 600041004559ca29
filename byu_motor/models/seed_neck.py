"""The 3rd-place solution's neck, decoder and head: ``factorized_fpn`` (registry ``NECKS``) and ``conv3`` (``HEADS``).

``factorized_fpn`` brings every other encoder level to the target level's resolution through a small
conv-GELU-LayerNorm-conv branch, resizes it by interpolation and concatenates it with the target level
(their ``FactorizedFPN3d``); one U-Net decoder block with scSE attention then merges the next deeper level
(their smp-3D ``UnetDecoder`` with ``n_blocks=1``). ``conv3`` is their head: one 3x3x3 conv to a logit,
bias at the logit of a prior (5e-5 -> -9.9).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.models.heads import HEADS
from byu_motor.models.necks import NECKS, ConvNormAct, _Neck, upsample_to

BRANCH_NORMS = ("layernorm", "batch", "none")
BRANCH_ACTS = ("gelu", "relu", "silu")


class ChannelLayerNorm3d(nn.LayerNorm):
    """LayerNorm over the channels of each voxel of ``[B, C, D, H, W]`` (affine, eps 1e-5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, D, H, W] -> [B, C, D, H, W]``, each voxel's C values normalised."""
        return super().forward(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


def _branch_norm(norm: str, channels: int) -> nn.Module:
    if norm == "layernorm":
        return ChannelLayerNorm3d(channels)
    if norm == "batch":
        return nn.BatchNorm3d(channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown branch norm {norm!r}; choose one of {BRANCH_NORMS}")


def _branch_act(act: str) -> nn.Module:
    acts = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
    if act not in acts:
        raise ValueError(f"unknown branch activation {act!r}; choose one of {BRANCH_ACTS}")
    return acts[act]()


def factor_branch(
    in_channels: int, out_channels: int, norm: str = "layernorm", act: str = "gelu"
) -> nn.Module:
    """Conv3d k3 (C_in -> 2m, bias) -> act -> norm -> Conv3d k3 (2m -> m, bias); ``m = out_channels``."""
    return nn.Sequential(
        nn.Conv3d(in_channels, 2 * out_channels, 3, padding=1),
        _branch_act(act),
        _branch_norm(norm, 2 * out_channels),
        nn.Conv3d(2 * out_channels, out_channels, 3, padding=1),
    )


class SCSE3d(nn.Module):
    """Concurrent spatial and channel squeeze-excitation: ``x * cSE(x) + x * sSE(x)``.

    cSE: global average -> 1x1x1 conv C -> C/r -> ReLU -> 1x1x1 conv -> sigmoid; sSE: 1x1x1 conv C -> 1 -> sigmoid.

    Args:
        channels: input and output channels.
        reduction: channel reduction of cSE (at least one channel remains).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        mid = max(1, channels // reduction)
        self.cse = nn.Sequential(
            nn.AdaptiveAvgPool3d(1),
            nn.Conv3d(channels, mid, 1),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, channels, 1),
            nn.Sigmoid(),
        )
        self.sse = nn.Sequential(nn.Conv3d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, D, H, W] -> [B, C, D, H, W]``."""
        return x * self.cse(x) + x * self.sse(x)


class FactorizedFPN(_Neck):
    """Every level brought to the target level by its own branch and concatenated; then one decoder block.

    Output (main): ``decoder(cat[up2(deeper), scse(cat[target, branch_i(level_i) resized ...])])``, at the
    target level's stride (then upsampled by conv blocks if the output stride is finer than every level).

    Args:
        in_channels: encoder ``out_channels`` per level (shallow to deep).
        strides: encoder ``strides`` per level.
        out_stride: output stride (sz, sy, sx); picks the target level.
        out_channels: channels of the decoder block (the seed: 192); 0 = no decoder, the fused map is output.
        norm: normalisation of the decoder convs (``"batch"`` in the seed).
        act: activation of the decoder convs (``"relu"`` in the seed).
        deep_supervision: also return the raw deeper level (the decoder's input) as a coarser map.
        target_level: level index (negative counts from the end) that must match ``out_stride``; ``None``
            takes the level ``out_stride`` names.
        branch_channels: width m of every branch (32 for ResNeXt/DenseNet); ``None`` = that level's own width.
        branch_norm: ``"layernorm"`` (per voxel over channels), ``"batch"`` or ``"none"``.
        branch_act: ``"gelu"``, ``"relu"`` or ``"silu"``.
        interpolation: ``F.interpolate`` mode resizing each branch to the target size (``"trilinear"``).
        attention: ``"scse"`` or ``None`` around the decoder convs.
        encoder: encoder name for error messages.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[Sequence[int]],
        out_stride: Sequence[int],
        out_channels: int = 192,
        norm: str = "batch",
        act: str = "relu",
        deep_supervision: bool = False,
        target_level: int | None = None,
        branch_channels: int | None = 32,
        branch_norm: str = "layernorm",
        branch_act: str = "gelu",
        interpolation: str = "trilinear",
        attention: str | None = "scse",
        encoder: str = "encoder",
    ):
        super().__init__(strides, out_stride, encoder)
        n, lvl = len(in_channels), self.level
        if target_level is not None and target_level % n != lvl:
            raise ValueError(
                f"factorized_fpn: target_level {target_level} of encoder {encoder!r} has stride "
                f"{self.enc_strides[target_level % n]}, not the output stride {tuple(out_stride)}"
            )
        if attention not in (None, "scse"):
            raise ValueError(f"unknown attention {attention!r}; choose 'scse' or None")
        self.interpolation = interpolation
        self.others = [i for i in range(n) if i != lvl]
        widths = [branch_channels or in_channels[i] for i in self.others]
        self.branches = nn.ModuleList(
            factor_branch(in_channels[i], w, branch_norm, branch_act) for i, w in zip(self.others, widths)
        )
        fused = in_channels[lvl] + sum(widths)
        self.deeper = lvl + 1 if lvl + 1 < n else None
        cat = fused + (in_channels[self.deeper] if self.deeper is not None else 0)
        self.decoder: nn.Module | None = None
        out = fused
        if out_channels:

            def att(c: int) -> nn.Module:
                return SCSE3d(c) if attention else nn.Identity()

            self.decoder = nn.Sequential(
                att(cat),
                ConvNormAct(cat, out_channels, 3, norm, act),
                ConvNormAct(out_channels, out_channels, 3, norm, act),
                att(out_channels),
            )
            out = out_channels
        elif self.deeper is not None:
            raise ValueError(
                "factorized_fpn without a decoder (out_channels=0) needs the deepest level as target"
            )
        tail_st = self._build_tail(out, norm, act, False)
        self.out_channels = [out] * (len(tail_st) + 1)
        self.strides = tail_st[::-1] + [self.enc_strides[lvl]]
        self.deep_supervision = deep_supervision and self.deeper is not None
        if self.deep_supervision:
            self.out_channels.append(in_channels[self.deeper])
            self.strides.append(self.enc_strides[self.deeper])

    def _resize(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if tuple(x.shape[2:]) == tuple(size):
            return x
        mode = self.interpolation
        align = False if mode in ("linear", "bilinear", "trilinear", "bicubic") else None
        return F.interpolate(x, size=tuple(size), mode=mode, align_corners=align)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``features`` (shallow to deep, [B, C_i, D_i, H_i, W_i]) -> ``[main, (finer tail), (deeper level)]``.

        The list is ordered fine to coarse: any upsampled tail maps first, then the target-level map, then
        (deep supervision) the raw deeper level.
        """
        target = features[self.level]
        size = target.shape[2:]
        parts = [target]
        for i, branch in zip(self.others, self.branches):
            parts.append(self._resize(self._run(branch, features[i]), size))
        x = torch.cat(parts, dim=1)
        if self.decoder is not None:
            if self.deeper is not None:
                x = torch.cat([upsample_to(features[self.deeper], size), x], dim=1)
            x = self._run(self.decoder, x)
        outs = self._apply_tail(x)[::-1] + [x]
        if self.deep_supervision:
            outs.append(features[self.deeper])
        return outs


@NECKS.register("factorized_fpn")
def factorized_fpn(**kwargs) -> FactorizedFPN:
    """The seed's FactorizedFPN3d + one scSE U-Net decoder block (see :class:`FactorizedFPN`)."""
    return FactorizedFPN(**kwargs)


class Conv3Head(nn.Module):
    """One 3x3x3 conv to a logit (Xavier-uniform weights, bias = logit(prior)); 1x1x1 logits on coarser maps.

    Args:
        in_channels: channels of the neck outputs ``[main, coarser...]``.
        deep_supervision: in training mode also return logits of the coarser maps.
        prior: initial foreground probability the bias encodes (the seed: 5e-5 -> -9.90).
        norm: unused (the common head signature).
        act: unused (the common head signature).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        deep_supervision: bool = False,
        prior: float = 5e-5,
        norm: str = "batch",
        act: str = "relu",
    ):
        super().__init__()
        if not 0.0 < prior < 1.0:
            raise ValueError(f"head prior must be in (0, 1), got {prior}")
        bias = math.log(prior / (1.0 - prior))
        self.deep_supervision = deep_supervision
        self.out = nn.Conv3d(in_channels[0], 1, 3, padding=1)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.constant_(self.out.bias, bias)
        self.aux = nn.ModuleList(nn.Conv3d(c, 1, 1) for c in (in_channels[1:] if deep_supervision else []))
        for conv in self.aux:
            nn.init.constant_(conv.bias, bias)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """``[main, coarser...]`` -> logits [B, 1, D, H, W] (a list when training with deep supervision)."""
        main = self.out(features[0])
        if self.training and self.deep_supervision and len(self.aux):
            return [main] + [conv(f) for conv, f in zip(self.aux, features[1:])]
        return main


@HEADS.register("conv3")
def conv3_head(**kwargs) -> Conv3Head:
    """The seed's head: one 3x3x3 conv, bias at logit(prior) (see :class:`Conv3Head`)."""
    return Conv3Head(**kwargs)
