"""2D members: a timm image encoder on 3-slice windows, whose logits are stacked into a 3D logit grid.

A :class:`SliceDetector` takes a ``[B, 3, H, W]`` batch of slice triplets in training (logits at
``stride_2d``), and honours the 3D detector contract at inference: ``[B, 1, D, H, W] -> [B, 1, D/sz, H/sy,
W/sx]`` (ceil). For the 3D call the depth is cut into slice triplets as the seed's ``submit_2d.py`` does
(non-overlapping, last one flush, each filling one 4-slice cell; ``slice_windows="every"``: one triplet per
slice, 3x the compute; :mod:`byu_motor.models.slice_cells`), their 2D logits are upsampled bilinearly from
``stride_2d`` to ``(sy, sx)`` and each cell is the mean of the logits of the triplets that fill it. So a 2D member is one more detector for the sliding
window, the Grid, the peak decoding and the fusion of the 3D members.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.config import ModelConfig
from byu_motor.models.neck2d import HEADS_2D, NECKS_2D
from byu_motor.models.slice_cells import SLICE_WINDOWS, slice_plan

Triple = tuple[int, int, int]


class TimmEncoder2d(nn.Module):
    """Any timm model with ``features_only``, built offline; weights only from a local file.

    Args:
        name: timm model name (e.g. ``"maxvit_tiny_tf_512"``).
        in_channels: input channels (slices per window).
        pretrained_file: local weights for timm's ``pretrained_cfg_overlay`` (``None``: random init).
        **kwargs: further ``timm.create_model`` arguments (``img_size`` for MaxViT / CoaT).

    Attributes:
        out_channels: channels per level, fine to coarse; ``strides``: in-plane stride per level;
        mean, std: the model's pretrained-config normalisation (per channel, [0, 1] units).
    """

    def __init__(self, name: str, in_channels: int = 3, pretrained_file: str | None = None, **kwargs: Any):
        super().__init__()
        extra: dict[str, Any] = {}
        if pretrained_file:
            extra = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(pretrained_file)}}
        try:
            self.model = timm.create_model(name, features_only=True, in_chans=in_channels, **extra, **kwargs)
        except RuntimeError as err:  # timm: unknown model names
            raise ValueError(f"2D encoder {name!r}: {err}") from None
        info = self.model.feature_info
        self.out_channels = [int(c) for c in info.channels()]
        self.strides = [int(r) for r in info.reduction()]
        cfg = self.model.pretrained_cfg
        mean, std = cfg.get("mean", (0.5,)), cfg.get("std", (0.5,))
        self.mean = tuple(float(mean[i % len(mean)]) for i in range(in_channels))
        self.std = tuple(float(std[i % len(std)]) for i in range(in_channels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, H, W]`` -> feature maps fine to coarse."""
        return list(self.model(x))


