"""The 3rd-place BYU 2025 solution's peak decoder (``InferConfig.peak_decoder="seed"``).

On a probability grid: a cell is a local maximum when it equals the max over its 3x3x3 neighbourhood
(max-pool, stride 1, same padding); local maxima scoring below a floor are dropped; the rest are thinned by
greedy L2 non-maximum suppression (best first, every remaining peak strictly closer than ``radius_a``
Angstrom to a kept one is dropped), up to ``max_peaks``. No sub-cell refinement: a peak is its cell's centre,
mapped to original voxels by the Grid contract (``(cell + 0.5) * ratio - 0.5`` per axis), e.g. at stride 8 of
a 16 A model over a tomogram assumed at 13.1 A: ``orig = (cell + 0.5) * 8 * 16 / 13.1 - 0.5``.

Unlike :func:`byu_motor.postprocess.peaks.find_peaks` (a max-pool box of ``nms_kernel_a`` as the NMS, ties
thinned inside one box, centroid refinement), the suppression here is a sphere in Angstrom around each kept
peak, so two peaks 900 A apart never both survive a 1000 A radius, whatever the grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from byu_motor.data.grid import Grid, as_triple
from byu_motor.postprocess.peaks import Candidate

PEAK_DECODERS = ("maxpool", "seed")


def seed_find_peaks(
    heatmap: torch.Tensor | np.ndarray,
    cell_a: float | Sequence[float],
    radius_a: float = 1000.0,
    floor: float = 0.02,
    max_peaks: int = 100,
) -> list[Candidate]:
    """Local maxima of a probability grid thinned by greedy L2 NMS, in its own cell coordinates, best first.

    Args:
        heatmap: ``[D, H, W]`` probabilities, finite.
        cell_a: the grid's cell size in Angstrom (scalar or per axis ``(z, y, x)``); the radius becomes
            ``radius_a / cell_a`` cells per axis (1000 A over 128 A cells: 7.8125 cells).
        radius_a: NMS radius in Angstrom; a peak strictly closer than this to a kept one is dropped.
        floor: local maxima scoring below this are dropped (the seed: 0.02).
        max_peaks: maximum number of peaks kept (the seed: 100).

    Returns:
        ``[(z, y, x, score)]`` with integer cell indices as floats, at most ``max_peaks``.
    """
    h = torch.as_tensor(heatmap).float()
    if h.ndim != 3:
        raise ValueError(f"expected a [D, H, W] heatmap, got shape {tuple(h.shape)}")
    if radius_a <= 0:
        raise ValueError(f"radius_a must be positive, got {radius_a}")
    if max_peaks <= 0 or h.numel() == 0:
        return []
    pooled = F.max_pool3d(h[None, None], kernel_size=3, stride=1, padding=1)[0, 0]
    is_peak = (h >= pooled) & (h >= floor)
    idx = torch.nonzero(is_peak)
    scores = h[is_peak]
    order = torch.argsort(scores, descending=True, stable=True)
    idx, scores = idx[order], scores[order]
    cell = torch.tensor(as_triple(cell_a, "cell_a"), dtype=torch.float64)
    pos_a = idx.double() * cell  # physical positions, Angstrom (the same origin for all)
    alive = torch.ones(len(idx), dtype=torch.bool)
    out: list[Candidate] = []
    for j in range(len(idx)):
        if not alive[j]:
            continue
        z, y, x = (float(v) for v in idx[j])
        out.append((z, y, x, float(scores[j])))
        if len(out) == max_peaks:
            break
        near = torch.linalg.vector_norm(pos_a[j + 1 :] - pos_a[j], dim=1) < radius_a
        alive[j + 1 :] &= ~near
    return out


def blur_heatmap(
    heatmap: torch.Tensor | np.ndarray, cell_a: float | Sequence[float], sigma_a: float
) -> torch.Tensor:
    """``heatmap`` ``[D, H, W]`` smoothed by a Gaussian of ``sigma_a`` Angstrom (``sigma_a / cell_a`` cells per
    axis, truncated at 3 sigma, edges reflected); ``sigma_a`` 0 returns it unchanged (float32)."""
    h = torch.as_tensor(heatmap).float()
    if sigma_a < 0:
        raise ValueError(f"sigma_a must be >= 0, got {sigma_a}")
    if sigma_a == 0:
        return h
    from scipy import ndimage

    sigma = [sigma_a / c for c in as_triple(cell_a, "cell_a")]
    return torch.from_numpy(ndimage.gaussian_filter(h.numpy(), sigma, mode="reflect", truncate=3.0))


def seed_decode_peaks(
    heatmap: torch.Tensor | np.ndarray,
    heatmap_grid: Grid,
    original_grid: Grid,
    radius_a: float = 1000.0,
    floor: float = 0.02,
    max_peaks: int = 100,
    blur_a: float = 0.0,
) -> list[Candidate]:
    """Candidates ``(z, y, x, score)`` in ORIGINAL voxels by the seed's decoder (:func:`seed_find_peaks`).

    Args:
        heatmap: ``[D, H, W]`` probabilities on ``heatmap_grid``; non-finite values mean "no detection"
            (returns an empty list).
        heatmap_grid: the heatmap's grid (same physical volume as ``original_grid``); its ``spacing_a`` is
            the cell size the NMS radius is measured in.
        original_grid: grid of the input tomogram.
        radius_a: NMS radius in Angstrom.
        floor: minimum probability of a peak.
        max_peaks: maximum number of candidates.
        blur_a: optional Gaussian blur of the grid before the peak search, sigma in Angstrom (0: none; the
            seed's option, off in its final scripts).

    Returns:
        ``[(z, y, x, score)]`` best first; cell centres mapped with ``heatmap_grid.map_to(original_grid, ...)``
        and clipped into the tomogram.
    """
    h = torch.as_tensor(heatmap)
    if tuple(h.shape) != heatmap_grid.shape:
        raise ValueError(f"heatmap shape {tuple(h.shape)} does not match its grid {heatmap_grid.shape}")
    if not bool(torch.isfinite(h).all()):
        return []
    h = blur_heatmap(h.cpu(), heatmap_grid.spacing_a, blur_a)
    peaks = seed_find_peaks(h, heatmap_grid.spacing_a, radius_a, floor, max_peaks)
    if not peaks:
        return []
    arr = np.asarray(peaks, dtype=np.float64)
    pos = original_grid.clip(heatmap_grid.map_to(original_grid, arr[:, :3]))
    return [(float(z), float(y), float(x), float(s)) for (z, y, x), s in zip(pos, arr[:, 3])]
