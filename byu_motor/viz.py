"""PNG previews of detections: the slice through the detection and the heatmap's projection, with markers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from byu_motor.data.grid import Grid

DETECTION_RGB = (255, 0, 0)  # best candidate at or above the threshold
BELOW_RGB = (255, 165, 0)  # best candidate below the threshold
OTHER_RGB = (255, 255, 0)  # other candidates (heatmap panel)
TRUTH_RGB = (0, 255, 0)
TITLE_H = 28  # two lines of Pillow's default font
GAP = 4
HIT_RADIUS_A = 1000.0  # the metric's hit distance


def _hot(values: np.ndarray) -> np.ndarray:
    """``[0, 1]`` floats ``(H, W)`` -> uint8 RGB ``(H, W, 3)`` (black -> red -> yellow -> white)."""
    v = np.clip(np.nan_to_num(values.astype(np.float32)), 0.0, 1.0)
    rgb = np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def _panel_size(shape_yx: tuple[int, int], max_panel_px: int) -> tuple[int, int]:
    """Panel ``(height, width)``: the slice scaled down (never up) so its longest side fits ``max_panel_px``."""
    f = min(1.0, max_panel_px / max(shape_yx))
    return max(1, round(shape_yx[0] * f)), max(1, round(shape_yx[1] * f))


def _projection_image(
    heatmap: np.ndarray, heatmap_grid: Grid, original: Grid, panel_hw: tuple[int, int]
) -> np.ndarray:
    """Max over z of the heatmap, sampled at the panel's pixel centres through the grid map (RGB uint8)."""
    proj = np.asarray(heatmap, dtype=np.float32).reshape(-1, *np.shape(heatmap)[-2:]).max(axis=0)
    index = []
    for axis, n_panel in ((1, panel_hw[0]), (2, panel_hw[1])):
        n_orig = original.shape[axis]
        orig = (np.arange(n_panel) + 0.5) * (n_orig / n_panel) - 0.5  # panel pixel -> original voxel
        cell = (orig + 0.5) * (original.spacing_a[axis] / heatmap_grid.spacing_a[axis]) - 0.5
        index.append(np.clip(np.rint(cell).astype(np.int64), 0, proj.shape[axis - 1] - 1))
    return _hot(proj[np.ix_(index[0], index[1])])


def _canvas(slice_yx: np.ndarray, projection: np.ndarray) -> Image.Image:
    """Black canvas with a title bar over [the slice scaled to the projection's size | the projection]."""
    hp, wp = projection.shape[:2]
    slice_img = Image.fromarray(np.ascontiguousarray(slice_yx).astype(np.uint8), mode="L")
    if (hp, wp) != slice_yx.shape:
        slice_img = slice_img.resize((wp, hp), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (2 * wp + GAP, TITLE_H + hp), (0, 0, 0))
    canvas.paste(slice_img.convert("RGB"), (0, TITLE_H))
    canvas.paste(Image.fromarray(projection, mode="RGB"), (wp + GAP, TITLE_H))
    return canvas


@dataclass(frozen=True)
class _Marks:
    """Draws markers at original voxels ``(y, x)`` on the two panels of a preview canvas.

    Args:
        draw: the canvas's drawing context.
        fy: panel pixels per original voxel along y.
        fx: panel pixels per original voxel along x.
        wp: panel width in pixels.
        radius: circle radius in panel pixels.
    """

    draw: ImageDraw.ImageDraw
    fy: float
    fx: float
    wp: int
    radius: float

    def to_px(self, y: float, x: float, panel: int) -> tuple[float, float]:
        return panel * (self.wp + GAP) + (x + 0.5) * self.fx - 0.5, TITLE_H + (y + 0.5) * self.fy - 0.5

    def circle(self, y: float, x: float, colour: tuple[int, int, int]) -> None:
        """A circle of ``radius`` on both panels."""
        r = self.radius
        for panel in (0, 1):
            cx, cy = self.to_px(y, x, panel)
            self.draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=2)

    def cross(self, y: float, x: float, colour: tuple[int, int, int], panel: int, size: float = 4) -> None:
        """A cross on one panel."""
        cx, cy = self.to_px(y, x, panel)
        self.draw.line((cx - size, cy, cx + size, cy), fill=colour)
        self.draw.line((cx, cy - size, cx, cy + size), fill=colour)


