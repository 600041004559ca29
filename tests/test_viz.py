"""Tests of the PNG preview: size, and marker colours at the expected pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from byu_motor.data.grid import Grid
from byu_motor.viz import DETECTION_RGB, GAP, TITLE_H, TRUTH_RGB, save_preview


def ring_hit(img: np.ndarray, cy: float, cx: float, radius: float, colour: tuple[int, int, int]) -> int:
    """How many of 8 compass points on the circle have a pixel of `colour` within 1 px."""
    hits = 0
    for ang in np.linspace(0, 2 * np.pi, 8, endpoint=False):
        y, x = cy + radius * np.sin(ang), cx + radius * np.cos(ang)
        patch = img[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2]
        hits += bool((patch == colour).all(axis=-1).any())
    return hits


def test_preview_size_and_markers(tmp_path) -> None:
    volume = np.full((20, 60, 80), 100, dtype=np.uint8)
    spacing_a = 50.0  # 1000 A = 20 voxels
    heatmap = np.zeros((5, 15, 20), dtype=np.float32)
    heatmap[2, 7, 12] = 1.0  # cell centre at original voxel (7 * 4 + 1.5, 12 * 4 + 1.5) = (29.5, 49.5)
    grid = Grid(volume.shape, spacing_a).strided(4)
    path = save_preview(
        tmp_path / "p.png",
        volume,
        [(9.0, 30.0, 40.0, 0.9)],
        heatmap,
        grid,
        truth=np.array([[10.0, 25.0, 20.0]]),
        title="tomo_x",
        spacing_a=spacing_a,
        threshold=0.5,
    )
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (TITLE_H + 60, 2 * 80 + GAP, 3)
    top = TITLE_H
    # detection: circle of radius 20 voxels around (y, x) = (30, 40) on the slice panel and on the heatmap
    assert ring_hit(img, top + 30, 40, 20, DETECTION_RGB) >= 7
    assert ring_hit(img, top + 30, 80 + GAP + 40, 20, DETECTION_RGB) >= 7
    assert ring_hit(img, top + 25, 20, 20, TRUTH_RGB) >= 6
    # the slice pixels inside the circle keep the grey of the volume
    assert tuple(img[top + 30 + 8, 40 + 8]) == (100, 100, 100)
    # heatmap panel: the hot cell (4x4 voxels at y 28..31, x 48..51) is white, elsewhere black
    assert tuple(img[top + 29, 80 + GAP + 49]) == (255, 255, 255)
    assert tuple(img[top + 5, 80 + GAP + 5]) == (0, 0, 0)


def test_preview_scales_large_slices_and_handles_no_candidate(tmp_path) -> None:
    volume = np.zeros((4, 100, 300), dtype=np.uint8)
    volume[2] = 200  # the middle slice is shown when there is no candidate
    grid = Grid(volume.shape, 10.0).strided(4)
    path = save_preview(
        tmp_path / "q.png", volume, [], np.zeros(grid.shape, np.float32), grid, max_panel_px=150
    )
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (TITLE_H + 50, 2 * 150 + GAP, 3)
    assert tuple(img[TITLE_H + 25, 75]) == (200, 200, 200)
