"""MedNeXt encoders: MONAI's ``MedNeXt`` stem, encoder stages, down blocks and bottleneck, without its decoder."""

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


def _import_mednext() -> type[nn.Module]:
    """MONAI's MedNeXt class, or an ImportError saying which MONAI version is needed."""
    try:
        from monai.networks.nets import MedNeXt
    except ImportError as err:
        import monai

        raise ImportError(f"MedNeXt needs monai>=1.4 (installed: {monai.__version__})") from err
    return MedNeXt


def build_mednext(
    name: str,
    *,
    init_filters: int = 32,
    expansion: int | Sequence[int] = 2,
    bottleneck_expansion: int = 2,
    blocks_down: Sequence[int] = (2, 2, 2, 2),
    blocks_bottleneck: int = 2,
    kernel_size: int = 3,
    in_channels: int = 1,
    stem_stride: int | Sequence[int] = 2,
    grad_checkpointing: bool = False,
    pretrained_file: str | None = None,
    **kwargs: Any,
) -> StagedEncoder:
    """MedNeXt encoder in 5 stages: [stem, stage 0], [down 0, stage 1], ..., [down 3, bottleneck].

    MONAI's MedNeXt stem is a 1x1x1 conv at full resolution; a full-resolution stage is too costly for
    tomogram patches, so with ``stem_stride > 1`` the stem becomes a patchify conv (kernel = stride, as in
    ConvNeXt) initialised as the 1x1x1 stem averaged over the patch. ``stem_stride=1`` keeps MONAI's stem.

    Args:
        name: encoder name for messages.
        init_filters: width of stage 0 (doubles per stage).
        expansion: expansion ratio of the encoder blocks (int or 4 ints).
        bottleneck_expansion: expansion ratio of the bottleneck blocks.
        blocks_down: MedNeXt blocks per encoder stage.
        blocks_bottleneck: blocks in the bottleneck.
        kernel_size: depthwise kernel size.
        in_channels: input channels.
        stem_stride: per-axis stride of the stem; the down blocks stride 2 on every axis.
        grad_checkpointing: checkpoint each stage while training.
        pretrained_file: local state dict of a MONAI ``MedNeXt`` with the same settings (decoder ignored).

    Returns:
        Encoder with channels ``init_filters * (1, 2, 4, 8, 16)`` and strides ``stem * (1, 2, 4, 8, 16)``.
    """
    check_no_extra_kwargs(name, kwargs)
    mednext_cls = _import_mednext()
    stem = as_triple(stem_stride, "stem_stride")
    net = mednext_cls(
        spatial_dims=3,
        init_filters=init_filters,
        in_channels=in_channels,
        out_channels=1,
        encoder_expansion_ratio=expansion if isinstance(expansion, int) else list(expansion),
        bottleneck_expansion_ratio=bottleneck_expansion,
        kernel_size=kernel_size,
        use_residual_connection=True,
        blocks_down=tuple(blocks_down),
        blocks_bottleneck=blocks_bottleneck,
        blocks_up=(1,) * len(blocks_down),
        norm_type="group",
    )
    if pretrained_file:
        keep = ("stem.", "enc_stages.", "down_blocks.", "bottleneck.")
        decoder_keys = tuple(k.split(".")[0] + "." for k in net.state_dict() if not k.startswith(keep))
        load_weights(_EncoderPart(net), pretrained_file, ignore_prefixes=decoder_keys)
    stem_conv: nn.Module = net.stem
    if stem != (1, 1, 1):
        stem_conv = nn.Conv3d(in_channels, init_filters, kernel_size=stem, stride=stem)
        with torch.no_grad():
            n_vox = stem[0] * stem[1] * stem[2]
            stem_conv.weight.copy_(net.stem.weight.expand(-1, -1, *stem) / n_vox)
            stem_conv.bias.copy_(net.stem.bias)
    stages: list[nn.Module] = [nn.Sequential(stem_conv, net.enc_stages[0])]
    for i in range(1, len(blocks_down)):
        stages.append(nn.Sequential(net.down_blocks[i - 1], net.enc_stages[i]))
    stages.append(nn.Sequential(net.down_blocks[-1], net.bottleneck))
    out_channels = [init_filters * 2**i for i in range(len(stages))]
    strides = cumulative_strides(stem, [(2, 2, 2)] * (len(stages) - 1))
    return StagedEncoder(stages, out_channels, strides, grad_checkpointing)


class _EncoderPart(nn.Module):
    """View of a MedNeXt's encoder modules under their original names, for loading a full MedNeXt file."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.stem = net.stem
        self.enc_stages = net.enc_stages
        self.down_blocks = net.down_blocks
        self.bottleneck = net.bottleneck


@ENCODERS.register("mednext_tiny", tiny=True)
def mednext_tiny(**kwargs: Any) -> StagedEncoder:
    """Tiny MedNeXt for tests: 8 filters, one block per stage; channels 8, 16, 32, 64, 128."""
    return build_mednext(
        "mednext_tiny", init_filters=8, blocks_down=(1, 1, 1, 1), blocks_bottleneck=1, **kwargs
    )


@ENCODERS.register("mednext_s")
def mednext_s(**kwargs: Any) -> StagedEncoder:
    """MedNeXt-S (MONAI ``create_mednext("S")`` encoder, kernel 3); channels 32, 64, 128, 256, 512."""
    return build_mednext("mednext_s", **kwargs)


@ENCODERS.register("mednext_b")
def mednext_b(**kwargs: Any) -> StagedEncoder:
    """MedNeXt-B (expansion 2-3-4-4, bottleneck 4, kernel 3); channels 32, 64, 128, 256, 512."""
    return build_mednext("mednext_b", expansion=(2, 3, 4, 4), bottleneck_expansion=4, **kwargs)