def save_preview(
    path: str | Path,
    volume: np.ndarray,
    candidates: Sequence[Sequence[float]],
    heatmap: np.ndarray,
    heatmap_grid: Grid,
    truth: np.ndarray | Sequence[Sequence[float]] | None = None,
    title: str = "",
    spacing_a: float | None = None,
    threshold: float | None = None,
    max_panel_px: int = 512,
) -> Path:
    """Write a PNG: a title bar over [slice through the best candidate | in-plane max projection of the heatmap].

    The slice is ``z = round(best z)`` (the middle slice when there is no candidate). The best candidate is a
    circle of the metric's 1000 A radius (red at or above ``threshold``, orange below), other candidates are
    yellow crosses on the heatmap panel, ground-truth motors are green circles on both panels.

    Image size: width ``2 * Wp + 4``, height ``28 + Hp`` where ``(Hp, Wp)`` is ``(Y, X)`` scaled by
    ``min(1, max_panel_px / max(Y, X))``. Original voxel ``(y, x)`` is drawn at panel pixel
    ``((y + 0.5) * Hp / Y - 0.5, (x + 0.5) * Wp / X - 0.5)``.

    Args:
        path: output PNG (folders created).
        volume: uint8 ``(Z, Y, X)``.
        candidates: ``(z, y, x, score)`` in original voxels, best first.
        heatmap: probabilities ``(D, H, W)`` on ``heatmap_grid``.
        heatmap_grid: the heatmap's grid (same physical volume as the tomogram).
        truth: ``(n, 3)`` motors ``(z, y, x)`` in original voxels.
        title: first line of the title bar.
        spacing_a: the tomogram's (assumed) spacing; ``None``: ``heatmap_grid`` extent / volume size in y.
        threshold: the detection threshold (colours the best candidate).
        max_panel_px: longest side of each panel in pixels.

    Returns:
        ``Path(path)``.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"save_preview expects a (Z, Y, X) volume, got shape {volume.shape}")
    n_z, n_y, n_x = volume.shape
    if spacing_a is None:
        spacing_a = heatmap_grid.extent_a[1] / n_y
    original = Grid(volume.shape, spacing_a)
    hp, wp = _panel_size((n_y, n_x), max_panel_px)
    fy, fx = hp / n_y, wp / n_x

    best = list(candidates[0]) if len(candidates) else None
    z0 = int(np.clip(round(best[0]), 0, n_z - 1)) if best is not None else n_z // 2
    canvas = _canvas(volume[z0], _projection_image(heatmap, heatmap_grid, original, (hp, wp)))
    draw = ImageDraw.Draw(canvas)
    marks = _Marks(draw, fy, fx, wp, HIT_RADIUS_A / float(spacing_a) * (fx + fy) / 2)
    truth_arr = np.asarray(truth, dtype=np.float64).reshape(-1, 3) if truth is not None else np.zeros((0, 3))
    for _tz, ty, tx in truth_arr:
        marks.circle(ty, tx, TRUTH_RGB)
    for cand in list(candidates)[1:]:
        marks.cross(cand[1], cand[2], OTHER_RGB, panel=1)
    if best is not None:
        accepted = threshold is None or best[3] >= threshold
        marks.circle(best[1], best[2], DETECTION_RGB if accepted else BELOW_RGB)
        marks.cross(best[1], best[2], DETECTION_RGB if accepted else BELOW_RGB, panel=0, size=3)

    legend = f"z={z0}/{n_z}  red: best ({'score ' + format(best[3], '.3f') if best else 'none'}), 1000 A"
    if len(truth_arr):
        legend += f"  green: truth z={','.join(str(int(round(t))) for t in truth_arr[:, 0])}"
    draw.text((3, 1), title, fill=(255, 255, 255))
    draw.text((3, 14), legend, fill=(200, 200, 200))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path
