"""Necks: turn encoder feature maps into maps at the detector's output stride (registry ``NECKS``).

A neck is built from the encoder's ``out_channels`` and ``strides`` and the wanted output stride; its
``forward(features) -> list[Tensor]`` returns ``[main, coarser_1, ...]`` where ``main`` sits at the output
stride and the coarser maps (for deep supervision) follow from fine to coarse. Attributes
``out_channels: list[int]`` and ``strides: list[tuple[int, int, int]]`` describe that list.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from byu_motor.models.layers import make_norm
from byu_motor.models.registry import Registry

Triple = tuple[int, int, int]

NECKS: Registry[nn.Module] = Registry("neck")

ACTS = ("relu", "silu")


def make_act(act: str) -> nn.Module:
    """An activation layer: ``"relu"`` or ``"silu"``."""
    if act == "relu":
        return nn.ReLU(inplace=True)
    if act == "silu":
        return nn.SiLU(inplace=True)
    raise ValueError(f"unknown activation {act!r}; choose one of {ACTS}")


class ConvNormAct(nn.Sequential):
    """Conv3d (no bias, 'same' padding) -> norm -> activation.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: int or (kd, kh, kw), odd.
        norm: see :func:`make_norm`.
        act: see :func:`make_act`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Triple = 3,
        norm: str = "batch",
        act: str = "relu",
    ):
        k = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        super().__init__(
            nn.Conv3d(in_channels, out_channels, k, padding=tuple(v // 2 for v in k), bias=False),
            make_norm(norm, out_channels),
            make_act(act),
        )


def conv3(in_channels: int, out_channels: int, norm: str, act: str, factorized: bool = False) -> nn.Module:
    """A 3x3x3 conv block, or when ``factorized`` a 1x3x3 in-plane then 3x1x1 depth block (fewer FLOPs)."""
    if factorized:
        return nn.Sequential(
            ConvNormAct(in_channels, out_channels, (1, 3, 3), norm, act),
            ConvNormAct(out_channels, out_channels, (3, 1, 1), norm, act),
        )
    return ConvNormAct(in_channels, out_channels, 3, norm, act)


def match_stride(
    strides: Sequence[Sequence[int]], out_stride: Sequence[int], encoder: str = "encoder"
) -> tuple[int, Triple]:
    """Find the encoder level a neck ends at for ``out_stride``, and the upsampling still needed.

    Args:
        strides: the encoder's cumulative strides per level, shallow to deep, each (sz, sy, sx).
        out_stride: wanted output stride (sz, sy, sx).
        encoder: encoder name, for the error message.

    Returns:
        ``(level, factor)``: the index of the level whose stride equals ``out_stride`` and ``(1, 1, 1)``;
        or, when ``out_stride`` is finer than the shallowest level and divides it, ``(0, shallow // out)``.

    Raises:
        ValueError: naming the encoder and its available strides when neither applies.
    """
    target = tuple(int(v) for v in out_stride)
    levels = [tuple(int(v) for v in s) for s in strides]
    if len(target) != 3 or min(target) < 1:
        raise ValueError(f"output stride must be 3 positive integers (z, y, x), got {out_stride!r}")
    for i, s in enumerate(levels):
        if s == target:
            return i, (1, 1, 1)
    shallow = levels[0]
    if all(s % t == 0 for s, t in zip(shallow, target)):
        return 0, tuple(s // t for s, t in zip(shallow, target))  # type: ignore[return-value]
    raise ValueError(
        f"output stride {target} is not available from encoder {encoder!r}: its feature strides are "
        f"{levels} (a stride finer than the shallowest one must divide it)"
    )


def upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest upsampling of ``x`` [B, C, d, h, w] to spatial ``size`` (D, H, W).

    Nearest keeps cell ``k`` of the coarse map over exactly the fine cells it covers (the Grid
    convention) and is cheap; the conv that follows smooths it.
    """
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(int(s) for s in size), mode="nearest")


def _up_steps(factor: Triple) -> list[Triple]:
    """Split an upsampling factor per axis into steps of at most 2 (a non-power of 2 is one last step)."""
    steps = []
    f = list(factor)
    while any(v > 1 for v in f):
        step = tuple(2 if v % 2 == 0 else v for v in f)
        steps.append(step)
        f = [v // s for v, s in zip(f, step)]
    return steps  # type: ignore[return-value]


class _Neck(nn.Module):
    """Shared parts: stride matching, the upsampling tail below the shallowest level, checkpointing."""

    def __init__(self, strides: Sequence[Sequence[int]], out_stride: Sequence[int], encoder: str):
        super().__init__()
        self.level, self.up_factor = match_stride(strides, out_stride, encoder)
        self.enc_strides = [tuple(int(v) for v in s) for s in strides]
        self.grad_checkpointing = False

    def _run(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # Recomputing the neck's high-resolution blocks in backward saves most of their activation memory.
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def _build_tail(self, channels: int, norm: str, act: str, factorized: bool) -> list[Triple]:
        """Blocks that upsample the shallowest level to the output stride; returns the stride after each."""
        self.tail = nn.ModuleList()
        self.tail_factors = _up_steps(self.up_factor)
        stride = self.enc_strides[self.level]
        tail_strides = []
        for step in self.tail_factors:
            self.tail.append(conv3(channels, channels, norm, act, factorized))
            stride = tuple(s // f for s, f in zip(stride, step))
            tail_strides.append(stride)
        return tail_strides  # type: ignore[return-value]

    def _apply_tail(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for step, block in zip(self.tail_factors, self.tail):
            x = upsample_to(x, [n * f for n, f in zip(x.shape[2:], step)])
            x = self._run(block, x)
            outs.append(x)
        return outs


class UNetNeck(_Neck):
    """U-Net decoder: from the deepest level up to the output level, upsample, concatenate the skip, two convs.

    Decoder channels grow with depth (``out_channels * 2**k``, at most 4x) so the coarse blocks keep
    capacity while the fine, expensive ones stay narrow.

    Args:
        in_channels: encoder ``out_channels`` per level (shallow to deep).
        strides: encoder ``strides`` per level.
        out_stride: output stride (sz, sy, sx).
        out_channels: channels of the output map.
        norm: ``"batch"``, ``"group"`` or ``"instance"``.
        act: ``"relu"`` or ``"silu"``.
        deep_supervision: kept for a common signature (every coarser decoder map is computed anyway).
        factorized: use 1x3x3 + 3x1x1 convolutions instead of 3x3x3.
        encoder: encoder name for error messages.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[Sequence[int]],
        out_stride: Sequence[int],
        out_channels: int = 64,
        norm: str = "batch",
        act: str = "relu",
        deep_supervision: bool = False,
        factorized: bool = False,
        encoder: str = "encoder",
    ):
        super().__init__(strides, out_stride, encoder)
        n = len(in_channels)
        lvl = self.level
        self.blocks = nn.ModuleList()
        self.proj = None
        prev = in_channels[-1]
        chans: list[int] = []  # channels of each decoder state, deep to shallow
        for j in range(n - 2, lvl - 1, -1):
            ch = out_channels * min(2 ** (j - lvl), 4)
            self.blocks.append(
                nn.Sequential(
                    conv3(prev + in_channels[j], ch, norm, act, factorized),
                    conv3(ch, ch, norm, act, factorized),
                )
            )
            chans.append(ch)
            prev = ch
        if lvl == n - 1:  # output at the deepest level: nothing to decode, only project
            self.proj = conv3(in_channels[-1], out_channels, norm, act, factorized)
            states_ch, states_st = [out_channels], [self.enc_strides[-1]]
        else:
            states_ch = [in_channels[-1], *chans]
            states_st = [self.enc_strides[j] for j in range(n - 1, lvl - 1, -1)]
        tail_st = self._build_tail(out_channels, norm, act, factorized)
        states_ch += [out_channels] * len(tail_st)
        states_st += tail_st
        self.out_channels = states_ch[::-1]
        self.strides = states_st[::-1]

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Decode ``features`` (shallow to deep, [B, C_i, D_i, H_i, W_i]) -> ``[main, coarser...]``."""
        x = features[-1]
        if self.proj is not None:
            x = self._run(self.proj, x)
        states = [x]
        for block, j in zip(self.blocks, range(len(features) - 2, self.level - 1, -1)):
            skip = features[j]
            x = torch.cat([upsample_to(x, skip.shape[2:]), skip], dim=1)
            x = self._run(block, x)
            states.append(x)
        states += self._apply_tail(x)
        return states[::-1]


class FPNNeck(_Neck):
    """Feature pyramid: lateral 1x1 convs, top-down nearest upsampling and sum, a 3x3x3 smoothing conv.

    Args:
        in_channels: encoder ``out_channels`` per level (shallow to deep).
        strides: encoder ``strides`` per level.
        out_stride: output stride (sz, sy, sx).
        out_channels: channels of every pyramid map.
        norm: ``"batch"``, ``"group"`` or ``"instance"``.
        act: ``"relu"`` or ``"silu"``.
        deep_supervision: also smooth and return the coarser pyramid levels.
        factorized: 1x3x3 in-plane + 3x1x1 depth smoothing instead of 3x3x3 (tomograms are anisotropic
            in content along z, and it costs about a third of the FLOPs).
        merge: add every smoothed coarser level, upsampled, to the output map (panoptic-FPN style).
        encoder: encoder name for error messages.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[Sequence[int]],
        out_stride: Sequence[int],
        out_channels: int = 64,
        norm: str = "batch",
        act: str = "relu",
        deep_supervision: bool = False,
        factorized: bool = False,
        merge: bool = False,
        encoder: str = "encoder",
    ):
        super().__init__(strides, out_stride, encoder)
        lvl = self.level
        self.merge = merge
        used = list(range(lvl, len(in_channels)))
        self.lateral = nn.ModuleList(nn.Conv3d(in_channels[j], out_channels, 1) for j in used)
        # Coarser levels are smoothed only when their output is used, so no parameter goes without a
        # gradient (DistributedDataParallel refuses unused parameters by default).
        n_smooth = len(used) if (merge or deep_supervision) else 1
        self.smooth = nn.ModuleList(
            conv3(out_channels, out_channels, norm, act, factorized) for _ in range(n_smooth)
        )
        tail_st = self._build_tail(out_channels, norm, act, factorized)
        st = [self.enc_strides[j] for j in used[:n_smooth]]
        self.out_channels = [out_channels] * (len(tail_st) + n_smooth)
        self.strides = (tail_st[::-1] + st) if tail_st else st

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Pyramid from ``features`` (shallow to deep, [B, C_i, D_i, H_i, W_i]) -> ``[main, coarser...]``."""
        used = features[self.level :]
        p = self.lateral[-1](used[-1])
        pyramid = [p]
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(used[:-1])):
            p = lat(f) + upsample_to(p, f.shape[2:])
            pyramid.append(p)
        pyramid = pyramid[::-1][: len(self.smooth)]  # fine to coarse
        smoothed = [self._run(block, q) for block, q in zip(self.smooth, pyramid)]
        main = smoothed[0]
        if self.merge:
            for q in smoothed[1:]:
                main = main + upsample_to(q, main.shape[2:])
        tail = self._apply_tail(main)
        return tail[::-1] + [main] + smoothed[1:]


@NECKS.register("unet")
def unet(**kwargs) -> UNetNeck:
    """U-Net decoder with skip connections (see :class:`UNetNeck`)."""
    return UNetNeck(**kwargs)


@NECKS.register("fpn")
def fpn(**kwargs) -> FPNNeck:
    """Feature pyramid with 3x3x3 smoothing (see :class:`FPNNeck`)."""
    return FPNNeck(factorized=False, **kwargs)


@NECKS.register("fpn_factorized")
def fpn_factorized(**kwargs) -> FPNNeck:
    """Feature pyramid with 1x3x3 + 3x1x1 factorised smoothing (see :class:`FPNNeck`)."""
    return FPNNeck(factorized=True, **kwargs)
