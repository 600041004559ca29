"""The 3rd-place solution's 3D encoders, with ImageNet 2D -> 3D inflation from local torchvision files.

``resnext50_seed`` (64/256/512/1024/2048), ``densenet121_seed`` (64/256/512/1024/1024, taps inside the
transitions) and ``x3d_m_seed`` (24/24/48/96/192): five levels at isotropic strides 2, 4, 8, 16, 32. Each
starts with :class:`InputAdapter`: the grey input (in [0, 1] units, i.e. ``x / 255``) repeated to 3 channels
and normalised with the mean/std its pretrained weights expect; the values are buffers, so a checkpoint
carries them. ``pretrained_file`` is a local torchvision state dict (ResNeXt50/DenseNet121) inflated by
:func:`inflate_state_dict`, or for X3D-M SlowFast's Kinetics-400 ``x3d_m.pyth`` (:func:`load_slowfast_x3d`);
nothing is downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.networks.nets import DenseNet, ResNet
from torch import nn

from byu_motor.models.encoders._registry import ENCODERS
from byu_motor.models.encoders.resnet import ResNeXtBottleneck
from byu_motor.models.encoders.x3d import build_x3d
from byu_motor.models.layers import StagedEncoder, as_triple, check_no_extra_kwargs, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)  # SlowFast's X3D: 114.75 / 255
KINETICS_STD = (0.225, 0.225, 0.225)  # 57.375 / 255
ISOTROPIC = [(2, 2, 2), (4, 4, 4), (8, 8, 8), (16, 16, 16), (32, 32, 32)]


class InputAdapter(nn.Module):
    """Grey -> RGB and the pretrained weights' normalisation: ``(x.repeat(3) - mean) / std``.

    Args:
        in_channels: input channels (1 is repeated to ``len(mean)``; otherwise they must be equal).
        mean: per-channel mean in the input's units ([0, 1]).
        std: per-channel std in the input's units.
    """

    def __init__(self, in_channels: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if in_channels not in (1, len(mean)):
            raise ValueError(f"input adapter: {in_channels} input channels for {len(mean)} weight channels")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1 or 3, D, H, W]`` (values in [0, 1]) -> ``[B, 3, D, H, W]`` normalised."""
        if x.shape[1] != self.mean.shape[1]:
            x = x.expand(-1, self.mean.shape[1], -1, -1, -1)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def inflate_state_dict(
    state: Mapping[str, torch.Tensor],
    target: nn.Module,
    source: str,
    rename: Callable[[str], str] = lambda k: k,
    drop_prefixes: Sequence[str] = (),
    unused_prefixes: Sequence[str] = (),
) -> dict[str, torch.Tensor]:
    """A 2D state dict made to fit the 3D ``target``: every k x k kernel repeated k times along depth / k.

    A ``[O, I, kh, kw]`` weight becomes ``[O, I, kd, kh, kw]`` (``kd`` from the target, the kernel's own size
    in the seed: 7 for a 7x7 stem, 3 for 3x3, 1 for 1x1), each depth slice ``w / kd``, so a volume constant
    along z gives the 2D response on every plane. Other tensors (BatchNorm affine and statistics) are
    copied. Keys starting with ``drop_prefixes`` (the classifier) are dropped.

    Args:
        state: the 2D state dict (torchvision names).
        target: the 3D module to fill.
        source: file name for error messages.
        rename: maps a 2D key to the target's key.
        drop_prefixes: 2D key prefixes to ignore.
        unused_prefixes: key prefixes of ``target`` the 2D file need not fill (its own classifier).

    Returns:
        A state dict for every key of ``target`` but ``unused_prefixes``.

    Raises:
        ValueError: naming ``source`` and the first key that is missing, left over or of the wrong shape.
    """
    own = {k: v for k, v in target.state_dict().items() if not k.startswith(tuple(unused_prefixes))}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(tuple(drop_prefixes)):
            continue
        name = rename(key)
        if name not in own:
            raise ValueError(f"{source}: key {key!r} has no place in the 3D network (as {name!r})")
        want = own[name].shape
        if value.ndim == 4 and len(want) == 5 and value.shape == want[:2] + want[3:]:
            value = value.unsqueeze(2).repeat(1, 1, want[2], 1, 1) / want[2]
        if value.shape != want:
            raise ValueError(
                f"{source}: key {key!r} has shape {tuple(value.shape)}, the 3D network {tuple(want)}"
            )
        out[name] = value.to(own[name].dtype)
    missing = [k for k in own if k not in out]
    if missing:
        raise ValueError(f"{source}: key {missing[0]!r} of the 3D network is missing ({len(missing)} in all)")
    return out


