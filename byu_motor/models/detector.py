"""The heatmap detector (encoder -> neck -> head) and ``create_model``, the one way to build it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.config import ModelConfig
from byu_motor.models.encoders import ENCODERS
from byu_motor.models.heads import HEADS
from byu_motor.models.necks import NECKS, match_stride

Triple = tuple[int, int, int]
PAD_MODES = ("constant", "replicate")


class Detector(nn.Module):
    """Encoder, neck and head wired in one line each, with padding so any input size works.

    The input is padded at the far end of each axis up to a multiple of the encoder's deepest stride and
    the logits are cropped to ``ceil(n / s)`` cells, so heatmap cell ``k`` covers input voxels
    ``[k*s, (k+1)*s)`` exactly as ``Grid.strided`` says, for odd sizes too.

    Args:
        encoder: module with ``forward(x) -> list[Tensor]``, ``out_channels`` and ``strides``.
        neck: module mapping the feature list to ``[main, coarser...]`` with ``strides``.
        head: module mapping the neck outputs to logits (a list in training with deep supervision).
        pad_mode: ``"constant"`` (zeros) or ``"replicate"``.

    Attributes:
        stride: output stride (sz, sy, sx) of the main logits.
        pad_multiple: per-axis multiple the input is padded to.
    """

    def __init__(self, encoder: nn.Module, neck: nn.Module, head: nn.Module, pad_mode: str = "constant"):
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f"unknown pad_mode {pad_mode!r}; choose one of {PAD_MODES}")
        self.encoder = encoder
        self.neck = neck
        self.head = head
        self.pad_mode = pad_mode
        self.stride: Triple = tuple(int(v) for v in neck.strides[0])  # type: ignore[assignment]
        self.output_strides: list[Triple] = [tuple(int(v) for v in s) for s in neck.strides]  # type: ignore[misc]
        enc_strides = [tuple(int(v) for v in s) for s in encoder.strides]
        self.pad_multiple: Triple = tuple(max(s[a] for s in enc_strides) for a in range(3))  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Heatmap logits for ``x`` [B, C, D, H, W].

        Returns:
            logits [B, 1, ceil(D/sz), ceil(H/sy), ceil(W/sx)]; in training mode with deep supervision a list
            ``[main, coarser...]``, each cropped to ``ceil(n / its stride)``.
        """
        size = tuple(x.shape[2:])
        x = self._pad(x)
        features = self.encoder(x)
        out = self.neck(features)
        logits = self.head(out)
        if isinstance(logits, (list, tuple)):
            return [self._crop(t, size, s) for t, s in zip(logits, self.output_strides)]
        return self._crop(logits, size, self.stride)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        extra = [(-n) % m for n, m in zip(x.shape[2:], self.pad_multiple)]
        if not any(extra):
            return x
        pad = (0, extra[2], 0, extra[1], 0, extra[0])  # F.pad lists the last axis first
        return F.pad(x, pad, mode=self.pad_mode)

    @staticmethod
    def _crop(t: torch.Tensor, size: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
        d, h, w = (-(-n // s) for n, s in zip(size, stride))
        return t[:, :, :d, :h, :w]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in backward (encoder stages and neck blocks) to save memory."""
        if hasattr(self.encoder, "set_grad_checkpointing"):
            self.encoder.set_grad_checkpointing(enable)
        elif hasattr(self.encoder, "grad_checkpointing"):
            self.encoder.grad_checkpointing = enable
        self.neck.grad_checkpointing = enable


def check_names(cfg: ModelConfig) -> None:
    """Raise ``ValueError`` listing the known names if ``cfg``'s encoder, neck or head is not registered.

    Uses ``Registry.get`` rather than ``in`` because the encoder registry also routes names it does not
    hold (``i3d-<timm name>``). A 2D config (``dims == 2``) is checked by
    :func:`byu_motor.models.detector2d.check_names_2d`.
    """
    if cfg.dims == 2:
        from byu_motor.models.detector2d import check_names_2d

        return check_names_2d(cfg)
    for registry, name in ((ENCODERS, cfg.encoder), (NECKS, cfg.neck), (HEADS, cfg.head)):
        try:
            registry.get(name)
        except KeyError:
            raise ValueError(
                f"unknown {registry.kind} {name!r}; known: {', '.join(registry.names())}"
            ) from None


def create_model(cfg: ModelConfig) -> nn.Module:
    """Build the detector ``cfg`` describes (the one way in; checkpoints rebuild through it too).

    ``cfg.dims == 2`` builds a 2D member (:func:`byu_motor.models.detector2d.create_model_2d`), which honours
    the same 3D input/output contract.

    Args:
        cfg: encoder / neck / head names, output stride, channels and options.

    Raises:
        ValueError: for an unknown encoder, neck or head (listing the known names), or an output stride the
            encoder cannot give (naming the encoder and its strides).
    """
    if cfg.dims == 2:
        from byu_motor.models.detector2d import create_model_2d

        return create_model_2d(cfg)
    if cfg.dims != 3:
        raise ValueError(f"model.dims must be 2 or 3, got {cfg.dims}")
    check_names(cfg)
    encoder = ENCODERS.build(
        cfg.encoder,
        in_channels=cfg.in_channels,
        grad_checkpointing=cfg.grad_checkpointing,
        pretrained_file=cfg.pretrained_file,
        **cfg.encoder_kwargs,
    )
    match_stride(encoder.strides, cfg.stride, cfg.encoder)  # fail with the encoder's name before the neck
    neck = NECKS.build(
        cfg.neck,
        in_channels=list(encoder.out_channels),
        strides=list(encoder.strides),
        out_stride=tuple(cfg.stride),
        out_channels=cfg.neck_channels,
        norm=cfg.norm,
        act=cfg.act,
        deep_supervision=cfg.deep_supervision,
        encoder=cfg.encoder,
        **cfg.neck_kwargs,
    )
    head = HEADS.build(
        cfg.head,
        in_channels=list(neck.out_channels),
        deep_supervision=cfg.deep_supervision,
        norm=cfg.norm,
        act=cfg.act,
        **cfg.head_kwargs,
    )
    model = Detector(encoder, neck, head, pad_mode=cfg.pad_mode)
    if cfg.grad_checkpointing:
        model.neck.grad_checkpointing = True
    return model
