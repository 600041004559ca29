"""Peak decoding: NMS keeps separated maxima and drops neighbours, refinement, grid mapping, non-finite input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from byu_motor.data.grid import Grid
from byu_motor.postprocess.peaks import decode_peaks, find_peaks, nms_kernel_cells


def test_kernel_cells_are_odd():
    assert nms_kernel_cells(400.0, (80.0, 80.0, 80.0)) == (5, 5, 5)
    assert nms_kernel_cells(400.0, (100.0, 200.0, 1000.0)) == (5, 3, 1)  # 4 -> 5, 2 -> 3, 0 -> 1
    assert nms_kernel_cells((300.0, 300.0, 700.0), (100.0, 100.0, 100.0)) == (3, 3, 7)


def test_nms_keeps_separated_maxima_and_suppresses_neighbour():
    h = torch.zeros(16, 16, 16)
    h[3, 3, 3] = 0.9
    h[3, 3, 4] = 0.8  # neighbour of the first: suppressed
    h[10, 11, 12] = 0.7
    peaks = find_peaks(h, (3, 3, 3), topk=5, refine=False)
    assert [p[:3] for p in peaks[:2]] == [(3.0, 3.0, 3.0), (10.0, 11.0, 12.0)]
    assert [p[3] for p in peaks[:2]] == pytest.approx([0.9, 0.7])
    assert all(p[3] == 0.0 for p in peaks[2:])  # the rest is flat background
    # a smaller kernel (1 cell) keeps the neighbour too
    assert (3.0, 3.0, 4.0) in [p[:3] for p in find_peaks(h, (1, 1, 1), topk=3, refine=False)]


def test_topk_and_plateau_ties():
    h = torch.zeros(8, 8, 8)
    h[2, 2, 2] = h[2, 2, 3] = 1.0  # a two-cell plateau: one peak
    h[6, 6, 6] = 0.5
    peaks = find_peaks(h, (3, 3, 3), topk=2, refine=False)
    assert len(peaks) == 2
    assert peaks[0][:3] == (2.0, 2.0, 2.0) and peaks[1][:3] == (6.0, 6.0, 6.0)
    # refinement puts the plateau's peak half-way between its two cells
    refined = find_peaks(h, (3, 3, 3), topk=1, refine=True)[0]
    assert refined[:3] == pytest.approx((2.0, 2.0, 2.5))


def test_refinement_hand_computed_centroid():
    h = torch.full((7, 7, 7), 0.1)
    h[3, 3, 3] = 0.9
    h[3, 3, 4] = 0.5  # weights above the neighbourhood minimum 0.1: 0.8 at x=3, 0.4 at x=4
    z, y, x, s = find_peaks(h, (3, 3, 3), topk=1, refine=True)[0]
    assert (z, y) == pytest.approx((3.0, 3.0))
    assert x == pytest.approx((3 * 0.8 + 4 * 0.4) / 1.2)
    assert s == pytest.approx(0.9)


def test_decode_maps_cells_to_original_voxels():
    original = Grid((40, 40, 36), 10.0)
    heat_grid = original.strided(4)  # (10, 10, 9) cells of 40 A
    h = np.zeros(heat_grid.shape, np.float32)
    h[2, 3, 1] = 0.8
    (z, y, x, s), *_ = decode_peaks(h, heat_grid, original, nms_kernel_a=120.0, topk=1, refine=False)
    assert (z, y, x) == pytest.approx((2 * 4 + 1.5, 3 * 4 + 1.5, 1 * 4 + 1.5))  # k*s + (s-1)/2
    assert s == pytest.approx(0.8)
    # a cell of the padded border maps outside the volume: clipped into it
    odd = Grid((41, 40, 37), 10.0)
    hg = odd.strided(4)
    h2 = np.zeros(hg.shape, np.float32)
    h2[-1, 0, -1] = 0.5
    z2, _, x2, _ = decode_peaks(h2, hg, odd, 120.0, 1, refine=False)[0]
    assert z2 == 40.0 and x2 == 36.0


def test_non_finite_heatmap_means_no_detection():
    g = Grid((8, 8, 8), 10.0)
    h = np.zeros(g.shape, np.float32)
    h[1, 1, 1] = np.nan
    assert decode_peaks(h, g, g, 30.0, 3) == []
    with pytest.raises(ValueError):
        decode_peaks(np.zeros((3, 3, 3)), g, g, 30.0, 3)


def test_drop_border_keeps_inner_candidates_in_order():
    from byu_motor.postprocess.peaks import drop_border

    cands = [(5.0, 50.0, 1.0, 0.9), (50.0, 50.0, 50.0, 0.8), (99.0, 50.0, 50.0, 0.7), (10.0, 10.0, 10.0, 0.6)]
    assert drop_border(cands, (100, 100, 100), 0.0) == cands
    assert drop_border(cands, (100, 100, 100), 0.05) == [cands[1], cands[3]]
    assert drop_border(cands, (100, 100, 100), 0.15) == [cands[1]]
    with pytest.raises(ValueError, match="margin"):
        drop_border(cands, (100, 100, 100), 0.5)
