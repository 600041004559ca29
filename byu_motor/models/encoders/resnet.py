"""3D ResNet and ResNeXt encoders built on MONAI's ``ResNet``, tapped after the stem and after each stage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.networks.nets import ResNet
from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck
from torch import nn

from byu_motor.models.encoders._registry import ENCODERS
from byu_motor.models.layers import (
    StagedEncoder,
    as_triple,
    check_no_extra_kwargs,
    cumulative_strides,
    load_weights,
    replace_batch_norm,
)


class ResNeXtBottleneck(nn.Module):
    """ResNeXt bottleneck (1x1x1 reduce, grouped 3x3x3, 1x1x1 expand) with MONAI's ResNet block interface.

    MONAI's ``ResNetBottleneck`` has no ``groups``; this block plugs into ``monai.networks.nets.ResNet``
    (same constructor arguments, ``expansion = 4``). Width of the grouped conv is
    ``planes * base_width / 64 * cardinality`` as in the ResNeXt paper (32x4d: ``2 * planes``).

    Args:
        in_planes: input channels.
        planes: stage width; output channels are ``4 * planes``.
        spatial_dims: must be 3 here (kept for MONAI's interface).
        stride: stride of the grouped conv (int or per-axis triple).
        downsample: shortcut projection, or ``None`` for identity.
        norm: ignored beyond batch norm (MONAI's interface passes it).
    """

    expansion = 4
    cardinality = 32
    base_width = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        spatial_dims: int = 3,
        stride: int | Sequence[int] = 1,
        downsample: nn.Module | None = None,
        norm: str | tuple = "batch",
    ):
        super().__init__()
        width = planes * self.base_width // 64 * self.cardinality
        self.conv1 = nn.Conv3d(in_planes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, 3, stride=stride, padding=1, groups=self.cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.act = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        """``[B, in_planes, D, H, W] -> [B, 4 * planes, D/s, H/s, W/s]``."""
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(out + shortcut)


def build_monai_resnet(
    name: str,
    block: type[nn.Module],
    layers: Sequence[int],
    widths: Sequence[int],
    *,
    in_channels: int = 1,
    stem_stride: int | Sequence[int] = 2,
    grad_checkpointing: bool = False,
    pretrained_file: str | None = None,
    stem_kernel: int = 7,
    max_pool: bool = True,
    norm: str = "batch",
    **kwargs: Any,
) -> StagedEncoder:
    """A MONAI 3D ResNet cut into 5 stages: stem (conv, BN, ReLU), max-pool + layer1, layer2, layer3, layer4.

    Shortcuts are always 1x1x1 projections ("B"): MONAI's parameter-free "A" shortcut detaches the
    gradient (``out.data``), which would starve the early stages.

    Args:
        name: encoder name for messages.
        block: MONAI block class (``ResNetBlock``, ``ResNetBottleneck``) or ``ResNeXtBottleneck``.
        layers: blocks per stage (4 ints).
        widths: stage widths (4 ints; the stem has ``widths[0]`` channels).
        in_channels: input channels.
        stem_stride: per-axis stride of the stem conv; later stages stride 2 on every axis.
        grad_checkpointing: checkpoint each stage while training.
        pretrained_file: local state dict of a MONAI ``ResNet`` of the same shape (e.g. MedicalNet weights
            converted to shortcut "B"); the classifier ``fc`` is ignored.
        stem_kernel: kernel size of the stem conv.
        max_pool: keep the stride-2 max-pool before ``layer1``; without it ``layer1`` runs at the stem's
            resolution and every later stride halves (a finer stride-4 feature map for small objects).
        norm: ``"batch"``, ``"group"`` or ``"instance"`` in every stage (see
            :func:`~byu_motor.models.layers.replace_batch_norm`; applied after ``pretrained_file`` loads).

    Returns:
        Encoder with strides ``stem * (1, 2, 4, 8, 16)`` (``stem * (1, 1, 2, 4, 8)`` without the max-pool).
    """
    check_no_extra_kwargs(name, kwargs)
    stem = as_triple(stem_stride, "stem_stride")
    net = ResNet(
        block=block,
        layers=list(layers),
        block_inplanes=list(widths),
        spatial_dims=3,
        n_input_channels=in_channels,
        conv1_t_size=stem_kernel,
        conv1_t_stride=stem,
        no_max_pool=not max_pool,
        shortcut_type="B",
        feed_forward=False,
        bias_downsample=False,
    )
    if pretrained_file:
        load_weights(net, pretrained_file, ignore_prefixes=("fc.",))
    replace_batch_norm(net, norm)
    stages = [
        nn.Sequential(net.conv1, net.bn1, net.act),
        nn.Sequential(net.maxpool, net.layer1) if max_pool else net.layer1,
        net.layer2,
        net.layer3,
        net.layer4,
    ]
    expansion = block.expansion  # type: ignore[attr-defined]
    out_channels = [widths[0]] + [w * expansion for w in widths]
    first = (2, 2, 2) if max_pool else (1, 1, 1)
    strides = cumulative_strides(stem, [first] + [(2, 2, 2)] * 3)
    return StagedEncoder(stages, out_channels, strides, grad_checkpointing)


@ENCODERS.register("resnet_tiny", tiny=True)
def resnet_tiny(
    widths: Sequence[int] = (8, 16, 32, 64), layers: Sequence[int] = (1, 1, 1, 1), **kwargs: Any
) -> StagedEncoder:
    """Tiny 3D ResNet for CPU runs: basic blocks, 3^3 stem; ``widths`` and ``layers`` (4 ints each) resize it."""
    kwargs.setdefault("stem_kernel", 3)
    return build_monai_resnet("resnet_tiny", ResNetBlock, tuple(layers), tuple(widths), **kwargs)


@ENCODERS.register("resnet18")
def resnet18(**kwargs: Any) -> StagedEncoder:
    """3D ResNet-18 (basic blocks 2-2-2-2, widths 64-512); channels 64, 64, 128, 256, 512."""
    return build_monai_resnet("resnet18", ResNetBlock, (2, 2, 2, 2), (64, 128, 256, 512), **kwargs)


@ENCODERS.register("resnet34")
def resnet34(**kwargs: Any) -> StagedEncoder:
    """3D ResNet-34 (basic blocks 3-4-6-3); channels 64, 64, 128, 256, 512."""
    return build_monai_resnet("resnet34", ResNetBlock, (3, 4, 6, 3), (64, 128, 256, 512), **kwargs)


@ENCODERS.register("resnet50")
def resnet50(**kwargs: Any) -> StagedEncoder:
    """3D ResNet-50 (bottlenecks 3-4-6-3); channels 64, 256, 512, 1024, 2048."""
    return build_monai_resnet("resnet50", ResNetBottleneck, (3, 4, 6, 3), (64, 128, 256, 512), **kwargs)


@ENCODERS.register("resnext50")
def resnext50(**kwargs: Any) -> StagedEncoder:
    """3D ResNeXt-50 32x4d (grouped bottlenecks 3-4-6-3); channels 64, 256, 512, 1024, 2048."""
    return build_monai_resnet("resnext50", ResNeXtBottleneck, (3, 4, 6, 3), (64, 128, 256, 512), **kwargs)