class SliceDetector(nn.Module):
    """2D encoder -> neck -> head on slice triplets, usable as a 3D detector (see the module docstring).

    Args:
        encoder: :class:`TimmEncoder2d` (or any module with ``out_channels``, ``strides``, ``mean``, ``std``).
        neck: maps the feature list to one map at ``stride_2d``.
        head: maps that map to one logit channel.
        stride: 3D output stride ``(sz, sy, sx)``: slices averaged per cell, in-plane cell size in voxels.
        stride_2d: stride of the 2D logits (a multiple of ``sy`` and ``sx``).
        pad_multiple_2d: H and W are padded (zeros after normalisation) up to a multiple of this.
        max_batch_2d: triplets per forward pass in the 3D call (bounds memory).
        slice_windows: which triplets the 3D call runs and how they fill the z cells
            (:mod:`byu_motor.models.slice_cells`): ``"seed"`` (non-overlapping, as the seed) or ``"every"``.

    Attributes:
        stride, output_strides, pad_multiple: as for :class:`byu_motor.models.detector.Detector`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        stride: Triple = (4, 8, 8),
        stride_2d: int = 16,
        pad_multiple_2d: int = 32,
        max_batch_2d: int = 16,
        slice_windows: str = "seed",
    ):
        super().__init__()
        if any(stride_2d % int(s) for s in stride[1:]):
            raise ValueError(f"2D stride {stride_2d} is not a multiple of the in-plane stride {stride[1:]}")
        self.encoder, self.neck, self.head = encoder, neck, head
        self.stride: Triple = tuple(int(s) for s in stride)  # type: ignore[assignment]
        self.output_strides = [self.stride]
        self.stride_2d = int(stride_2d)
        self.pad_multiple_2d = int(pad_multiple_2d)
        self.pad_multiple: Triple = (self.stride[0], self.pad_multiple_2d, self.pad_multiple_2d)
        self.max_batch_2d = int(max_batch_2d)
        if slice_windows not in SLICE_WINDOWS:
            raise ValueError(f"unknown slice_windows {slice_windows!r}; choose from {SLICE_WINDOWS}")
        self.slice_windows = slice_windows
        n = len(encoder.mean)
        self.register_buffer("mean", torch.tensor(encoder.mean).view(1, n, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(encoder.std).view(1, n, 1, 1), persistent=False)

    def forward2d(self, x: torch.Tensor) -> torch.Tensor:
        """Slice triplets ``[B, 3, H, W]`` in [0, 1] -> logits ``[B, 1, ceil(H/s2), ceil(W/s2)]``."""
        h, w = x.shape[-2:]
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        m = self.pad_multiple_2d
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m))
        logits = self.head(self.neck(self.encoder(x)))
        s = self.stride_2d
        return logits[..., : -(-h // s), : -(-w // s)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> 2D logits (training); ``[B, 1, D, H, W]`` -> 3D logits at ``stride`` (ceil)."""
        if x.dim() == 4:
            return self.forward2d(x)
        if x.dim() != 5 or x.shape[1] != 1:
            raise ValueError(f"expected [B, 3, H, W] or [B, 1, D, H, W], got {tuple(x.shape)}")
        b, _, d, h, w = x.shape
        k = len(self.encoder.mean)
        sz, sy, sx = self.stride
        starts, ranges = slice_plan(self.slice_windows, d, k, sz)
        idx = (torch.tensor(starts).view(-1, 1) + torch.arange(k)).clamp(0, d - 1).to(x.device)
        windows = x[:, 0][:, idx].reshape(b * len(starts), k, h, w)
        logits = torch.cat([self.forward2d(c) for c in windows.split(self.max_batch_2d)], dim=0)
        out_h, out_w = -(-h // sy), -(-w // sx)
        factor = self.stride_2d // sy, self.stride_2d // sx
        if factor != (1, 1):
            logits = F.interpolate(logits.float(), scale_factor=factor, mode="bilinear", align_corners=False)
        logits = logits[..., :out_h, :out_w].reshape(b, len(starts), out_h, out_w).float()
        fills = torch.zeros(-(-d // sz), len(starts), device=x.device)
        for i, (lo, hi) in enumerate(ranges):
            fills[lo:hi, i] = 1.0
        cells = torch.einsum("cn,bnhw->bchw", fills, logits) / fills.sum(1).view(1, -1, 1, 1)
        return cells.unsqueeze(1)

    def to(self, *args: Any, **kwargs: Any) -> SliceDetector:
        """``nn.Module.to``, reading ``memory_format=channels_last_3d`` (asked of every ensemble member when
        ``infer.channels_last`` or ``train.channels_last`` is on) as its 2D equivalent ``channels_last``."""
        if kwargs.get("memory_format") is torch.channels_last_3d:
            kwargs["memory_format"] = torch.channels_last
        return super().to(*args, **kwargs)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the encoder's activations in backward (where timm supports it)."""
        if hasattr(self.encoder.model, "set_grad_checkpointing"):
            self.encoder.model.set_grad_checkpointing(enable)


def check_names_2d(cfg: ModelConfig) -> None:
    """Raise ``ValueError`` for a timm encoder name timm does not know, or an unknown 2D neck or head."""
    if not timm.is_model(cfg.encoder):
        raise ValueError(f"unknown timm 2D encoder {cfg.encoder!r} (timm.list_models() lists them)")
    for registry, name in ((NECKS_2D, cfg.neck), (HEADS_2D, cfg.head)):
        if name not in registry:
            raise ValueError(f"unknown {registry.kind} {name!r}; known: {', '.join(registry.names())}")


def create_model_2d(cfg: ModelConfig) -> SliceDetector:
    """Build the 2D member ``cfg`` describes (``cfg.dims == 2``); :func:`create_model` routes here.

    ``cfg.encoder`` is a timm name, ``cfg.in_channels`` the slices per window (odd), ``cfg.stride`` the 3D
    grid stride, ``cfg.stride_2d`` the 2D logit stride, ``cfg.neck_channels`` the decoder width;
    ``encoder_kwargs["img_size"]`` also sets the in-plane padding multiple (MaxViT and CoaT take only
    multiples of it).

    Raises:
        ValueError: unknown timm encoder, neck or head, an even slice count, or strides that do not fit.
    """
    if cfg.in_channels % 2 != 1:
        raise ValueError(f"a 2D member needs an odd number of slices, got in_channels={cfg.in_channels}")
    check_names_2d(cfg)
    kwargs = dict(cfg.encoder_kwargs)
    encoder = TimmEncoder2d(cfg.encoder, cfg.in_channels, cfg.pretrained_file, **kwargs)
    neck = NECKS_2D.build(
        cfg.neck,
        in_channels=encoder.out_channels,
        strides=encoder.strides,
        out_stride=cfg.stride_2d,
        decoder_channels=cfg.neck_channels,
        **cfg.neck_kwargs,
    )
    head = HEADS_2D.build(cfg.head, in_channels=neck.out_channels[0], **cfg.head_kwargs)
    img = kwargs.get("img_size")
    multiple = max(encoder.strides) if img is None else int(img if isinstance(img, int) else max(img))
    model = SliceDetector(
        encoder,
        neck,
        head,
        tuple(cfg.stride),
        cfg.stride_2d,
        multiple,  # type: ignore[arg-type]
        slice_windows=cfg.slice_windows,
    )
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model
