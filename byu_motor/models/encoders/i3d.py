"""I3D encoders: plain timm 2D CNNs (ResNet, ResNeXt, RegNet families) inflated to 3D, weights included."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.models.encoders._registry import ENCODERS
from byu_motor.models.layers import StagedEncoder, as_triple, check_no_extra_kwargs, load_weights

# timm modules whose forward is the same for 4D and 5D tensors once their children are converted.
_DIM_AGNOSTIC_TIMM = {
    "timm.models.resnet.BasicBlock",
    "timm.models.resnet.Bottleneck",
    "timm.models.regnet.RegStage",
    "timm.models.regnet.Bottleneck",
    "timm.layers.conv_bn_act.ConvNormAct",
    "timm.layers.drop.DropPath",
    "timm.models._features.FeatureListNet",
}
# classifier keys of timm checkpoints, unused by the features-only network
_HEAD_PREFIXES = ("fc.", "head.", "classifier.", "head_", "global_pool.")
_TORCH_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.Identity, nn.Dropout, nn.GroupNorm)


def _qualname(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__name__}"


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class ReplicateZConv3d(nn.Conv3d):
    """Conv3d that pads z by replicating the edge planes (y and x keep zero padding).

    With it an inflated network maps a z-constant volume to exactly the 2D network's response on every
    plane (zero padding along z would darken the planes near the z borders).
    """

    def __init__(self, *args: Any, z_pad: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.z_pad = int(z_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, D, H, W]`` -> conv output with replicate padding along D."""
        if self.z_pad:
            x = F.pad(x, (0, 0, 0, 0, self.z_pad, self.z_pad), mode="replicate")
        return F.conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class BatchNormAct3d(nn.BatchNorm3d):
    """BatchNorm3d followed by timm's ``drop`` and ``act`` modules (the 3D form of timm's ``BatchNormAct2d``)."""

    def __init__(
        self, num_features: int, eps: float, momentum: float | None, drop: nn.Module, act: nn.Module
    ):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.drop = drop
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, D, H, W] -> [B, C, D, H, W]``."""
        return self.act(self.drop(super().forward(x)))


class SEModule3d(nn.Module):
    """timm's ``SEModule`` with the squeeze averaged over (D, H, W) instead of (H, W)."""

    def __init__(self, se2d: nn.Module):
        super().__init__()
        self.add_maxpool = bool(getattr(se2d, "add_maxpool", False))
        self.fc1, self.bn, self.act, self.fc2, self.gate = se2d.fc1, se2d.bn, se2d.act, se2d.fc2, se2d.gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, D, H, W] -> [B, C, D, H, W]``."""
        x_se = x.mean((2, 3, 4), keepdim=True)
        if self.add_maxpool:
            x_se = 0.5 * x_se + 0.5 * x.amax((2, 3, 4), keepdim=True)
        x_se = self.fc2(self.act(self.bn(self.fc1(x_se))))
        return x * self.gate(x_se)


class _Inflater:
    """Recursive 2D -> 3D module conversion with one policy (see ``inflate_2d_to_3d``)."""

    def __init__(self, time_kernel: str | int, z_padding: str, stem_stride: tuple[int, int, int] | None):
        if time_kernel not in ("same", "one") and not (isinstance(time_kernel, int) and time_kernel >= 1):
            raise ValueError(f"time_kernel must be 'same', 'one' or a positive int, got {time_kernel!r}")
        if z_padding not in ("zeros", "replicate"):
            raise ValueError(f"z_padding must be 'zeros' or 'replicate', got {z_padding!r}")
        self.time_kernel = time_kernel
        self.z_padding = z_padding
        self.stem_stride = stem_stride  # consumed by the first strided layer met in module order

    def _strides(self, stride_hw: tuple[int, int]) -> tuple[int, int, int]:
        if self.stem_stride is not None and stride_hw != (1, 1):
            stride, self.stem_stride = self.stem_stride, None
            return stride
        return (stride_hw[0], *stride_hw)

    def _kt(self, kh: int) -> int:
        if kh == 1 or self.time_kernel == "one":
            return 1
        return kh if self.time_kernel == "same" else int(self.time_kernel)

    def conv(self, m: nn.Conv2d, path: str) -> nn.Conv3d:
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise NotImplementedError(
                f"I3D inflation: conv {path!r} uses padding {m.padding!r}/{m.padding_mode}"
            )
        kh, kw = _pair(m.kernel_size)
        kt = self._kt(kh)
        dil = _pair(m.dilation)
        pad = _pair(m.padding)
        pad_t = dil[0] * (kt - 1) // 2
        stride = self._strides(_pair(m.stride))
        args = dict(stride=stride, dilation=(dil[0], *dil), groups=m.groups, bias=m.bias is not None)
        if self.z_padding == "replicate" and pad_t > 0:
            conv3 = ReplicateZConv3d(
                m.in_channels, m.out_channels, (kt, kh, kw), padding=(0, *pad), z_pad=pad_t, **args
            )
        else:
            conv3 = nn.Conv3d(m.in_channels, m.out_channels, (kt, kh, kw), padding=(pad_t, *pad), **args)
        with torch.no_grad():
            # repeat along z and divide by kt: a z-constant input gives the 2D response
            conv3.weight.copy_(m.weight.unsqueeze(2).expand(-1, -1, kt, -1, -1) / kt)
            if m.bias is not None:
                conv3.bias.copy_(m.bias)
        return conv3.to(m.weight.device, m.weight.dtype)

    @staticmethod
    def batchnorm(m: nn.BatchNorm2d) -> nn.BatchNorm3d:
        if _qualname(m) == "timm.layers.norm_act.BatchNormAct2d":
            bn3: nn.BatchNorm3d = BatchNormAct3d(m.num_features, m.eps, m.momentum, m.drop, m.act)
        else:
            bn3 = nn.BatchNorm3d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        bn3.load_state_dict(m.state_dict())
        return bn3

    def pool(self, m: nn.Module, path: str) -> nn.Module:
        k, p = _pair(m.kernel_size), _pair(m.padding)
        stride = self._strides(_pair(m.stride))
        if isinstance(m, nn.MaxPool2d):
            d = _pair(m.dilation)
            return nn.MaxPool3d((k[0], *k), stride, (p[0], *p), (d[0], *d), ceil_mode=m.ceil_mode)
        if m.divisor_override is not None:
            raise NotImplementedError(
                f"I3D inflation: AvgPool2d {path!r} with divisor_override is not supported"
            )
        return nn.AvgPool3d((k[0], *k), stride, (p[0], *p), m.ceil_mode, m.count_include_pad)

    def __call__(self, module: nn.Module, path: str = "") -> nn.Module:
        """Return the 3D replacement of ``module`` (children converted in place)."""
        name = _qualname(module)
        if type(module) is nn.Conv2d:
            return self.conv(module, path)
        if type(module) is nn.BatchNorm2d or name == "timm.layers.norm_act.BatchNormAct2d":
            return self.batchnorm(module)
        if type(module) in (nn.MaxPool2d, nn.AvgPool2d):
            return self.pool(module, path)
        if type(module) in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d) and _pair(module.output_size) == (
            1,
            1,
        ):
            return (
                nn.AdaptiveAvgPool3d(1) if type(module) is nn.AdaptiveAvgPool2d else nn.AdaptiveMaxPool3d(1)
            )
        if name == "timm.layers.squeeze_excite.SEModule":
            se = SEModule3d(module)
            return self._children(se, path)
        supported = (
            name in _DIM_AGNOSTIC_TIMM
            or type(module) in _TORCH_CONTAINERS
            or type(module).__module__ in ("torch.nn.modules.activation", "timm.layers.activations")
        )
        if not supported:
            raise NotImplementedError(
                f"I3D inflation does not support layer type {name} (at {path or '<root>'!r}); supported: "
                "Conv2d, BatchNorm2d, BatchNormAct2d, Max/AvgPool2d, SEModule, activations and the "
                "ResNet/ResNeXt/RegNet blocks of timm"
            )
        return self._children(module, path)

    def _children(self, module: nn.Module, path: str) -> nn.Module:
        for child_name, child in list(module.named_children()):
            setattr(module, child_name, self(child, f"{path}.{child_name}" if path else child_name))
        return module


def inflate_2d_to_3d(
    module: nn.Module,
    time_kernel: str | int = "same",
    z_padding: str = "zeros",
    stem_stride: Sequence[int] | None = None,
) -> nn.Module:
    """Convert a 2D CNN to 3D in place (and return it); weights, BN statistics and strides carry over.

    ``Conv2d`` (kh, kw) becomes ``Conv3d`` (kt, kh, kw) with weights repeated along z and divided by kt, so a
    volume constant along z gives the 2D response on every plane (exactly with ``z_padding="replicate"``;
    with zero padding only on planes far enough from the z borders). z stride, padding and dilation copy the
    in-plane (H) values. BatchNorm2d/BatchNormAct2d -> BatchNorm3d (running stats and affine copied),
    Max/AvgPool2d -> 3D with the same z kernel/stride, timm's SEModule squeezes over (D, H, W). Any other
    layer type raises ``NotImplementedError`` naming it.

    Args:
        module: the 2D network.
        time_kernel: z kernel policy: ``"same"`` (kt = kh; 1x1 stays 1), ``"one"`` (kt = 1 everywhere, a 2D
            network applied plane by plane apart from z strides), or an int kt for every kernel with kh > 1.
        z_padding: ``"zeros"`` (plain Conv3d, fastest) or ``"replicate"`` (edge planes repeated along z).
        stem_stride: ``(z, y, x)`` stride given to the first strided layer (the stem) instead of its 2D one.

    Returns:
        The converted module.
    """
    stem = as_triple(stem_stride, "stem_stride") if stem_stride is not None else None
    return _Inflater(time_kernel, z_padding, stem)(module)


def _first_stride(module: nn.Module) -> tuple[int, int] | None:
    """In-plane stride of the first strided Conv2d/pooling layer (the stem), in module order."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and _pair(m.stride) != (1, 1):
            return _pair(m.stride)
    return None


