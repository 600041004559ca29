"""Tests for byu_motor.data.targets: heatmap peaks on the right cell, analytic values, point/ball/smoothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from byu_motor.data.grid import Grid
from byu_motor.data.targets import (
    ball_target,
    gaussian_heatmap,
    heatmap_coords,
    make_target,
    point_target,
    smooth_labels,
)


def cell_of(motor_vox: np.ndarray, stride: int) -> tuple[int, ...]:
    """Cell k covers input voxels [k*s, (k+1)*s), i.e. continuous coordinates [k*s - 0.5, (k+1)*s - 0.5)."""
    return tuple(int(v) for v in np.floor((np.asarray(motor_vox) + 0.5) / stride))


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
@pytest.mark.parametrize("patch", [(33, 45, 51), (17, 29, 63)])
def test_gaussian_argmax_is_motor_cell(stride, patch):
    spacing = 10.0
    patch_grid = Grid(patch, spacing)
    rng = np.random.default_rng(stride)
    for _ in range(5):
        motor = rng.uniform(1.0, np.asarray(patch) - 2.0)
        heat, cells = heatmap_coords(patch_grid, stride, motor[None])
        target = make_target("gaussian", heat, cells, sigma_a=3.0 * spacing * stride)
        assert target.shape == tuple(math.ceil(n / stride) for n in patch)
        assert np.unravel_index(np.argmax(target), target.shape) == cell_of(motor, stride)


@pytest.mark.parametrize("stride", [1, 4])
def test_gaussian_values_are_analytic_in_angstrom(stride):
    spacing = np.array([20.0, 10.0, 10.0])  # anisotropic: the same physical sigma on every axis
    patch_grid = Grid((31, 41, 45), spacing)
    motor = np.array([[14.3, 20.6, 19.2]])
    sigma_a = 60.0
    heat, cells = heatmap_coords(patch_grid, stride, motor)
    target = make_target("gaussian", heat, cells, sigma_a=sigma_a, truncate=10.0)
    for k in [(3, 5, 4), (2, 4, 6), (0, 0, 0), cell_of(motor[0], stride)]:
        if any(a >= n for a, n in zip(k, target.shape)):
            continue
        centre_vox = np.asarray(k) * stride + (stride - 1) / 2.0  # the ARCHITECTURE.md contract
        dist_a = (centre_vox - motor[0]) * spacing
        expected = math.exp(-float(dist_a @ dist_a) / (2 * sigma_a**2))
        assert target[k] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_gaussian_is_max_over_motors():
    centres = np.array([[5.0, 5.0, 5.0], [5.0, 5.0, 9.0]])
    t = gaussian_heatmap((11, 11, 15), centres, 1.0, truncate=3.0)
    assert t[5, 5, 5] == pytest.approx(1.0)
    assert t[5, 5, 9] == pytest.approx(1.0)
    # midway both motors are 2 sigma away: max (not sum) gives exp(-2)
    assert t[5, 5, 7] == pytest.approx(math.exp(-2.0), rel=1e-5)
    assert t[5, 5, 11] == pytest.approx(math.exp(-2.0), rel=1e-5)  # 2 sigma beyond the second motor
    assert t[5, 5, 1] == 0.0  # 4 sigma from the nearer motor: beyond the 3 sigma truncation


def test_gaussian_truncation_cuts_beyond_three_sigma():
    t = gaussian_heatmap((21, 21, 21), [[10.0, 10.0, 10.0]], 2.0, truncate=3.0)
    assert t[10, 10, 10 + 6] == pytest.approx(math.exp(-4.5), rel=1e-5)  # exactly 3 sigma: kept
    assert t[10, 10, 10 + 7] == 0.0  # 3.5 sigma: cut
    assert t[10 + 5, 10 + 5, 10] == 0.0  # corner of the box, 3.5 sigma away: cut


def test_motor_outside_patch_contributes_tail():
    t = gaussian_heatmap((8, 8, 8), [[-2.0, 4.0, 4.0]], 1.5)
    assert t[0, 4, 4] == pytest.approx(math.exp(-4.0 / (2 * 1.5**2)), rel=1e-5)
    assert point_target((8, 8, 8), [[-2.0, 4.0, 4.0]]).sum() == 0.0


def test_point_target_marks_nearest_cell():
    t = point_target((5, 6, 7), [[1.4, 2.6, 6.49], [0.0, 0.0, 0.0]])
    assert t.sum() == 2.0
    assert t[1, 3, 6] == 1.0 and t[0, 0, 0] == 1.0


def test_ball_target_radius_per_axis():
    t = ball_target((15, 15, 15), [[7.0, 7.0, 7.0]], (2.0, 4.0, 4.0))
    assert t[7, 7, 7] == 1.0
    assert t[9, 7, 7] == 1.0 and t[10, 7, 7] == 0.0  # radius 2 along z
    assert t[7, 11, 7] == 1.0 and t[7, 12, 7] == 0.0  # radius 4 along y
    assert t[7, 10, 10] == 0.0  # (3^2 + 3^2) / 16 > 1
    small = ball_target((5, 5, 5), [[2.3, 2.3, 2.3]], 0.1)
    assert small.sum() == 1.0 and small[2, 2, 2] == 1.0  # a ball smaller than a cell keeps its cell


def test_label_smoothing_maps_to_eps_range():
    heat = Grid((4, 4, 4), 10.0)
    t = make_target("point", heat, [[1.0, 2.0, 3.0]], sigma_a=10.0, label_smoothing=0.1)
    assert t.max() == pytest.approx(0.9) and t.min() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        smooth_labels(np.zeros(3, np.float32), 0.6)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="unknown target kind 'box'"):
        make_target("box", Grid((4, 4, 4), 1.0), [[1, 1, 1]], 1.0)
