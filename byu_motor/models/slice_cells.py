"""Which slice windows a 2D member runs on a 3D window, and which z cells of its logit grid each one fills.

Two plans (``ModelConfig.slice_windows``):

- ``"seed"`` (the 3rd-place solution's ``submit_2d.py``): windows of ``k`` consecutive slices tile the depth
  WITHOUT overlap (starts ``0, k, 2k, ...``; the last one is moved back to end flush with the depth), and each
  window fills ``n = max(1, round(k * cells / depth))`` consecutive z cells (one for ``k = 3`` slices per 4-slice
  cell), chosen by the seed's rounding rule (:func:`seed_cells`). A cell's logits are the mean over the windows
  that fill it. About ``depth / k`` forward passes.
- ``"every"``: every slice ``z`` is the centre of a window ``(z - k//2 .. z + k//2)`` (edge slices repeated)
  and each cell averages the windows centred in it. ``depth`` forward passes (3x the seed's compute for k = 3).

Both plans return ``(starts, cell_ranges)``: window ``i`` covers slices ``starts[i] .. starts[i] + k - 1``
(indices out of ``[0, depth)`` are clamped to the edge) and fills cells ``cell_ranges[i] = (lo, hi)``.
"""

from __future__ import annotations

import math

SLICE_WINDOWS = ("seed", "every")


def seed_cells(start: int, end: int, scale: float, cells: int) -> tuple[int, int]:
    """The z cells ``[lo, hi)`` that the seed fills from slices ``[start, end)`` on a grid ``scale`` cells per
    slice with ``cells`` cells (its ``scale_range``, restated).

    The cell count is ``n = max(1, round((end - start) * scale))`` (Python rounding, half to even). When the
    rounded ends are exactly ``n`` apart they are used; otherwise the start is ``floor`` or ``round`` of
    ``start * scale`` (whichever keeps ``n`` cells inside the grid; if both do, the one whose ends are
    closer to the exact ``start * scale``, ``end * scale``; ``round`` on a tie).

    Raises:
        ValueError: neither start fits inside the grid.
    """
    n = max(1, round((end - start) * scale))
    lo, hi = round(start * scale), round(end * scale)
    if hi - lo == n:
        return lo, hi
    options = [c for c in dict.fromkeys((math.floor(start * scale), lo)) if 0 <= c and c + n <= cells]
    if not options:
        raise ValueError(f"slices [{start}, {end}) do not fit {n} of {cells} cells at scale {scale}")
    best = min(options, key=lambda c: (abs(c - start * scale) + abs(c + n - end * scale), c != lo))
    return best, best + n


def seed_plan(depth: int, k: int, cells: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Non-overlapping ``k``-slice windows over ``depth`` slices (last flush) and the cells each fills.

    A depth under ``k`` gives one window at 0 (its missing slices repeat the last one) filling every cell.
    Cells no window reaches (possible only for cells much thinner than ``k``) get one more window centred
    on them, so every cell of the grid is filled.
    """
    if depth <= k:
        return [0], [(0, cells)]
    starts = list(range(0, depth - k + 1, k))
    if starts[-1] != depth - k:
        starts.append(depth - k)
    scale = cells / depth
    ranges = [seed_cells(s, s + k, scale, cells) for s in starts]
    filled = {c for lo, hi in ranges for c in range(lo, hi)}
    for c in range(cells):
        if c not in filled:
            centre = int((c + 0.5) / scale)
            starts.append(min(max(centre - k // 2, 0), depth - k))
            ranges.append((c, c + 1))
    return starts, ranges


def every_plan(depth: int, k: int, cell_depth: int) -> tuple[list[int], list[tuple[int, int]]]:
    """One window centred on every slice; slice ``z`` fills cell ``z // cell_depth``."""
    half = k // 2
    return [z - half for z in range(depth)], [(z // cell_depth, z // cell_depth + 1) for z in range(depth)]


def slice_plan(plan: str, depth: int, k: int, cell_depth: int) -> tuple[list[int], list[tuple[int, int]]]:
    """``(starts, cell_ranges)`` of ``plan`` (``"seed"`` or ``"every"``) for a window ``depth`` slices deep,
    ``k`` slices per 2D input and ``cell_depth`` slices per z cell (``ceil(depth / cell_depth)`` cells)."""
    cells = -(-depth // cell_depth)
    if plan == "seed":
        return seed_plan(depth, k, cells)
    if plan == "every":
        return every_plan(depth, k, cell_depth)
    raise ValueError(f"unknown slice_windows {plan!r}; choose from {SLICE_WINDOWS}")