def build_i3d(
    timm_name: str,
    *,
    in_channels: int = 1,
    stem_stride: int | Sequence[int] | None = None,
    grad_checkpointing: bool = False,
    pretrained_file: str | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    time_kernel: str | int = "same",
    z_padding: str = "zeros",
    out_indices: Sequence[int] | None = None,
    **kwargs: Any,
) -> StagedEncoder:
    """Build ``timm.create_model(timm_name, features_only=True)`` and inflate it to a 3D encoder.

    Weights: ``pretrained_file`` is a local 2D state dict (``.pth``/``.pt`` read with ``weights_only=True``,
    or ``.safetensors``) of the timm model (classifier keys ignored; the first conv adapted to
    ``in_channels``); or ``pretrained_cfg_overlay=dict(file=path)`` lets timm load its own local file
    (``pretrained=True``). Nothing is ever downloaded: an overlay without ``file`` is refused.

    Args:
        timm_name: timm model name, e.g. ``"resnet34"``, ``"resnext50_32x4d"``, ``"regnety_008"``.
        in_channels: input channels.
        stem_stride: ``(z, y, x)`` stride of the stem (the first strided layer); default: its 2D stride
            on every axis. Later layers stride z like their in-plane stride.
        grad_checkpointing: checkpoint each stage while training.
        pretrained_file: local 2D weights (see above).
        pretrained_cfg_overlay: timm's overlay dict with a local ``file``.
        time_kernel: z kernel policy of ``inflate_2d_to_3d``.
        z_padding: ``"zeros"`` or ``"replicate"`` (see ``inflate_2d_to_3d``).
        out_indices: timm feature levels to return (default: all).

    Returns:
        Encoder whose maps are timm's feature levels; strides scale timm's reductions by the stem change.
    """
    import timm

    check_no_extra_kwargs(f"i3d-{timm_name}", kwargs)
    if pretrained_file and pretrained_cfg_overlay:
        raise ValueError("give either pretrained_file or pretrained_cfg_overlay, not both")
    timm_kwargs: dict[str, Any] = dict(features_only=True, in_chans=in_channels)
    if out_indices is not None:
        timm_kwargs["out_indices"] = tuple(out_indices)
    if pretrained_cfg_overlay:
        if not pretrained_cfg_overlay.get("file"):
            raise ValueError("pretrained_cfg_overlay needs a local 'file' (weights are never downloaded)")
        timm_kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(pretrained_cfg_overlay))
    net2d = timm.create_model(timm_name, **timm_kwargs)
    if pretrained_file:
        load_weights(net2d, pretrained_file, ignore_prefixes=_HEAD_PREFIXES)
    reductions = list(net2d.feature_info.reduction())
    channels = list(net2d.feature_info.channels())
    stem_hw = _first_stride(net2d)
    stem = as_triple(stem_stride, "stem_stride") if stem_stride is not None else None
    if stem is not None and stem_hw is None:
        raise ValueError(f"i3d-{timm_name}: no strided stem layer to apply stem_stride={stem_stride!r} to")
    return_layers = set(net2d.return_layers)
    inflate_2d_to_3d(net2d, time_kernel=time_kernel, z_padding=z_padding, stem_stride=stem)

    stages: list[nn.Module] = []
    current: list[nn.Module] = []
    for name, child in net2d.items():
        current.append(child)
        if name in return_layers:
            stages.append(nn.Sequential(*current))
            current = []
    strides = []
    for red in reductions:
        if stem is None or red < stem_hw[0]:
            strides.append((red, red, red))
            continue
        scaled = tuple(red * s // stem_hw[0] for s in stem)
        if any(red * s % stem_hw[0] for s in stem):
            raise ValueError(f"i3d-{timm_name}: stem_stride {stem} does not divide reduction {red}")
        strides.append(scaled)
    return StagedEncoder(stages, channels, strides, grad_checkpointing)


def _register(name: str, timm_name: str, **meta: Any) -> None:
    def factory(**kwargs: Any) -> StagedEncoder:
        return build_i3d(timm_name, **kwargs)

    factory.__doc__ = f"timm ``{timm_name}`` inflated to 3D (see ``build_i3d``)."
    factory.__name__ = name.replace("-", "_")
    ENCODERS.register(name, **meta)(factory)


for _name in ("resnet18", "resnet34", "resnet50", "resnext50_32x4d", "regnety_008"):
    _register(f"i3d-{_name}", _name)
_register("i3d_tiny", "test_resnet", tiny=True)
