"""Tests of the preview figure: what is drawn where (recorded marks), its size, outcome and caption."""

from __future__ import annotations

import numpy as np
from PIL import Image

from byu_motor.data.grid import Grid
from byu_motor.viz import draw_preview, outcome_of, save_preview


def _volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(60, 140, size=(80, 64, 72), dtype=np.uint8)


def test_missed_motor_is_drawn_on_its_own_slice(tmp_path) -> None:
    # a candidate at z=43 above the threshold and a motor at z=66, 23 voxels (1150 A at 50 A) away: a miss
    volume, spacing_a = _volume(), 50.0
    grid = Grid(volume.shape, spacing_a).strided(4)
    preview = save_preview(
        tmp_path / "miss.png", volume, [(43.0, 30.0, 30.0, 0.9), (10.0, 10.0, 10.0, 0.2)],
        np.zeros(grid.shape, np.float32), grid, truth=[[66.0, 32.0, 33.0]], title="tomo_m",
        spacing_a=spacing_a, threshold=0.5,
    )  # fmt: skip
    truth_z = [m for m in preview.marks if m.kind == "truth" and m.view == "z"]
    assert [m.slice for m in truth_z] == [66]
    assert all(m.slice != 43 for m in truth_z)
    best_z = [m for m in preview.marks if m.kind == "best" and m.view == "z"]
    assert [m.slice for m in best_z] == [43]
    # the truth's own row (the second) goes through it on all three axes
    own_row = {(m.view, m.slice) for m in preview.marks if m.kind == "truth" and m.row == 1}
    assert own_row == {("z", 66), ("y", 32), ("x", 33)}
    assert preview.outcome == "misplaced"
    assert "tomo_m" in preview.caption and "50.0 A" in preview.caption and "0.900" in preview.caption
    with Image.open(preview.path) as im:
        assert im.size[0] >= 900


def test_hit_marks_both_points_in_one_row() -> None:
    volume = _volume()
    preview = draw_preview(volume, [(40.0, 30.0, 30.0, 0.3)], truth=[[42.0, 31.0, 30.0]], spacing_a=50.0,
                           threshold=0.5)  # fmt: skip
    assert {m.row for m in preview.marks} == {0}
    assert {m.kind for m in preview.marks} == {"below", "truth"}
    assert preview.outcome == "miss"  # below the threshold
    assert outcome_of([40.0, 30.0, 30.0, 0.6], np.array([[42.0, 31.0, 30.0]]), 0.5, 50.0) == "hit"
    assert outcome_of([40.0, 30.0, 30.0, 0.6], np.zeros((0, 3)), 0.5, 50.0) == "false positive"
    assert outcome_of(None, np.zeros((0, 3)), 0.5, 50.0) == "true negative"


def test_no_candidate_draws_the_middle() -> None:
    volume = _volume()
    preview = draw_preview(volume, [], spacing_a=20.0)
    assert preview.marks == [] and preview.outcome == "no detection"
    titles = [ax.get_title() for ax in preview.figure.axes]
    assert "z = 40  (y, x)" in titles and "y = 32  (z, x)" in titles
