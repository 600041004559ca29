"""The seed's target: each motor's Gaussian blob peaks at exactly 1.0 on its stride-16 grid, motors merged by max."""

from __future__ import annotations

import numpy as np

from byu_motor.data.grid import Grid
from byu_motor.data.targets import heatmap_coords, make_target, peak_gaussian_heatmap


def test_peak_cell_is_one_for_off_grid_motors_at_stride_16() -> None:
    rng = np.random.default_rng(0)
    patch = Grid((96, 160, 160), 16.0)
    for _ in range(20):
        motor = rng.uniform([10, 10, 10], [86, 150, 150])
        heat, cells = heatmap_coords(patch, 16, motor[None])
        target = make_target("gaussian_peak", heat, cells, 200.0)  # sigma 12.5 voxels = 0.78 cells
        plain = make_target("gaussian", heat, cells, 200.0)
        nearest = tuple(int(v) for v in np.floor((motor + 0.5) / 16))  # the cell holding the motor's voxel
        assert target[nearest] == 1.0 and target.max() == 1.0
        assert plain.max() < 1.0 or np.allclose(
            cells[0], np.rint(cells[0])
        )  # unnormalised peak is off the grid
        inner = plain > 0  # the plain target is cut at 3 sigma, the seed's at ~4.03
        assert np.allclose(target[inner], plain[inner] / plain.max(), atol=1e-6)
        assert np.count_nonzero(target) > np.count_nonzero(plain)


def test_motors_merge_by_max_and_outside_motors_leave_only_tails() -> None:
    centres = np.array([[2.3, 3.6, 3.2], [2.9, 4.4, 4.1], [2.0, 3.0, -1.6]])
    both = peak_gaussian_heatmap((5, 8, 8), centres, 0.8)
    one = peak_gaussian_heatmap((5, 8, 8), centres[:1], 0.8)
    two = peak_gaussian_heatmap((5, 8, 8), centres[1:2], 0.8)
    outside = peak_gaussian_heatmap((5, 8, 8), centres[2:], 0.8)
    assert np.array_equal(both, np.maximum(np.maximum(one, two), outside))
    assert both.max() == 1.0 and outside.max() < 0.5


def test_blob_is_cut_at_the_999_ellipsoid_and_follows_a_covariance() -> None:
    cov = np.array([[1.0, 0.0, 0.0], [0.0, 4.0, 1.5], [0.0, 1.5, 1.0]])
    t = peak_gaussian_heatmap((12, 20, 20), [[6.0, 10.0, 10.0]], cov)
    k = np.indices(t.shape).reshape(3, -1).T - [6.0, 10.0, 10.0]
    m2 = np.einsum("ni,ij,nj->n", k, np.linalg.inv(cov), k).reshape(t.shape)
    assert np.all(t[m2 > 16.266] == 0) and np.all(t[m2 <= 16.266] > 0)
    assert np.allclose(t[m2 <= 16.266], np.exp(-0.5 * m2[m2 <= 16.266]), atol=1e-6)
