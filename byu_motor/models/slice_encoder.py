"""The 2.5D encoder ``slices_2p5d``: a timm 2D network over slice triplets, depth average-pooled after each stage.

Every ``slice_step``-th slice ``z`` becomes the image ``(z - 1, z, z + 1)`` (edges repeated); the volume is a
batch of 2D images, and after each feature stage the depth axis of the stacked maps is average-pooled by 2
(the seed's ``AvgPool3d((2, 1, 1))`` 2.5D encoders, SEED_RECIPE 3.2). The result honours the 3D encoder
contract, so any 3D neck and head take it.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models import FeatureListNet
from torch import nn

from byu_motor.models.encoders import ENCODERS


class SliceStackEncoder(nn.Module):
    """3D encoder from a timm 2D network on slice triplets (see the module docstring).

    Args:
        timm_name: a timm model whose ``features_only`` net runs module by module (resnet, convnext, ...).
        in_channels: must be 1 (a tomogram).
        slices: slices per image (odd).
        slice_step: every how many slices an image is centred.
        pretrained_file: local timm weights (``pretrained_cfg_overlay``); nothing downloads.
        **kwargs: further ``timm.create_model`` arguments.

    Attributes:
        out_channels: per level; strides: ``(slice_step * 2**(k+1), r_k, r_k)`` for level ``k`` at in-plane
        reduction ``r_k``.
    """

    def __init__(
        self,
        timm_name: str,
        in_channels: int = 1,
        slices: int = 3,
        slice_step: int = 2,
        grad_checkpointing: bool = False,
        pretrained_file: str | None = None,
        **kwargs: Any,
    ):
        super().__init__()
        if in_channels != 1 or slices % 2 != 1:
            raise ValueError(
                f"slices_2p5d takes 1 input channel and an odd slice count, got {in_channels}, {slices}"
            )
        extra: dict[str, Any] = {}
        if pretrained_file:
            extra = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(pretrained_file)}}
        self.net = timm.create_model(timm_name, features_only=True, in_chans=slices, **extra, **kwargs)
        if not isinstance(self.net, FeatureListNet):
            raise ValueError(
                f"slices_2p5d: timm {timm_name!r} does not run stage by stage (resnet, convnext, maxvit do)"
            )
        info = self.net.feature_info
        self.out_channels = [int(c) for c in info.channels()]
        self.strides = [
            (int(slice_step) * 2 ** (k + 1), int(r), int(r)) for k, r in enumerate(info.reduction())
        ]
        self.half, self.step = slices // 2, int(slice_step)
        mean, std = self.net.pretrained_cfg.get("mean", (0.5,)), self.net.pretrained_cfg.get("std", (0.5,))
        self.register_buffer(
            "mean", torch.tensor([mean[i % len(mean)] for i in range(slices)]).view(1, -1, 1, 1)
        )
        self.register_buffer(
            "std", torch.tensor([std[i % len(std)] for i in range(slices)]).view(1, -1, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, 1, D, H, W]`` (in [0, 1]) -> one ``[B, C_k, D / sz_k, H / r_k, W / r_k]`` map per level."""
        b, _, d, h, w = x.shape
        centres = torch.arange(0, d, self.step, device=x.device)
        offsets = torch.arange(-self.half, self.half + 1, device=x.device)
        idx = (centres[:, None] + offsets[None]).clamp(0, d - 1)  # (D', slices)
        depth = len(centres)
        y = x[:, 0][:, idx].reshape(b * depth, -1, h, w)
        y = (y - self.mean.to(y.dtype)) / self.std.to(y.dtype)
        features = []
        for name, module in self.net.items():
            y = module(y)
            if name in self.net.return_layers:
                c, hh, ww = y.shape[1:]
                f = y.view(b, depth, c, hh, ww).transpose(1, 2)
                f = F.avg_pool3d(f, (2, 1, 1), ceil_mode=True)
                features.append(f)
                depth = f.shape[2]
                y = f.transpose(1, 2).reshape(b * depth, c, hh, ww)
        return features


@ENCODERS.register("slices_2p5d")
def slices_2p5d(**kwargs: Any) -> SliceStackEncoder:
    """The 2.5D encoder (``encoder_kwargs``: ``timm_name``, ``slices``, ``slice_step``; see :class:`SliceStackEncoder`)."""
    kwargs.setdefault("timm_name", "convnext_atto")
    return SliceStackEncoder(**kwargs)
