"""Salient points: planted blobs are found (dark or bright), motors and faces are skipped, sizes scale."""

from __future__ import annotations

import numpy as np
import pytest

from byu_motor.data.salient import salient_points


def blob_volume(shape, centres, radius_vox, amplitude=-60.0, seed=0):
    """Grey 120 with Gaussian noise and one ball of ``amplitude`` per centre."""
    rng = np.random.default_rng(seed)
    vol = rng.normal(120.0, 6.0, shape)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    for c in centres:
        d2 = sum((g - v) ** 2 for g, v in zip(grids, c))
        vol += amplitude * (d2 <= radius_vox**2)
    return np.clip(vol, 0, 255).astype(np.uint8)


CENTRES = [(20, 30, 40), (40, 70, 25), (25, 60, 80)]


@pytest.mark.parametrize("amplitude", [-60.0, 60.0])
def test_planted_blobs_are_the_strongest_points(amplitude):
    vol = blob_volume((60, 100, 110), CENTRES, radius_vox=4, amplitude=amplitude)
    pts = salient_points(vol, spacing_a=60.0, radius_a=250.0, max_points=10)
    assert pts.shape[1] == 3 and 3 <= len(pts) <= 10
    top = pts[:3]
    for c in CENTRES:  # every planted ball is one of the three strongest points, within 2 voxels
        assert np.linalg.norm(top - np.array(c), axis=1).min() <= 2.0


def test_exclusion_and_faces_are_skipped():
    vol = blob_volume((60, 100, 110), CENTRES, radius_vox=4)
    pts = salient_points(vol, 60.0, 250.0, exclude=np.array([CENTRES[0]]), exclude_a=1000.0)
    d = np.linalg.norm((pts - np.array(CENTRES[0])) * 60.0, axis=1)
    assert d.min() > 1000.0
    assert np.linalg.norm(pts - np.array(CENTRES[1]), axis=1).min() <= 2.0
    # a dark slab on a face gives the strongest response of all, but faces are not searched
    vol[:3] = 0
    pts = salient_points(vol, 60.0, 250.0)
    assert pts[:, 0].min() >= 4.0 - 0.5


def test_fine_spacing_is_block_averaged_and_mapped_back():
    # 15 A voxels: the 250 A ball is 16 voxels across; points come back in the volume's own voxels
    c = (48, 100, 90)
    vol = blob_volume((96, 160, 176), [c], radius_vox=14, amplitude=-50.0)
    pts = salient_points(vol, (15.0, 15.0, 15.0), 250.0, max_points=5)
    assert np.linalg.norm(pts[0] - np.array(c)) <= 8.0  # within half a block of 8 voxels


def test_small_volume_gives_no_points_and_bad_args_raise():
    assert salient_points(np.zeros((2, 2, 2), np.uint8), 60.0).shape == (0, 3)
    with pytest.raises(ValueError, match="spacing_a"):
        salient_points(np.zeros((8, 8, 8), np.uint8), 0.0)
