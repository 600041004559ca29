"""The run report opens in headless Chromium with every image loaded and no console errors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from byu_motor.data.grid import Grid
from byu_motor.report.run_report import write_run_report
from byu_motor.viz import save_preview

SPACING_A = 100.0  # 1000 A = 10 voxels


def _report(tmp_path):
    rng = np.random.default_rng(1)
    volume = rng.integers(50, 150, size=(24, 40, 40), dtype=np.uint8)
    grid = Grid(volume.shape, SPACING_A).strided(4)
    heatmap = np.zeros(grid.shape, np.float32)
    candidates = {"tomo_hit": [[10.0, 20.0, 20.0, 0.9]], "tomo_miss": [[5.0, 5.0, 5.0, 0.2]],
                  "tomo_fp": [[12.0, 12.0, 30.0, 0.8], [3.0, 3.0, 3.0, 0.1]]}  # fmt: skip
    truth = {"tomo_hit": [12.0, 21.0, 20.0], "tomo_miss": [15.0, 30.0, 30.0], "tomo_fp": [-1.0, -1.0, -1.0]}
    rows = [[t, *truth[t], SPACING_A] for t in candidates]
    labels = tmp_path / "solution.csv"
    columns = ["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2", "Voxel spacing"]
    pd.DataFrame(rows, columns=columns).to_csv(labels, index=False)
    for tomo_id, cands in candidates.items():
        motors = [truth[tomo_id]] if truth[tomo_id][0] >= 0 else []
        save_preview(tmp_path / "previews" / f"{tomo_id}.png", volume, cands, heatmap, grid, truth=motors,
                     title=tomo_id, spacing_a=SPACING_A, threshold=0.5)  # fmt: skip
    summary = {"threshold": 0.5, "rows": 3, "devices": ["cpu"], "timings_s": {"read": 1.5, "forward": 2.25},
               "note": "<script>alert('x')</script>"}  # fmt: skip
    return write_run_report(tmp_path / "report", summary, candidates, labels, tmp_path / "previews")


def test_report_page_loads_every_image(tmp_path, page) -> None:
    index = _report(tmp_path)
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
    # three previews and the precision-recall curve
    assert len(images) == 4
    assert all(complete and width > 0 for complete, width, _ in images), images
    assert page.errors == []
    text = page.inner_text("body")
    # the previews are grouped by outcome, the escaped text shows as text, timings and scores are listed
    assert "Hits (1)" in text and "Misses (1)" in text and "False positives (1)" in text
    assert "<script>alert('x')</script>" in text
    assert "forward" in text and "2.25" in text
    # one hit, one false positive, one miss: precision = recall = F2 = 1/2
    scores = page.eval_on_selector_all("#scores tbody td", "cells => cells.map(c => c.textContent)")
    assert scores == ["0.5", "0.5", "0.5", "1", "1", "1", "0", "0"]
    outcomes = page.eval_on_selector_all(
        "#tomograms tbody tr", "rows => rows.map(r => r.lastChild.textContent)"
    )
    assert outcomes == ["hit", "miss", "false positive"]
