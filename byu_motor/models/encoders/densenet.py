"""3D DenseNet encoders built on MONAI's ``DenseNet``, tapped after the stem and after each dense block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.networks.nets import DenseNet
from torch import nn

from byu_motor.models.encoders._registry import ENCODERS
from byu_motor.models.layers import (
    StagedEncoder,
    as_triple,
    check_no_extra_kwargs,
    cumulative_strides,
    load_weights,
)


def build_monai_densenet(
    name: str,
    init_features: int,
    growth_rate: int,
    block_config: Sequence[int],
    *,
    bn_size: int = 4,
    in_channels: int = 1,
    stem_stride: int | Sequence[int] = 2,
    grad_checkpointing: bool = False,
    pretrained_file: str | None = None,
    **kwargs: Any,
) -> StagedEncoder:
    """A MONAI 3D DenseNet cut into 5 stages.

    Stage 0 is the stem (7^3 conv, BN, ReLU). Stage ``i`` (1..3) is [pool, dense block ``i``, the
    transition's BN-ReLU-1x1x1 conv]: the map is tapped before the transition's average pool, so every
    map is normalised and activated and carries the halved (transition) width. Stage 4 is [pool, dense
    block 4, final BN, ReLU].

    Args:
        name: encoder name for messages.
        init_features: stem width.
        growth_rate: channels added by each dense layer.
        block_config: dense layers per block (4 ints).
        bn_size: bottleneck factor of the dense layers.
        in_channels: input channels.
        stem_stride: per-axis stride of the stem conv; later stages stride 2 on every axis.
        grad_checkpointing: checkpoint each stage while training.
        pretrained_file: local state dict of a MONAI ``DenseNet`` of the same shape (classifier ignored).

    Returns:
        Encoder with strides ``stem * (1, 2, 4, 8, 16)``.
    """
    check_no_extra_kwargs(name, kwargs)
    if len(block_config) != 4:
        raise ValueError(f"encoder {name!r}: block_config needs 4 blocks, got {block_config!r}")
    stem = as_triple(stem_stride, "stem_stride")
    net = DenseNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=1,
        init_features=init_features,
        growth_rate=growth_rate,
        block_config=tuple(block_config),
        bn_size=bn_size,
    )
    if pretrained_file:
        load_weights(net, pretrained_file, ignore_prefixes=("class_layers.",))
    f = net.features
    f.conv0.stride = stem  # MONAI fixes the stem stride at 2; F.conv3d reads the attribute at call time
    stages: list[nn.Module] = [nn.Sequential(f.conv0, f.norm0, f.relu0)]
    out_channels = [init_features]
    pool: nn.Module = f.pool0
    channels = init_features
    for i, n_layers in enumerate(block_config, start=1):
        channels += n_layers * growth_rate
        block = getattr(f, f"denseblock{i}")
        if i < len(block_config):
            trans = getattr(f, f"transition{i}")
            stages.append(nn.Sequential(pool, block, trans.norm, trans.relu, trans.conv))
            pool = trans.pool
            channels //= 2
        else:
            stages.append(nn.Sequential(pool, block, f.norm5, nn.ReLU(inplace=True)))
        out_channels.append(channels)
    strides = cumulative_strides(stem, [(2, 2, 2)] * 4)
    return StagedEncoder(stages, out_channels, strides, grad_checkpointing)


@ENCODERS.register("densenet_tiny", tiny=True)
def densenet_tiny(**kwargs: Any) -> StagedEncoder:
    """Tiny 3D DenseNet for tests: stem 16, growth 8, two layers per block; channels 16, 16, 16, 16, 32."""
    return build_monai_densenet("densenet_tiny", 16, 8, (2, 2, 2, 2), bn_size=2, **kwargs)


@ENCODERS.register("densenet121")
def densenet121(**kwargs: Any) -> StagedEncoder:
    """3D DenseNet-121 (stem 64, growth 32, blocks 6-12-24-16); channels 64, 128, 256, 512, 1024."""
    return build_monai_densenet("densenet121", 64, 32, (6, 12, 24, 16), **kwargs)
