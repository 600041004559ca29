"""3D encoders behind one contract, registered by name in ``ENCODERS``.

Contract: ``forward(x: [B, C, D, H, W]) -> list[Tensor]`` (feature maps, shallow to deep), attributes
``out_channels: list[int]`` and ``strides: list[tuple[int, int, int]]`` (cumulative stride of each map).
"""

from __future__ import annotations

from byu_motor.models.registry import Registry

ENCODERS: Registry = Registry("encoder")
