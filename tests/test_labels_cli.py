"""`byu-motor labels diff/apply` and `synth --drop-labels`: real label files and tiny synthetic ones."""

from __future__ import annotations

import pandas as pd
import pytest

from byu_motor.cli import main
from byu_motor.data.label_edits import DECISION_COLUMNS, apply_labels_file, read_sourced_labels
from byu_motor.data.layout import TomoRecord, labels_to_frame, read_labels
from tests.conftest import SEED_LABELS

SEED = SEED_LABELS


def test_diff_official_to_gt_v3(capsys, real_labels_csv):
    assert main(["labels", "diff", str(real_labels_csv), str(SEED / "processed" / "gt_v3.csv")]) == 0
    out = capsys.readouterr().out
    assert "turned positive (negative->positive): 64" in out
    assert "turned negative (positive->negative): 0" in out
    assert "motors: 451 -> 577: added 126, removed 0, moved 0" in out
    assert "tomo_0333fa" in out  # the list of turned tomograms follows the counts


def _labels(tmp_path):
    recs = [
        TomoRecord("t_a", (100, 200, 200), 10.0, [[50.0, 100.0, 100.0]], 1),
        TomoRecord("t_b", (100, 200, 200), 10.0, [[20.0, 30.0, 40.0], [80.0, 150.0, 150.0]], 2),
        TomoRecord("t_c", (100, 200, 200), 10.0, [], 0),
    ]
    path = tmp_path / "labels.csv"
    labels_to_frame(recs).to_csv(path, index=False)
    return path


def _decisions(path, rows):
    pd.DataFrame(rows, columns=list(DECISION_COLUMNS)).to_csv(path, index=False)
    return path


def test_diff_counts_moved_added_removed(tmp_path, capsys):
    a = _labels(tmp_path)
    recs = read_labels(a)
    recs["t_a"] = TomoRecord("t_a", (100, 200, 200), 10.0, [[55.0, 100.0, 100.0]], 1)  # 50 A: moved
    recs["t_b"] = TomoRecord("t_b", (100, 200, 200), 10.0, [[20.0, 30.0, 40.0]], 1)  # one removed
    recs["t_c"] = TomoRecord("t_c", (100, 200, 200), 10.0, [[10.0, 10.0, 10.0]], 1)  # added: turned positive
    b = tmp_path / "b.csv"
    labels_to_frame(recs).to_csv(b, index=False)
    assert main(["labels", "diff", str(a), str(b), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "motors: 3 -> 3: added 1, removed 1, moved 1 (within 1000 A), unchanged 1" in out
    assert "turned positive (negative->positive): 1" in out and "t_c" not in out  # --quiet: no lists


def test_apply_each_decision(tmp_path, capsys):
    labels = _labels(tmp_path)
    dec = _decisions(
        tmp_path / "dec.csv",
        [
            ["t_c", "fp", "accept", 30, 40, 50, 0.9, "", "", ""],  # add
            ["t_c", "fp", "reject", 70, 70, 70, 0.8, "", "", ""],  # unchanged
            ["t_a", "misplaced", "accept", 52.5, 101, 99, 0.7, 50, 100, 100],  # move
            ["t_b", "missed", "reject", "", "", "", "", 80, 150, 150],  # remove
            ["t_b", "missed", "accept", "", "", "", "", 20, 30, 40],  # as keep
            ["t_b", "fp", "skip", 1, 1, 1, 0.5, "", "", ""],
            ["t_b", "fp", "keep", 2, 2, 2, 0.5, "", "", ""],
        ],
    )
    out = tmp_path / "new.csv"
    assert main(["labels", "apply", str(labels), str(dec), "--out", str(out), "--round", "2"]) == 0
    assert "3 of 7 decisions" in capsys.readouterr().out
    new = read_sourced_labels(out)
    assert new.records["t_c"].motors.tolist() == [[30.0, 40.0, 50.0]]
    assert new.sources["t_c"] == [("review round 2", 0.9)]
    assert new.records["t_a"].motors.tolist() == [[52.5, 101.0, 99.0]]
    assert new.records["t_b"].motors.tolist() == [[20.0, 30.0, 40.0]] and new.sources["t_b"] == [
        ("official", 1.0)
    ]
    frame = pd.read_csv(out)
    assert list(frame.columns[-2:]) == ["source", "conf"] and frame["Number of motors"].tolist() == [1, 1, 1]
    # applying again on the written file keeps the earlier sources
    dec2 = _decisions(tmp_path / "dec2.csv", [["t_a", "fp", "accept", 10, 10, 10, 0.3, "", "", ""]])
    apply_labels_file(out, dec2, tmp_path / "new2.csv", round_number=3)
    again = read_sourced_labels(tmp_path / "new2.csv")
    assert again.sources["t_a"] == [("review round 2", 0.7), ("review round 3", 0.3)]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (["t_a", "wrong", "accept", 1, 1, 1, 0.5, "", "", ""], "dec.csv:2: kind 'wrong'"),
        (["t_a", "fp", "maybe", 1, 1, 1, 0.5, "", "", ""], "dec.csv:2: decision 'maybe'"),
        (["t_a", "misplaced", "accept", 1, 1, 1, 0.5, "", "", ""], "dec.csv:2: a misplaced row needs label"),
        (["t_zz", "fp", "accept", 1, 1, 1, 0.5, "", "", ""], "dec.csv:2: tomo_id 't_zz'"),
        (["t_a", "missed", "reject", "", "", "", "", 9, 9, 9], "dec.csv:2: t_a has no labelled motor"),
        (
            ["t_a", "fp", "accept", "x", 1, 1, 0.5, "", "", ""],
            "dec.csv:2: cand_z, cand_y, cand_x must be numbers",
        ),
    ],
)
def test_apply_bad_row_exits_2_naming_file_and_line(tmp_path, capsys, row, reason):
    dec = _decisions(tmp_path / "dec.csv", [row])
    out = tmp_path / "new.csv"
    assert main(["labels", "apply", str(_labels(tmp_path)), str(dec), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert reason in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_synth_drop_labels_then_accepting_them_restores_the_labels(tmp_path, capsys):
    data = tmp_path / "synth"
    assert (
        main(
            ["synth", str(data), "--n-train", "4", "--n-test", "0", "--scale", "0.1", "--drop-labels", "0.5"]
        )
        == 0
    )
    assert "dropped" in capsys.readouterr().out
    import json

    meta = json.loads((data / "synth_meta.json").read_text())
    truth = {t: sorted(m["motors"]) for t, m in meta.items() if m["split"] == "train"}
    kept, dropped = read_labels(data / "train_labels.csv"), read_labels(data / "dropped_labels.csv")
    n_all = sum(len(v) for v in truth.values())
    n_dropped = sum(r.n_motors for r in dropped.values())
    assert n_dropped == round(0.5 * n_all) and n_dropped > 0
    for tid, motors in truth.items():
        both = kept[tid].motors.tolist() + (dropped[tid].motors.tolist() if tid in dropped else [])
        assert sorted(both) == motors
    rows = [[t, "fp", "accept", *m, 0.9, "", "", ""] for t, r in dropped.items() for m in r.motors.tolist()]
    dec = _decisions(tmp_path / "dec.csv", rows)
    assert (
        main(
            [
                "labels",
                "apply",
                str(data / "train_labels.csv"),
                str(dec),
                "--out",
                str(tmp_path / "fixed.csv"),
            ]
        )
        == 0
    )
    fixed = read_labels(tmp_path / "fixed.csv")
    assert {t: sorted(r.motors.tolist()) for t, r in fixed.items()} == truth