def _load_inflated(
    net: nn.Module, path: str, rename: Callable[[str], str], drop: Sequence[str], unused: Sequence[str] = ()
) -> None:
    state = read_state_dict(Path(path))
    net.load_state_dict(inflate_state_dict(state, net, str(path), rename, drop, unused), strict=False)


def _check_stem(name: str, stem_stride: int | Sequence[int]) -> None:
    if as_triple(stem_stride, "stem_stride") != (2, 2, 2):
        raise ValueError(f"encoder {name!r} has the seed's isotropic stride-2 stem only, got {stem_stride!r}")


@ENCODERS.register("resnext50_seed")
def resnext50_seed(
    *,
    in_channels: int = 1,
    stem_stride: int | Sequence[int] = 2,
    grad_checkpointing: bool = False,
    pretrained_file: str | None = None,
    **kwargs: Any,
) -> StagedEncoder:
    """3D ResNeXt50-32x4d as the seed built it: 7^3 stem, 3^3 max-pool, stages 3-4-6-3, all strides (2, 2, 2).

    Channels 64/256/512/1024/2048 at strides 2-32. ``pretrained_file``: torchvision ``resnext50_32x4d``
    state dict (``fc`` dropped), inflated.
    """
    check_no_extra_kwargs("resnext50_seed", kwargs)
    _check_stem("resnext50_seed", stem_stride)
    net = ResNet(
        block=ResNeXtBottleneck,
        layers=[3, 4, 6, 3],
        block_inplanes=[64, 128, 256, 512],
        spatial_dims=3,
        n_input_channels=3,
        conv1_t_size=7,
        conv1_t_stride=2,
        shortcut_type="B",
        feed_forward=False,
        bias_downsample=False,
    )
    if pretrained_file:
        _load_inflated(net, pretrained_file, lambda k: k, ("fc.",))
    adapter = InputAdapter(in_channels, IMAGENET_MEAN, IMAGENET_STD)
    stages = [
        nn.Sequential(adapter, net.conv1, net.bn1, net.act),
        nn.Sequential(net.maxpool, net.layer1),
        net.layer2,
        net.layer3,
        net.layer4,
    ]
    return StagedEncoder(stages, [64, 256, 512, 1024, 2048], ISOTROPIC, grad_checkpointing)


_DENSE_LAYER = re.compile(r"^(.*\.denselayer\d+\.)(norm|relu|conv)\.?(\d)\.(.+)$")


def torchvision_densenet_key(key: str) -> str:
    """torchvision DenseNet key -> MONAI's (``denselayerN.norm1`` / old ``norm.1`` -> ``denselayerN.layers.norm1``)."""
    m = _DENSE_LAYER.match(key)
    return f"{m.group(1)}layers.{m.group(2)}{m.group(3)}.{m.group(4)}" if m else key


@ENCODERS.register("densenet121_seed")
def densenet121_seed(
    *,
    in_channels: int = 1,
    stem_stride: int | Sequence[int] = 2,
    grad_checkpointing: bool = False,
    pretrained_file: str | None = None,
    **kwargs: Any,
) -> StagedEncoder:
    """3D DenseNet121 as the seed built it: levels tapped inside the transitions (after BN-ReLU, before the
    1x1x1 conv and the 2^3 average pool); the deepest is dense block 4 + final BN (no ReLU).

    Channels 64/256/512/1024/1024 at strides 2-32. ``pretrained_file``: torchvision ``densenet121`` state
    dict (``classifier`` dropped; new and old dense-layer key styles), inflated.
    """
    check_no_extra_kwargs("densenet121_seed", kwargs)
    _check_stem("densenet121_seed", stem_stride)
    net = DenseNet(
        spatial_dims=3,
        in_channels=3,
        out_channels=1,
        init_features=64,
        growth_rate=32,
        block_config=(6, 12, 24, 16),
        bn_size=4,
    )
    if pretrained_file:
        _load_inflated(net, pretrained_file, torchvision_densenet_key, ("classifier.",), ("class_layers.",))
    f = net.features
    t1, t2, t3 = f.transition1, f.transition2, f.transition3
    stages = [
        nn.Sequential(InputAdapter(in_channels, IMAGENET_MEAN, IMAGENET_STD), f.conv0, f.norm0, f.relu0),
        nn.Sequential(f.pool0, f.denseblock1, t1.norm, t1.relu),
        nn.Sequential(t1.conv, t1.pool, f.denseblock2, t2.norm, t2.relu),
        nn.Sequential(t2.conv, t2.pool, f.denseblock3, t3.norm, t3.relu),
        nn.Sequential(t3.conv, t3.pool, f.denseblock4, f.norm5),
    ]
    return StagedEncoder(stages, [64, 256, 512, 1024, 1024], ISOTROPIC, grad_checkpointing)


