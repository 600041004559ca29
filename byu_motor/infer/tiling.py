"""How the Predictor tiles a volume and at which stride it accumulates logits (``InferConfig.tiling`` and
``InferConfig.decode_upsample``).

- ``tiling="weighted"`` (default): windows overlapping by ``InferConfig.overlap``, weights falling to
  ``border_weight`` at interior window borders, padding with the volume's mean grey.
- ``tiling="seed"``: as the 3rd-place BYU 2025 solution tiled: windows with no overlap, the last one flush
  with the (stride-padded) volume's end, zero padding (raw grey 0) where the volume is smaller than a window,
  and logits averaged with equal weights where windows meet. ``overlap`` and ``border_weight`` are ignored.
  Unlike the seed, windows still start at multiples of the accumulation stride (``s / f`` below: 8 voxels for
  a stride-16 model decoded at stride 8), so the volume is padded at its high end by at most that stride minus
  one voxel before the last window is placed flush; and where the volume is smaller than a window the padding
  is at the high end (the seed's window starts at a negative index, padding the low end).
- ``decode_upsample=f > 1``: each window's logits (stride ``s``) are upsampled ``f`` times (trilinear,
  ``align_corners=False``) before they are accumulated, on a heatmap of stride ``s / f``. With the Grid
  contract (cell ``k`` at stride ``s`` covers voxels ``[k*s, (k+1)*s)`` and is centred at ``k*s + (s-1)/2``)
  the upsampled cell ``j`` samples stride-``s`` cell ``(j + 0.5) / f - 0.5``, i.e. voxel
  ``j*s/f + (s/f - 1)/2``: exactly the centre of cell ``j`` at stride ``s / f``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.data.normalize import Normalizer
from byu_motor.infer.sliding import SlidingWindow, _triple_int

TILINGS = ("weighted", "seed")


def check_tiling(tiling: str, decode_upsample: int, strides: Sequence[Sequence[int]]) -> None:
    """Raise ``ValueError`` for an unknown ``tiling`` or a ``decode_upsample`` that does not divide a stride.

    Args:
        tiling: ``InferConfig.tiling``.
        decode_upsample: ``InferConfig.decode_upsample`` (>= 1).
        strides: each ensemble member's output stride ``(sz, sy, sx)`` in input voxels.
    """
    if tiling not in TILINGS:
        raise ValueError(f"unknown infer.tiling {tiling!r}; choose from {TILINGS}")
    f = int(decode_upsample)
    if f != decode_upsample or f < 1:
        raise ValueError(f"infer.decode_upsample must be a positive integer, got {decode_upsample!r}")
    for st in strides:
        if any(s % f for s in st):
            raise ValueError(f"infer.decode_upsample={f} does not divide the model stride {tuple(st)}")


def decode_stride(stride: Sequence[int], decode_upsample: int) -> tuple[int, int, int]:
    """The stride (input voxels per heatmap cell, per axis) at which logits are accumulated and decoded."""
    return tuple(int(s) // int(decode_upsample) for s in _triple_int(stride, "stride"))  # type: ignore[return-value]


def window_settings(tiling: str, overlap: float, border_weight: float) -> dict[str, Any]:
    """``SlidingWindow`` keyword arguments ``overlap``, ``border_weight``, ``pad_value`` of a tiling."""
    if tiling == "seed":
        return {"overlap": 0.0, "border_weight": 1.0, "pad_value": 0.0}
    return {"overlap": overlap, "border_weight": border_weight, "pad_value": None}


class Upsampled(nn.Module):
    """``module``'s logits ``[B, 1, d, h, w]`` upsampled ``factor`` times: ``[B, 1, f*d, f*h, f*w]`` (float32)."""

    def __init__(self, module: nn.Module, factor: int):
        super().__init__()
        self.module = module
        self.factor = int(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x)
        if isinstance(y, (list, tuple)):
            y = y[0]
        return F.interpolate(y.float(), scale_factor=self.factor, mode="trilinear", align_corners=False)


class FinerWindow(SlidingWindow):
    """A :class:`SlidingWindow` whose windows' logits are upsampled ``factor`` times before accumulation.

    Call it with the FINER stride (``model stride / factor``, :func:`decode_stride`); windows stay a multiple
    of the model's own stride, so the model sees the input sizes it needs.

    Args:
        factor: upsampling factor (>= 2 to make a difference); the other arguments as :class:`SlidingWindow`.
    """

    def __init__(self, *args: Any, factor: int = 2, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.factor = int(factor)

    def layout(
        self, shape: Sequence[int], stride: Sequence[int]
    ) -> tuple[tuple[int, int, int], tuple[int, int, int], list[list[int]]]:
        """As :meth:`SlidingWindow.layout` at the finer ``stride``, with windows a multiple of the model's."""
        st = _triple_int(stride, "stride")
        coarse = tuple(s * self.factor for s in st)
        patch = self.patch_size or tuple(shape)
        patch = tuple(-(-p // c) * c for p, c in zip(patch, coarse))
        saved = self.patch_size
        self.patch_size = patch  # type: ignore[assignment]
        try:
            return super().layout(shape, st)
        finally:
            self.patch_size = saved

    def __call__(
        self, model: nn.Module, volume: np.ndarray, stride: Sequence[int], normalizer: Normalizer
    ) -> torch.Tensor:
        """Logits ``[ceil(Z/s'), ceil(Y/s'), ceil(X/s')]`` at the finer stride ``s'`` (see the class)."""
        return super().__call__(Upsampled(model, self.factor), volume, stride, normalizer)
