"""The seed's peak decoder: 3x3x3 local maxima, floor, greedy L2 NMS in Angstrom, cell centres to voxels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from byu_motor.data.grid import Grid
from byu_motor.postprocess.seed_peaks import seed_decode_peaks, seed_find_peaks


def _two_peaks(gap_cells: int, axis: int = 2) -> torch.Tensor:
    h = torch.zeros(30, 30, 30)
    a = [10, 10, 5]
    b = list(a)
    b[axis] += gap_cells
    h[tuple(a)] = 0.9
    h[tuple(b)] = 0.6
    return h


def test_nms_radius_is_in_angstrom_per_axis():
    # 100 A cells: 9 cells = 900 A apart -> one kept; 11 cells = 1100 A -> both
    near = seed_find_peaks(_two_peaks(9), 100.0, radius_a=1000.0)
    assert [p[:3] for p in near] == [(10.0, 10.0, 5.0)]
    far = seed_find_peaks(_two_peaks(11), 100.0, radius_a=1000.0)
    assert [p[:3] for p in far] == [(10.0, 10.0, 5.0), (10.0, 10.0, 16.0)]
    assert [p[3] for p in far] == pytest.approx([0.9, 0.6])
    # anisotropic cells (300 A in z): 3 z cells = 900 A -> one, 4 z cells = 1200 A -> both
    h3, h4 = _two_peaks(3, axis=0), _two_peaks(4, axis=0)
    assert len(seed_find_peaks(h3, (300.0, 100.0, 100.0), 1000.0)) == 1
    assert len(seed_find_peaks(h4, (300.0, 100.0, 100.0), 1000.0)) == 2
    # the same 4 cells at 100 A are 400 A: suppressed
    assert len(seed_find_peaks(h4, 100.0, 1000.0)) == 1


def test_floor_local_maximum_and_max_peaks():
    h = torch.zeros(20, 20, 20)
    h[2, 2, 2] = 0.015  # below the 0.02 floor
    h[10, 10, 10] = 0.025
    h[10, 10, 11] = 0.024  # a shoulder of the peak above, not a 3x3x3 local maximum
    h[17, 17, 17] = 0.5
    peaks = seed_find_peaks(h, 100.0, radius_a=10.0, floor=0.02)
    assert [p[:3] for p in peaks] == [(17.0, 17.0, 17.0), (10.0, 10.0, 10.0)]
    assert peaks[1][3] == pytest.approx(0.025)
    # a lower floor lets the 0.015 peak in; max_peaks cuts to the best
    assert len(seed_find_peaks(h, 100.0, radius_a=10.0, floor=0.01)) == 3
    assert [p[:3] for p in seed_find_peaks(h, 100.0, 10.0, 0.01, max_peaks=1)] == [(17.0, 17.0, 17.0)]


def test_plateau_gives_one_peak_and_no_refinement():
    h = torch.zeros(8, 8, 8)
    h[3, 3, 3] = h[3, 3, 4] = 0.7  # both are local maxima (ties); the NMS keeps the first
    peaks = seed_find_peaks(h, 100.0, radius_a=150.0)
    assert [p[:3] for p in peaks] == [(3.0, 3.0, 3.0)]  # a cell index, not 3.5


def test_single_cell_peak_maps_to_its_cell_centre():
    # the seed's frame: a tomogram assumed at 13.1 A, resampled to 16 A, decoded at stride 8
    original = Grid((300, 500, 630), 13.1)
    res_shape = original.resampled(16.0).shape
    heat = original.with_shape(res_shape).strided(8)
    h = np.zeros(heat.shape, np.float32)
    cell = (5, 10, 12)
    h[cell] = 0.8
    ((z, y, x, s),) = seed_decode_peaks(h, heat, original, 1000.0, 0.02, 100)
    expected = [(c + 0.5) * 8 * n / r - 0.5 for c, n, r in zip(cell, original.shape, res_shape)]
    assert (z, y, x) == pytest.approx(expected, abs=1e-9)
    assert expected[0] == pytest.approx((5 + 0.5) * 8 * 16 / 13.1 - 0.5, abs=0.1)  # the seed's formula
    assert s == pytest.approx(0.8)


def test_non_finite_means_no_detection_and_shape_checked():
    g = Grid((8, 8, 8), 10.0)
    h = np.zeros(g.shape, np.float32)
    h[1, 1, 1] = np.inf
    assert seed_decode_peaks(h, g, g) == []
    with pytest.raises(ValueError):
        seed_decode_peaks(np.zeros((3, 3, 3)), g, g)


def test_optional_blur_in_angstrom_merges_noise_into_the_broad_peak():
    from byu_motor.postprocess.seed_peaks import blur_heatmap

    # a broad Gaussian blob (sigma 2 cells) and a one-cell spike higher than it, 6 cells away
    zz, yy, xx = np.meshgrid(*[np.arange(20)] * 3, indexing="ij")
    heat = 0.6 * np.exp(-((zz - 8) ** 2 + (yy - 8) ** 2 + (xx - 8) ** 2) / (2 * 2.0**2))
    heat[8, 8, 14] = 0.9
    grid = Grid((20, 20, 20), 100.0)
    original = Grid((20, 20, 20), 100.0)
    plain = seed_decode_peaks(torch.as_tensor(heat), grid, original, radius_a=300.0, floor=0.05)
    assert plain[0][:3] == (8.0, 8.0, 14.0)  # the spike wins unblurred
    blurred = seed_decode_peaks(
        torch.as_tensor(heat), grid, original, radius_a=300.0, floor=0.05, blur_a=200.0
    )
    assert blurred[0][:3] == (8.0, 8.0, 8.0)  # a 200 A (2-cell) blur leaves the broad blob on top
    # the sigma is in Angstrom: the same blur on 50 A cells is 4 cells wide
    one = torch.zeros(21, 21, 21)
    one[10, 10, 10] = 1.0
    b100, b50 = blur_heatmap(one, 100.0, 200.0), blur_heatmap(one, 50.0, 200.0)
    assert float(b50[10, 10, 10]) < float(b100[10, 10, 10]) and float(b100.sum()) == pytest.approx(
        1.0, abs=1e-4
    )
    assert torch.equal(blur_heatmap(one, 100.0, 0.0), one)
    with pytest.raises(ValueError):
        blur_heatmap(one, 100.0, -1.0)
