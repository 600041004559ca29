"""The review page built by `byu-motor review` from synthetic candidates: keyboard decisions, CSV export."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd

from byu_motor.cli import main
from byu_motor.data.io import write_tomogram

SPACING_A = 100.0  # 1000 A = 10 voxels
SHAPE = (24, 40, 40)
COLUMNS = "tomo_id,kind,decision,cand_z,cand_y,cand_x,score,label_z,label_y,label_x".split(",")


def _data(tmp_path):
    """Four train tomograms: an agreement, a misplaced candidate, a false positive and a missed motor."""
    labels = {
        "tomo_a": (10.0, 20.0, 20.0),
        "tomo_b": (12.0, 10.0, 10.0),
        "tomo_c": None,
        "tomo_d": (8.0, 8.0, 8.0),
    }
    rng = np.random.default_rng(2)
    rows = []
    for i, (tomo_id, motor) in enumerate(labels.items()):
        write_tomogram(
            rng.integers(40, 200, size=SHAPE, dtype=np.uint8), tmp_path / "data" / "train" / tomo_id
        )
        rows.append([i, tomo_id, *(motor or (-1.0, -1.0, -1.0)), *SHAPE, SPACING_A, int(motor is not None)])
    header = ["row_id", "tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2", "Array shape (axis 0)",
              "Array shape (axis 1)", "Array shape (axis 2)", "Voxel spacing", "Number of motors"]  # fmt: skip
    pd.DataFrame(rows, columns=header).to_csv(tmp_path / "train_labels.csv", index=False)
    cands = [("tomo_a", 11, 20, 21, 0.9), ("tomo_b", 12, 30, 30, 0.8), ("tomo_c", 5, 5, 5, 0.7),
             ("tomo_c", 5, 30, 30, 0.3), ("tomo_d", 8, 30, 30, 0.2)]  # fmt: skip
    pd.DataFrame(cands, columns=["tomo_id", "z", "y", "x", "score"]).to_csv(
        tmp_path / "cands.csv", index=False
    )


def test_review_keyboard_decisions_export_csv(tmp_path, page, capsys) -> None:
    _data(tmp_path)
    out = tmp_path / "review"
    argv = ["review", str(tmp_path / "data"), "--candidates", str(tmp_path / "cands.csv"), "--labels",
            str(tmp_path / "train_labels.csv"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "3 case(s) (fp 1, missed 1, misplaced 1)" in capsys.readouterr().out
    page.goto((out / "index.html").as_uri())
    page.wait_for_selector("body[data-ready='1']")
    assert page.inner_text("#progress").startswith("decided 0 / 3")
    # the misplaced card has a second row of views through its label
    assert page.eval_on_selector_all(".view img", "els => els.length") == 12
    assert page.eval_on_selector_all("#case-0 .views", "els => els.length") == 2
    # the misplaced card marks both points in its z view (same slice 12), the missed card only the label
    assert page.eval_on_selector_all("#case-0 circle.candidate", "els => els.length") >= 1
    assert page.eval_on_selector_all("#case-0 circle.label", "els => els.length") >= 1
    assert page.eval_on_selector_all("#case-2 circle.candidate", "els => els.length") == 0
    page.keyboard.press("a")  # case 0 (misplaced): accept the candidate, then on to case 1
    page.keyboard.press("r")  # case 1 (fp): reject
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("k")  # case 2 (missed): keep the label
    assert page.inner_text("#progress").startswith("decided 3 / 3")
    assert page.errors == []
    page.reload()  # decisions survive in localStorage
    page.wait_for_selector("body[data-ready='1']")
    assert page.inner_text("#progress").startswith("decided 3 / 3")
    with page.expect_download() as info:
        page.keyboard.press("e")
    path = tmp_path / "decisions.csv"
    info.value.save_as(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        rows = [[row[c] for c in COLUMNS] for row in reader]
    assert rows == [
        ["tomo_b", "misplaced", "accept", "12", "30", "30", "0.8", "12", "10", "10"],
        ["tomo_c", "fp", "reject", "5", "5", "5", "0.7", "", "", ""],
        ["tomo_d", "missed", "keep", "", "", "", "", "8", "8", "8"],
    ]
    assert page.errors == []
    # the exported decisions apply: tomo_b's motor moves onto the accepted candidate, nothing else changes
    fixed = tmp_path / "fixed.csv"
    argv = [
        "labels",
        "apply",
        str(tmp_path / "train_labels.csv"),
        str(path),
        "--out",
        str(fixed),
        "--round",
        "2",
    ]
    assert main(argv) == 0
    new = pd.read_csv(fixed).set_index("tomo_id")
    assert new.loc["tomo_b", ["Motor axis 0", "Motor axis 1", "Motor axis 2"]].tolist() == [12, 30, 30]
    assert new.loc["tomo_b", "source"] == "review round 2" and new.loc["tomo_b", "conf"] == 0.8
    assert new.loc["tomo_c", "Number of motors"] == 0
    assert new.loc["tomo_d", ["Motor axis 0", "Motor axis 1", "Motor axis 2"]].tolist() == [8, 8, 8]
    assert set(new.loc[["tomo_a", "tomo_d"], "source"]) == {"official"}


def test_review_click_decision(tmp_path, page) -> None:
    _data(tmp_path)
    out = tmp_path / "review"
    assert main(["review", str(tmp_path / "data"), "--candidates", str(tmp_path / "cands.csv"), "--labels",
                 str(tmp_path / "train_labels.csv"), "--out", str(out), "--floor", "0.75"]) == 0  # fmt: skip
    page.goto((out / "index.html").as_uri())
    page.wait_for_selector("body[data-ready='1']")
    # floor 0.75: tomo_c's 0.7 candidate no longer counts, tomo_b's 0.8 is still misplaced, tomo_d missed
    assert page.eval_on_selector_all(".card .head b", "els => els.map(e => e.textContent)") == [
        "tomo_b",
        "tomo_d",
    ]
    page.click("#case-1 button[data-decision='reject']")
    assert page.get_attribute("#case-1", "data-decision") == "reject"
    assert page.inner_text("#progress").startswith("decided 1 / 2")
