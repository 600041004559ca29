"""Tests of byu_motor.data.layout: the label file, tomogram folders and the sample submission."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from byu_motor.data.layout import (
    LABEL_COLUMNS,
    LabelError,
    TomoRecord,
    count_mismatches,
    labels_to_frame,
    list_tomograms,
    read_labels,
    read_sample_submission,
    solution_frame,
)

HEADER = ",".join(LABEL_COLUMNS)


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_real_label_file_figures(real_labels_csv: Path) -> None:
    records = read_labels(real_labels_csv)
    assert len(records) == 648
    assert sum(r.n_motors for r in records.values()) == 451
    # Distribution of labelled motors per tomogram (COMPETITION.md).
    assert Counter(r.n_motors for r in records.values()) == {0: 286, 1: 317, 2: 26, 3: 6, 4: 9, 6: 3, 10: 1}
    assert count_mismatches(records) == ["tomo_2b3cdf", "tomo_62eea8", "tomo_c84b8e", "tomo_e6f7f7"]
    rec = records["tomo_2b3cdf"]
    assert rec.n_motors_column == 2 and rec.n_motors == 1
    assert Counter(r.shape for r in records.values()).most_common(1)[0][0] == (300, 960, 928)
    depths = Counter(r.shape[0] for r in records.values())
    assert (depths[300], depths[500], depths[800]) == (428, 113, 102)
    assert Counter(round(r.spacing_a, 1) for r in records.values())[13.1] == 263
    first = next(iter(records.values()))
    assert (
        first.tomo_id == "tomo_003acc" and first.motors.shape == (0, 3) and first.shape == (500, 1912, 1847)
    )
    assert records["tomo_00e047"].motors.tolist() == [[169.0, 546.0, 603.0]]
    assert records["tomo_00e047"].motors.dtype == np.float64


def test_round_trip_real_file(real_labels_csv: Path, tmp_path: Path) -> None:
    records = read_labels(real_labels_csv)
    frame = labels_to_frame(records)
    original = pd.read_csv(real_labels_csv)
    assert list(frame.columns) == list(LABEL_COLUMNS)
    pd.testing.assert_frame_equal(frame, original, check_dtype=False)
    frame.to_csv(tmp_path / "again.csv", index=False)
    again = read_labels(tmp_path / "again.csv")
    assert list(again) == list(records)
    assert all(again[k] == records[k] for k in records)


def test_rows_of_one_tomogram_need_not_be_adjacent(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "l.csv",
        [
            "0,tomo_b,10,20,30,40,50,60,13.1,2",
            "1,tomo_a,-1,-1,-1,8,9,10,15.6,0",
            "2,tomo_b,11,21,31,40,50,60,13.1,2",
        ],
    )
    records = read_labels(path)
    assert list(records) == ["tomo_b", "tomo_a"]
    np.testing.assert_array_equal(records["tomo_b"].motors, [[10, 20, 30], [11, 21, 31]])
    assert records["tomo_a"].motors.shape == (0, 3) and not records["tomo_a"].has_motor
    assert count_mismatches(records) == []


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["0,t,1,2,3,10,10,10,13.1,1", "1,t,1,x,3,10,10,10,13.1,1"], "row_id '1' (line 3)"),
        (["0,t,1,2,10,10,10,10,13.1,1"], "outside its array shape"),
        (["0,t,-1,2,3,10,10,10,13.1,1"], "partial -1"),
        (["0,t,1,2,3,10,10,10,13.1,2", "7,t,4,5,6,10,11,10,13.1,2"], "row_id '7' (line 3)"),
        (["0,t,1,2,3,10,10,10,13.1,2", "1,t,4,5,6,10,10,10,15.6,2"], "voxel spacing"),
        (["0,t,-1,-1,-1,10,10,10,13.1,0", "1,t,4,5,6,10,10,10,13.1,0"], "-1 (no motor) row"),
        (["0,t,1,2,3,10,10,10,-3,1"], "spacing must be positive"),
        (["0,t,1,2,3,10,10.5,10,13.1,1"], "Array shape (axis 1)"),
    ],
)
def test_bad_label_files_name_the_row(tmp_path: Path, rows: list[str], message: str) -> None:
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(LabelError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        read_labels(path)
    assert str(path) in str(info.value)


def test_motor_on_last_voxel_is_inside(tmp_path: Path) -> None:
    records = read_labels(write_csv(tmp_path / "l.csv", ["0,t,9,0,9.0,10,10,10,13.1,1"]))
    np.testing.assert_array_equal(records["t"].motors, [[9, 0, 9]])


def test_missing_column(tmp_path: Path) -> None:
    header = HEADER.replace(",Voxel spacing", "")
    path = write_csv(tmp_path / "bad.csv", ["0,t,1,2,3,10,10,10,1"], header=header)
    with pytest.raises(LabelError, match="missing column.*Voxel spacing"):
        read_labels(path)
    assert issubclass(LabelError, ValueError)


def test_solution_frame_takes_first_motor_or_minus_one() -> None:
    records = [
        TomoRecord("a", (10, 20, 30), 13.1, np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), 2),
        TomoRecord("b", (10, 20, 30), 15.6, np.zeros((0, 3)), 0),
    ]
    sol = solution_frame(records)
    assert list(sol.columns) == ["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2", "Voxel spacing"]
    assert sol.values.tolist() == [["a", 1.0, 2.0, 3.0, 13.1], ["b", -1.0, -1.0, -1.0, 15.6]]


def test_labels_to_frame_small_case() -> None:
    records = {
        "a": TomoRecord("a", (10, 20, 30), 13.1, np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), 2),
        "b": TomoRecord("b", (7, 8, 9), 15.6, np.zeros((0, 3)), 0),
    }
    frame = labels_to_frame(records)
    assert frame["row_id"].tolist() == [0, 1, 2]
    assert frame["tomo_id"].tolist() == ["a", "a", "b"]
    assert frame.iloc[2, 2:].tolist() == [-1.0, -1.0, -1.0, 7, 8, 9, 15.6, 0]


def test_record_is_frozen_and_compares_by_value() -> None:
    rec = TomoRecord("a", (1, 2, 3), 10.0, [[0.0, 1.0, 2.0]], 1)
    assert rec == TomoRecord("a", (1, 2, 3), 10.0, np.array([[0.0, 1.0, 2.0]]), 1)
    assert rec != TomoRecord("a", (1, 2, 3), 10.0, np.array([[0.0, 1.0, 2.5]]), 1)
    with pytest.raises(AttributeError):
        rec.tomo_id = "b"  # type: ignore[misc]
    with pytest.raises(ValueError):
        rec.motors[0, 0] = 5.0
    mine = np.zeros((1, 3))
    TomoRecord("b", (1, 2, 3), 10.0, mine, 1)
    mine[0, 0] = 1.0  # the caller's array stays writable (the record holds a copy)


def test_list_tomograms(tmp_path: Path) -> None:
    for name in ["tomo_b", "tomo_a", ".cache", "tomo_10"]:
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert list_tomograms(tmp_path) == ["tomo_10", "tomo_a", "tomo_b"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_tomograms(tmp_path / "nowhere")


def test_read_sample_submission(tmp_path: Path) -> None:
    good = tmp_path / "s.csv"
    good.write_text("tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\ntomo_a,-1,-1,-1\n0123,5,6.5,7\n")
    frame = read_sample_submission(good)
    assert frame["tomo_id"].tolist() == ["tomo_a", "0123"]  # ids stay strings
    assert frame["Motor axis 1"].tolist() == [-1.0, 6.5]
    bad = tmp_path / "bad.csv"
    bad.write_text("tomo_id,Motor axis 0,Motor axis 2\ntomo_a,-1,-1\n")
    with pytest.raises(LabelError, match="Motor axis 1"):
        read_sample_submission(bad)
    text = tmp_path / "text.csv"
    text.write_text("tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\ntomo_a,1,oops,3\n")
    with pytest.raises(LabelError, match="line 2"):
        read_sample_submission(text)


def test_read_motor_table_reads_both_label_formats(tmp_path, real_labels_csv):
    from byu_motor.data.layout import read_motor_table

    table = read_motor_table(real_labels_csv)
    assert len(table) == 648 and sum(len(m) for m in table.values()) == 451
    sol = tmp_path / "test_labels.csv"
    sol.write_text(
        "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2,Voxel spacing\ntomo_a,10,20,30,13.1\ntomo_b,-1,-1,-1,13.1\n"
    )
    table = read_motor_table(sol)
    assert table["tomo_a"].tolist() == [[10.0, 20.0, 30.0]]
    assert table["tomo_b"].shape == (0, 3)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        (b'[{"tomo_id": "a"}]', "looks like JSON"),
        (b"tomo_id,Motor axis 0\n\xe9t\xe9,1\n", "not UTF-8 text"),  # Latin-1, say
    ],
)
def test_label_readers_reject_files_that_are_not_csv(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    for reader in (read_labels, read_sample_submission):
        with pytest.raises(LabelError, match=f"labels.csv: {message}"):
            reader(path)
    with pytest.raises(LabelError, match="is a folder"):
        read_labels(tmp_path)


def test_label_reader_names_a_binary_line_past_the_first_64_kib(tmp_path: Path) -> None:
    rows = [f"{i},tomo_{i},-1,-1,-1,10,20,20,15.0,0" for i in range(3000)]
    path = write_csv(tmp_path / "labels.csv", rows)
    path.write_bytes(path.read_bytes() + b"3000,tomo_\xe9,1,1,1,10,20,20,15.0,1\n")
    with pytest.raises(LabelError, match=r"labels.csv: after line \d+: not UTF-8 CSV text"):
        read_labels(path)


def test_sample_submission_rejects_negative_coordinates_but_the_minus_one_triple(tmp_path: Path) -> None:
    path = tmp_path / "sub.csv"
    path.write_text("tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\na,-1,-1,-1\nb,3,-0.5,4\n")
    with pytest.raises(
        LabelError, match=r"sub.csv: line 3 \(data row 2, b\): coordinates \[3.0, -0.5, 4.0\]"
    ):
        read_sample_submission(path)
    path.write_text("tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\na,-1,-1,-1\nb,0,0,0\n")
    assert read_sample_submission(path)["Motor axis 0"].tolist() == [-1.0, 0.0]
