"""Peak decoding: max-pool NMS on a probability heatmap, top-k, sub-cell refinement, original voxels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from byu_motor.data.grid import Grid, as_triple

Candidate = tuple[float, float, float, float]


def nms_kernel_cells(
    nms_kernel_a: float | Sequence[float], spacing_a: Sequence[float]
) -> tuple[int, int, int]:
    """Odd max-pool kernel size per axis (cells) covering about ``nms_kernel_a`` Angstrom at ``spacing_a``."""
    out = []
    for k_a, sp in zip(as_triple(nms_kernel_a, "nms_kernel_a"), spacing_a):
        n = max(1, int(round(k_a / sp)))
        out.append(n if n % 2 else n + 1)
    return tuple(out)  # type: ignore[return-value]


def find_peaks(
    heatmap: torch.Tensor | np.ndarray, kernel_cells: Sequence[int], topk: int, refine: bool = True
) -> list[Candidate]:
    """Local maxima of a heatmap in its own cell coordinates, best first.

    A cell is a peak when it equals the max over the ``kernel_cells`` box around it; exact ties (plateaus)
    are thinned greedily so two accepted peaks are never inside one box. With ``refine``, each peak moves
    to the score-weighted centroid of its 3x3x3 neighbourhood (weights: score minus the neighbourhood
    minimum, so a flat background does not pull the centroid to the cell centre).

    Args:
        heatmap: ``[D, H, W]`` scores (e.g. probabilities), finite.
        kernel_cells: odd NMS box size per axis.
        topk: maximum number of peaks.
        refine: sub-cell refinement.

    Returns:
        ``[(z, y, x, score)]`` in heatmap cell coordinates, at most ``topk``; the score is the peak cell's.
    """
    h = torch.as_tensor(heatmap).float()
    if h.ndim != 3:
        raise ValueError(f"expected a [D, H, W] heatmap, got shape {tuple(h.shape)}")
    if topk <= 0 or h.numel() == 0:
        return []
    k = tuple(int(v) for v in kernel_cells)
    if any(v < 1 or v % 2 == 0 for v in k):
        raise ValueError(f"NMS kernel must be odd and positive per axis, got {k}")
    pooled = F.max_pool3d(h[None, None], kernel_size=k, stride=1, padding=tuple(v // 2 for v in k))[0, 0]
    is_peak = h >= pooled
    scores = h[is_peak]
    idx = torch.nonzero(is_peak)
    order = torch.argsort(scores, descending=True, stable=True)
    half = torch.tensor([v // 2 for v in k])
    accepted: list[torch.Tensor] = []
    kept_scores: list[float] = []
    for j in order.tolist():
        c = idx[j]
        if any(bool((torch.abs(c - a) <= half).all()) for a in accepted):
            continue  # tie with an accepted peak inside one NMS box
        accepted.append(c)
        kept_scores.append(float(scores[j]))
        if len(accepted) == topk:
            break
    out: list[Candidate] = []
    shape = torch.tensor(h.shape)
    for c, s in zip(accepted, kept_scores):
        pos = c.double()
        if refine:
            lo = torch.clamp(c - 1, min=0)
            hi = torch.minimum(c + 2, shape)
            nb = h[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].double()
            w = nb - nb.min()
            total = float(w.sum())
            if total > 0:
                grids = torch.meshgrid(
                    *[torch.arange(int(a), int(b), dtype=torch.float64) for a, b in zip(lo, hi)],
                    indexing="ij",
                )
                pos = torch.stack([(g * w).sum() / total for g in grids])
        out.append((float(pos[0]), float(pos[1]), float(pos[2]), s))
    return out


def decode_peaks(
    heatmap: torch.Tensor | np.ndarray,
    heatmap_grid: Grid,
    original_grid: Grid,
    nms_kernel_a: float | Sequence[float] = 400.0,
    topk: int = 5,
    refine: bool = True,
) -> list[Candidate]:
    """Candidates ``(z, y, x, score)`` in ORIGINAL voxels from a probability heatmap, best first.

    Args:
        heatmap: ``[D, H, W]`` probabilities on ``heatmap_grid``; non-finite values mean "no detection"
            (returns an empty list).
        heatmap_grid: the heatmap's grid (same physical volume as ``original_grid``).
        original_grid: grid of the input tomogram.
        nms_kernel_a: NMS box size in Angstrom (converted to an odd number of cells per axis).
        topk: maximum number of candidates.
        refine: sub-cell refinement (see :func:`find_peaks`).

    Returns:
        ``[(z, y, x, score)]``; positions mapped with ``heatmap_grid.map_to(original_grid, ...)`` and clipped
        into the tomogram (cells of the padded border map slightly outside it).
    """
    h = torch.as_tensor(heatmap)
    if tuple(h.shape) != heatmap_grid.shape:
        raise ValueError(f"heatmap shape {tuple(h.shape)} does not match its grid {heatmap_grid.shape}")
    if not bool(torch.isfinite(h).all()):
        return []
    kernel = nms_kernel_cells(nms_kernel_a, heatmap_grid.spacing_a)
    peaks = find_peaks(h, kernel, topk, refine)
    if not peaks:
        return []
    arr = np.asarray(peaks, dtype=np.float64)
    pos = original_grid.clip(heatmap_grid.map_to(original_grid, arr[:, :3]))
    return [(float(z), float(y), float(x), float(s)) for (z, y, x), s in zip(pos, arr[:, 3])]


def drop_border(candidates: Sequence[Candidate], shape: Sequence[int], margin: float) -> list[Candidate]:
    """Candidates farther than ``margin`` (a fraction of each axis) from every face of a ``shape`` volume.

    Motors sit inside the reconstructed volume: of the 451 in the real training labels none lies within
    2.5 % of a y or x face and 2 within 5 % of a z face, while reconstruction edges and ice surfaces are
    where many false positives are. ``margin = 0`` keeps everything.

    Args:
        candidates: ``[(z, y, x, score)]`` in voxels of the volume, any order (kept).
        shape: ``(Z, Y, X)`` of the volume.
        margin: fraction in ``[0, 0.5)``.
    """
    if not 0.0 <= margin < 0.5:
        raise ValueError(f"border margin must be in [0, 0.5), got {margin}")
    if margin == 0:
        return list(candidates)
    lo = [margin * n for n in shape]
    hi = [(1.0 - margin) * n - 1.0 for n in shape]
    return [c for c in candidates if all(a <= v <= b for v, a, b in zip(c[:3], lo, hi))]
