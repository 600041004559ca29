"""3D encoders behind one contract, registered by name in ``ENCODERS``.

Contract: ``forward(x: [B, C, D, H, W]) -> list[Tensor]`` (feature maps, shallow to deep), attributes
``out_channels: list[int]`` and ``strides: list[tuple[int, int, int]]`` (cumulative stride of each map).
Every factory takes ``in_channels``, ``stem_stride``, ``grad_checkpointing`` and ``pretrained_file``.
Names ``i3d-<timm name>`` that are not registered exactly are built by ``build_i3d``.
"""

from __future__ import annotations

from byu_motor.models.encoders import densenet, i3d, mednext, resnet, seed, x3d
from byu_motor.models.encoders._registry import ENCODERS
from byu_motor.models.encoders.i3d import build_i3d, inflate_2d_to_3d

__all__ = ["ENCODERS", "build_i3d", "inflate_2d_to_3d", "densenet", "i3d", "mednext", "resnet", "seed", "x3d"]
