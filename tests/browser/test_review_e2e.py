"""Issue 40 end to end: labels dropped from a synthetic set are found by a trained `tiny` checkpoint, listed by
`byu-motor review`, accepted with the keyboard in Chromium, exported and restored by `labels apply`."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from byu_motor.cli import main
from byu_motor.data.layout import MOTOR_COLUMNS, read_labels
from byu_motor.report.candidates import read_candidates_csv

FLOOR = 0.1
HIT_A = 1000.0


def _motors(records, tomo_id: str) -> np.ndarray:
    rec = records.get(tomo_id)
    return np.zeros((0, 3)) if rec is None else np.asarray(rec.motors, dtype=np.float64).reshape(-1, 3)


def _near(point, motors: np.ndarray, spacing_a: float) -> bool:
    """Whether ``point`` is within the metric's 1000 A of any of ``motors`` ``(n, 3)`` (voxels)."""
    return (
        bool(len(motors))
        and float(np.min(np.linalg.norm(motors - np.asarray(point), axis=1))) * spacing_a <= HIT_A
    )


def _found(cands, kept, dropped) -> list[tuple[str, np.ndarray]]:
    """Dropped motors found without ambiguity: a candidate above the floor within 1000 A of the dropped motor
    and of no kept label (a dropped motor packed next to a kept one is left out: either may own the peak)."""
    found = []
    for tomo_id, rec in dropped.items():
        for m in _motors(dropped, tomo_id):
            if any(
                c[3] >= FLOOR
                and _near(c[:3], m[None], rec.spacing_a)
                and not _near(c[:3], _motors(kept, tomo_id), rec.spacing_a)
                for c in cands.get(tomo_id, [])
            ):
                found.append((tomo_id, m))
    return found


@pytest.mark.slow
def test_dropped_labels_are_found_reviewed_and_restored(tmp_path, page) -> None:
    full, drop, run = tmp_path / "full", tmp_path / "drop", tmp_path / "run"
    assert (
        main(["synth", str(full), "--n-train", "10", "--n-test", "0", "--scale", "0.25", "--seed", "11"]) == 0
    )
    argv = ["synth", str(drop), "--n-train", "6", "--n-test", "0", "--scale", "0.25", "--seed", "12"]
    assert main([*argv, "--drop-labels", "0.5"]) == 0
    sets = ["train.steps=300", "train.val_every=300", "train.num_workers=0"]
    argv = ["train", str(full), "--preset", "tiny", "--out", str(run), "--fold", "0", "--no-progress"]
    assert main([*argv, *(x for s in sets for x in ("--set", s))]) == 0

    out = tmp_path / "review"
    argv = [
        "review",
        str(drop),
        "--checkpoints",
        str(run / "best.pt"),
        "--labels",
        str(drop / "train_labels.csv"),
    ]
    assert main([*argv, "--out", str(out), "--floor", str(FLOOR)]) == 0
    cands = read_candidates_csv(out / "candidates.csv")
    kept = read_labels(drop / "train_labels.csv")
    dropped = read_labels(drop / "dropped_labels.csv")
    found = _found(cands, kept, dropped)
    assert found, "the trained checkpoint found none of the dropped motors"

    page.goto((out / "index.html").as_uri())
    page.wait_for_selector("body[data-ready='1']")
    cards = page.evaluate("JSON.parse(document.getElementById('cases').textContent)")
    accept = []
    for card in cards:  # accept the fp cards that are a dropped motor, skip the rest
        hit = card["kind"] == "fp" and any(
            t == card["tomo_id"]
            and np.linalg.norm(np.subtract(card["candidate"], m)) * card["spacing_a"] <= HIT_A
            for t, m in found
        )
        accept.append(hit)
        page.keyboard.press("a" if hit else "s")
    # review listed every found dropped motor as a false-positive card
    for tomo_id, m in found:
        assert any(
            c["kind"] == "fp"
            and c["tomo_id"] == tomo_id
            and np.linalg.norm(np.subtract(c["candidate"], m)) * c["spacing_a"] <= HIT_A
            for c in cards
        ), (tomo_id, m)
    with page.expect_download() as info:
        page.keyboard.press("e")
    decisions = tmp_path / "decisions.csv"
    info.value.save_as(decisions)
    with open(decisions, newline="") as fh:
        assert sum(row["decision"] == "accept" for row in csv.DictReader(fh)) == sum(accept)
    assert page.errors == []

    fixed = tmp_path / "fixed.csv"
    assert main(["labels", "apply", str(drop / "train_labels.csv"), str(decisions), "--out", str(fixed)]) == 0
    new = read_labels(fixed)
    for tomo_id, motor in found:  # every found dropped motor is a motor again, within the metric's 1000 A
        assert _near(motor, _motors(new, tomo_id), dropped[tomo_id].spacing_a)
    restored = pd.read_csv(fixed)
    assert set(restored.loc[restored["source"] != "official", "tomo_id"]) <= set(dropped)
    for tomo_id in kept:  # nothing else changed
        if tomo_id not in dropped:
            np.testing.assert_array_equal(_motors(new, tomo_id), _motors(kept, tomo_id))
    assert list(MOTOR_COLUMNS) == [c for c in restored.columns if c.startswith("Motor axis")]