_SLOWFAST_BLOCK = {
    "branch1": "shortcut.0",
    "branch1_bn": "shortcut.1",
    "branch2.a": "conv_a",
    "branch2.a_bn": "bn_a",
    "branch2.b": "conv_b",
    "branch2.b_bn": "bn_b",
    "branch2.se.fc1": "se.fc1",
    "branch2.se.fc2": "se.fc2",
    "branch2.c": "conv_c",
    "branch2.c_bn": "bn_c",
}
_SLOWFAST_STEM = {"conv_xy": "1", "conv": "2", "bn": "3"}  # after the input adapter (index 0)
_SLOWFAST_RES = re.compile(r"^s(\d)\.pathway0_res(\d+)\.(.+)\.([a-z_]+)$")
_SLOWFAST_STEM_KEY = re.compile(r"^s1\.pathway0_stem\.([a-z_]+)\.([a-z_]+)$")


def slowfast_x3d_key(key: str) -> str | None:
    """SlowFast X3D key -> ours (``s3.pathway0_res2.branch2.b_bn.weight`` -> ``stages.2.2.bn_b.weight``).

    Returns ``None`` for the classification head (``head.*``); raises ``KeyError`` for any other unknown key.
    """
    if key.startswith("head."):
        return None
    m = _SLOWFAST_STEM_KEY.match(key)
    if m and m.group(1) in _SLOWFAST_STEM:
        return f"stages.0.{_SLOWFAST_STEM[m.group(1)]}.{m.group(2)}"
    m = _SLOWFAST_RES.match(key)
    if m and m.group(3) in _SLOWFAST_BLOCK and 2 <= int(m.group(1)) <= 5:
        return f"stages.{int(m.group(1)) - 1}.{m.group(2)}.{_SLOWFAST_BLOCK[m.group(3)]}.{m.group(4)}"
    raise KeyError(key)


def load_slowfast_x3d(encoder: nn.Module, path: str) -> None:
    """Fill ``encoder`` (``x3d_m_seed``) from a SlowFast X3D checkpoint (``x3d_m.pyth``: ``{"model_state": ...}``).

    Every tensor of the file but the head must find its place with the same shape, and every tensor of the
    encoder but the input adapter's buffers must be filled.

    Raises:
        ValueError: naming ``path`` and the first key that is unknown, left over, of another shape or missing.
    """
    raw = torch.load(path, map_location="cpu", weights_only=True)
    state = raw.get("model_state", raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a SlowFast checkpoint dict, got {type(state).__name__}")
    own = {k: v for k, v in encoder.state_dict().items() if not k.startswith("stages.0.0.")}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        try:
            name = slowfast_x3d_key(key)
        except KeyError:
            raise ValueError(f"{path}: key {key!r} is not part of SlowFast's X3D layout") from None
        if name is None:
            continue
        if name not in own:
            raise ValueError(f"{path}: key {key!r} has no place in the encoder (as {name!r})")
        if value.shape != own[name].shape:
            raise ValueError(
                f"{path}: key {key!r} has shape {tuple(value.shape)}, ours {tuple(own[name].shape)}"
            )
        out[name] = value
    missing = [k for k in own if k not in out]
    if missing:
        raise ValueError(f"{path}: the encoder's {missing[0]!r} is not in the file ({len(missing)} missing)")
    encoder.load_state_dict(out, strict=False)


@ENCODERS.register("x3d_m_seed")
def x3d_m_seed(
    *,
    in_channels: int = 1,
    stem_stride: int | Sequence[int] = 2,
    grad_checkpointing: bool = False,
    pretrained_file: str | None = None,
    **kwargs: Any,
) -> StagedEncoder:
    """X3D-M (SlowFast's network: widths 24-48-96-192, depths 3-5-11-7, expansion 2.25) with the seed's
    isotropic stride-2 stem and stages; channels 24/24/48/96/192 at strides 2-32; Kinetics normalisation.

    ``pretrained_file``: SlowFast's Kinetics-400 ``x3d_m.pyth`` (loaded by :func:`load_slowfast_x3d`; the
    kernels keep their native shapes, only the strides differ).
    """
    check_no_extra_kwargs("x3d_m_seed", kwargs)
    _check_stem("x3d_m_seed", stem_stride)
    enc = build_x3d("x3d_m_seed", in_channels=3, grad_checkpointing=grad_checkpointing)
    enc.stages[0] = nn.Sequential(InputAdapter(in_channels, KINETICS_MEAN, KINETICS_STD), *enc.stages[0])
    if pretrained_file:
        load_slowfast_x3d(enc, pretrained_file)
    return enc
