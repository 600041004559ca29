"""Heatmaps between grids: trilinear resampling of logits from one :class:`Grid` to another."""

from __future__ import annotations

import numpy as np
import torch

from byu_motor.data.grid import Grid


def resample_heatmap(logits: torch.Tensor, src_grid: Grid, dst_grid: Grid) -> torch.Tensor:
    """Trilinearly resample heatmap values ``[D, H, W]`` from ``src_grid`` to ``dst_grid``.

    Both grids cover the same physical volume from the same corner (the :class:`Grid` convention), so cell
    ``j`` of ``dst_grid`` samples ``src_grid`` at ``dst_grid.map_to(src_grid, j)``; samples beyond the
    first/last cell centre take the edge value. Works separably (one axis at a time), on any device.

    Args:
        logits: tensor ``[D, H, W]`` with ``D, H, W == src_grid.shape``.
        src_grid: grid of ``logits``.
        dst_grid: grid of the result.

    Returns:
        float32 tensor of shape ``dst_grid.shape`` on the device of ``logits``.
    """
    if tuple(logits.shape) != src_grid.shape:
        raise ValueError(f"logits shape {tuple(logits.shape)} does not match source grid {src_grid.shape}")
    out = logits.float()
    if src_grid == dst_grid:
        return out
    for axis in range(3):
        n_src, n_dst = src_grid.shape[axis], dst_grid.shape[axis]
        ratio = dst_grid.spacing_a[axis] / src_grid.spacing_a[axis]
        if n_src == n_dst and abs(ratio - 1.0) < 1e-12:
            continue
        pos = (np.arange(n_dst, dtype=np.float64) + 0.5) * ratio - 0.5
        pos = np.clip(pos, 0.0, n_src - 1)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_src - 1)
        frac = torch.as_tensor(pos - i0, dtype=torch.float32, device=out.device)
        shape = [1, 1, 1]
        shape[axis] = n_dst
        frac = frac.reshape(shape)
        a = out.index_select(axis, torch.as_tensor(i0, device=out.device))
        b = out.index_select(axis, torch.as_tensor(i1, device=out.device))
        out = a + (b - a) * frac
    return out
