"""Envelope context: the dipole of the smoothed density around a point, and the gate built on it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage as ndi

from byu_motor.data.grid import Grid
from byu_motor.postprocess.context import (
    ContextGateSettings,
    apply_context_gate,
    envelope_contrast,
    envelope_dipole,
    gate_scores,
    robust_range,
    sphere_directions,
)
from byu_motor.postprocess.steps import build_steps

SHAPE = (60, 80, 90)


def step_volume(step_x: int, low: float = 80.0, high: float = 140.0) -> np.ndarray:
    """uint8 volume, ``low`` for x < step_x and ``high`` from there, with mild noise (a lit half-space)."""
    rng = np.random.default_rng(0)
    vol = np.full(SHAPE, low, dtype=np.float32)
    vol[..., step_x:] = high
    vol += rng.normal(0.0, 3.0, SHAPE).astype(np.float32)
    return np.clip(np.round(vol), 0, 255).astype(np.uint8)


def reference_contrast(volume, point, spacing_a, sigma_a, radius_a) -> float:
    """The feature computed the slow way: the whole volume normalised and smoothed, then the sphere sampled."""
    centre, scale = robust_range(volume)
    smooth = ndi.gaussian_filter(
        (volume.astype(np.float32) - centre) / scale, sigma_a / spacing_a, mode="nearest"
    )
    d = sphere_directions(64)
    v = ndi.map_coordinates(
        smooth, (np.asarray(point)[None] + d * radius_a / spacing_a).T, order=1, mode="nearest"
    )
    return float(np.linalg.norm((v - v.mean()) @ d) * 3 / len(d))


def test_sphere_directions_are_unit_and_balanced():
    d = sphere_directions(64)
    assert d.shape == (64, 3)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(d.mean(axis=0), 0.0, atol=0.02)
    # second moment of a uniform sphere: I / 3, which makes the dipole of a ramp equal its slope x radius
    np.testing.assert_allclose(d.T @ d / 64, np.eye(3) / 3, atol=0.01)
    with pytest.raises(ValueError):
        sphere_directions(3)


def test_a_point_on_the_step_scores_high_and_deep_points_score_near_zero():
    vol = step_volume(45)
    on, deep_low, deep_high = (30, 40, 45), (30, 40, 10), (30, 40, 80)
    c = envelope_contrast(vol, [on, deep_low, deep_high], spacing_a=10.0, sigma_a=30.0, radius_a=100.0)
    _, scale = robust_range(vol)
    # a centred step of height h: half the sphere at +h/2, half at -h/2, dipole 3/4 h (smoothing shaves a bit)
    assert c[0] == pytest.approx(0.75 * 60.0 / scale, rel=0.15)
    assert c[1] < 0.02 * c[0] and c[2] < 0.02 * c[0]


def test_the_sign_of_the_contrast_does_not_matter():
    vol = step_volume(45)
    points = [(30, 40, 45), (30, 40, 50), (20, 10, 38)]
    a = envelope_contrast(vol, points, 10.0, 30.0, 100.0)
    b = envelope_contrast(255 - vol, points, 10.0, 30.0, 100.0)
    np.testing.assert_allclose(a, b, rtol=0.02)


def test_a_float_volume_gives_the_uint8_figures_and_is_left_unchanged():
    # sigma 10 A at 10 A voxels: no block averaging, so the crop could alias the caller's float32 array
    vol = step_volume(45)
    points = [(30, 40, 45), (30, 40, 50), (20, 10, 38)]
    as_float = vol.astype(np.float32)
    before = as_float.copy()
    expected = envelope_contrast(vol, points, 10.0, 10.0, 100.0)
    np.testing.assert_allclose(envelope_contrast(as_float, points, 10.0, 10.0, 100.0), expected, rtol=1e-5)
    np.testing.assert_array_equal(as_float, before)


def test_a_ramp_gives_its_slope_times_the_radius():
    x = np.arange(SHAPE[2], dtype=np.float32)
    vol = np.broadcast_to(50.0 + 2.0 * x, SHAPE).astype(np.uint8)  # 2 grey levels per voxel along x
    _, scale = robust_range(vol)
    c = envelope_contrast(vol, [(30, 40, 45)], spacing_a=10.0, sigma_a=20.0, radius_a=150.0)
    assert c[0] == pytest.approx(2.0 * 15.0 / scale, rel=0.05)  # 15 voxels of radius


@pytest.mark.parametrize(
    "point", [(30.0, 40.0, 45.0), (29.4, 37.2, 49.6), (5.0, 40.0, 41.0), (30.0, 2.0, 47.0)]
)
def test_block_averaged_path_matches_the_whole_volume_computation(point):
    # at 10 A per voxel and sigma 60 A the neighbourhood is averaged in 3x3x3 blocks before smoothing;
    # points near a face exercise the clamped crops
    vol = step_volume(45)
    got = envelope_contrast(vol, [point], spacing_a=10.0, sigma_a=60.0, radius_a=150.0)[0]
    want = reference_contrast(vol, point, 10.0, 60.0, 150.0)
    assert got == pytest.approx(want, rel=0.05, abs=0.005)


def test_anisotropic_spacing_scales_each_axis():
    # the step lies along x; with x voxels twice as long, the same sphere in Angstrom spans half the x voxels
    vol = step_volume(45)
    iso = envelope_contrast(vol, [(30, 40, 47)], spacing_a=(10.0, 10.0, 10.0), sigma_a=30.0, radius_a=100.0)[
        0
    ]
    aniso = envelope_contrast(
        vol, [(30, 40, 47)], spacing_a=(10.0, 10.0, 20.0), sigma_a=30.0, radius_a=100.0
    )[0]
    want = reference_contrast(np.repeat(vol, 2, axis=2), (30, 40, 94.5), 10.0, 30.0, 100.0)
    assert aniso == pytest.approx(want, rel=0.1)
    assert aniso != pytest.approx(iso, rel=0.05)


def test_edge_cases_and_bad_arguments():
    vol = step_volume(45)
    assert envelope_contrast(vol, np.zeros((0, 3)), 10.0).shape == (0,)
    flat = np.full(SHAPE, 7, dtype=np.uint8)
    np.testing.assert_array_equal(envelope_contrast(flat, [(1, 2, 3)], 10.0), [0.0])
    with pytest.raises(ValueError):
        envelope_contrast(vol, [(1, 2, 3)], 10.0, sigma_a=0.0)
    with pytest.raises(ValueError):
        envelope_contrast(vol[0], [(1, 2, 3)], 10.0)
    with pytest.raises(ValueError):
        robust_range(flat)


def test_gate_damps_low_contrast_candidates_and_resorts():
    cands = [(1.0, 1.0, 1.0, 0.9), (2.0, 2.0, 2.0, 0.6), (3.0, 3.0, 3.0, 0.3)]
    out = gate_scores(cands, [0.05, 0.2, 0.15], threshold=0.1, floor=0.25)
    assert [c[:3] for c in out] == [(2.0, 2.0, 2.0), (3.0, 3.0, 3.0), (1.0, 1.0, 1.0)]
    assert out[0][3] == 0.6 and out[1][3] == 0.3 and out[2][3] == pytest.approx(0.225)
    assert gate_scores(cands, [0.2, 0.2, 0.2], 0.1, 0.0) == cands
    with pytest.raises(ValueError):
        gate_scores(cands, [0.1, 0.2], 0.1, 0.5)
    with pytest.raises(ValueError):
        gate_scores(cands, [0.1, 0.2, 0.3], 0.1, 1.5)


def test_apply_context_gate_uses_its_settings():
    vol = step_volume(45)
    cands = [(30.0, 40.0, 10.0, 0.9), (30.0, 40.0, 45.0, 0.5)]  # deep in the flat half, then on the step
    cfg = ContextGateSettings(threshold=0.05, floor=0.2, sigma_a=30.0, radius_a=100.0)
    out = apply_context_gate(cands, vol, 10.0, cfg)
    assert out == [(30.0, 40.0, 45.0, 0.5), (30.0, 40.0, 10.0, pytest.approx(0.18))]
    contrast = envelope_contrast(vol, [c[:3] for c in cands], 10.0, 30.0, 100.0)
    assert out == gate_scores(cands, contrast, 0.05, 0.2)
    # a 0 threshold leaves the candidates alone
    assert apply_context_gate(cands, vol, 10.0, dataclasses.replace(cfg, threshold=0.0)) == cands
    assert apply_context_gate([], vol, 10.0, cfg) == []
    # the registered step is the same gate at the grid's spacing
    (step,) = build_steps(
        [{"name": "context_gate", "threshold": 0.05, "floor": 0.2, "sigma_a": 30, "radius_a": 100}]
    )
    assert step(cands, vol, Grid(vol.shape, 10.0)) == out


def test_context_gate_settings_are_checked():
    with pytest.raises(ValueError, match="threshold and lateral"):
        ContextGateSettings(threshold=-0.1)
    with pytest.raises(ValueError, match="floor"):
        build_steps([{"name": "context_gate", "floor": 2.0}])
    with pytest.raises(ValueError, match="radius_a"):
        ContextGateSettings(radius_a=0.0)


def test_dipole_points_to_the_brighter_side_and_its_length_is_the_contrast():
    vol = step_volume(45)
    points = [(30, 40, 45), (30, 40, 10)]
    d = envelope_dipole(vol, points, 10.0, 30.0, 100.0)
    assert d.shape == (2, 3)
    assert d[0, 2] > 0.1 and abs(d[0, 0]) < 0.02 and abs(d[0, 1]) < 0.02  # along +x, where it is brighter
    assert envelope_dipole(255 - vol, points, 10.0, 30.0, 100.0)[0, 2] < -0.1
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), envelope_contrast(vol, points, 10.0, 30.0, 100.0))
    assert envelope_dipole(vol, np.zeros((0, 3)), 10.0).shape == (0, 3)


def test_lateral_gate_damps_a_step_across_z_only():
    cfg = ContextGateSettings(threshold=0.05, floor=0.2, sigma_a=30.0, radius_a=100.0)
    lateral = dataclasses.replace(cfg, lateral=0.1)
    across_x, across_z = step_volume(45), np.ascontiguousarray(np.swapaxes(step_volume(30), 0, 2))
    on_x, on_z = (30.0, 40.0, 45.0, 0.5), (30.0, 40.0, 30.0, 0.5)
    assert across_z.shape == (90, 80, 60) and across_z[20, 40, 30] < across_z[40, 40, 30]
    dz = envelope_dipole(across_z, [on_z[:3]], 10.0, 30.0, 100.0)[0]
    assert dz[0] > 0.1 and np.linalg.norm(dz[1:]) < 0.02
    # the plain gate passes both steps; the lateral one only the step across x
    assert apply_context_gate([on_x], across_x, 10.0, cfg) == [on_x]
    assert apply_context_gate([on_z], across_z, 10.0, cfg) == [on_z]
    assert apply_context_gate([on_x], across_x, 10.0, lateral) == [on_x]
    assert apply_context_gate([on_z], across_z, 10.0, lateral) == [(30.0, 40.0, 30.0, pytest.approx(0.1))]
