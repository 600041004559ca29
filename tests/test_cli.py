"""The `byu-motor` dispatcher: version, help, and the score command end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from byu_motor import __version__
from byu_motor.cli import main


def test_version_via_python_m():
    out = subprocess.run(
        [sys.executable, "-m", "byu_motor", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"byu-motor {__version__}"


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_score_command_prints_f2_last(tmp_path, capsys):
    ax = ["Motor axis 0", "Motor axis 1", "Motor axis 2"]
    sol = pd.DataFrame(
        [("a", 10, 10, 10, 10.0), ("b", -1, -1, -1, 10.0)], columns=["tomo_id", *ax, "Voxel spacing"]
    )
    sub = pd.DataFrame([("a", 12, 10, 10), ("b", 5, 5, 5)], columns=["tomo_id", *ax])
    sol.to_csv(tmp_path / "sol.csv", index=False)
    sub.to_csv(tmp_path / "sub.csv", index=False)
    assert main(["score", str(tmp_path / "sol.csv"), str(tmp_path / "sub.csv")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"F2 = {5 / 6:.4f}"
    assert any("FP = 1" in ln for ln in lines)


def test_score_names_what_false_positives_hit(tmp_path, capsys):
    ax = ["Motor axis 0", "Motor axis 1", "Motor axis 2"]
    sol = pd.DataFrame(
        [("a", 10, 10, 10, 10.0), ("b", -1, -1, -1, 10.0)], columns=["tomo_id", *ax, "Voxel spacing"]
    )
    sub = pd.DataFrame([("a", 12, 10, 10), ("b", 5, 5, 5)], columns=["tomo_id", *ax])
    granule = {"kind": "granule", "zyx": [5.0, 6.0, 5.0], "radius_nm": 3.0}
    meta = {t: {"shape": [20, 20, 20], "voxel_spacing": 10.0, "distractors": [granule]} for t in "ab"}
    sol.to_csv(tmp_path / "sol.csv", index=False)
    sub.to_csv(tmp_path / "sub.csv", index=False)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    args = [
        "score",
        str(tmp_path / "sol.csv"),
        str(tmp_path / "sub.csv"),
        "--synth-meta",
        str(tmp_path / "meta.json"),
    ]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "false positives hit: granule 1" in lines and "misplaced predictions hit: none" in lines
    assert lines[-1].startswith("F2 = ")


def _score_files(tmp_path, sub_text: str):
    """A valid solution and a submission made of ``sub_text``; returns the score command's argv."""
    ax = ["Motor axis 0", "Motor axis 1", "Motor axis 2"]
    sol = pd.DataFrame(
        [("a", 10, 10, 10, 10.0), ("b", -1, -1, -1, 10.0)], columns=["tomo_id", *ax, "Voxel spacing"]
    )
    sol.to_csv(tmp_path / "sol.csv", index=False)
    path = tmp_path / "sub.csv"
    if isinstance(sub_text, bytes):
        path.write_bytes(sub_text)
    else:
        path.write_text(sub_text)
    return ["score", str(tmp_path / "sol.csv"), str(path)]


def test_unexpected_error_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    from byu_motor.commands import score

    def broken(args):
        raise TypeError("boom")

    monkeypatch.setattr(score, "run", broken)
    argv = _score_files(tmp_path, "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\na,1,1,1\nb,-1,-1,-1\n")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "byu-motor score: unexpected error: TypeError: boom (rerun with --debug for the traceback)"
    ]
    assert main(["--debug", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "TypeError: boom" in err
    assert main([*argv, "--debug"]) == 1  # also after the command
    assert "Traceback" in capsys.readouterr().err


def test_expected_errors_exit_2_naming_the_file_and_create_nothing(tmp_path, capsys):
    missing = tmp_path / "nothere.csv"
    assert main(["score", str(missing), str(missing)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("byu-motor score: error: ") and "nothere.csv" in err[0]
    (tmp_path / "data" / "test").mkdir(parents=True)
    out = tmp_path / "new_folder" / "sub.csv"
    argv = ["predict", str(tmp_path / "data"), "--checkpoints", str(tmp_path / "no.pt"), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("byu-motor predict: error: ") and "no.pt" in err[0]
    assert not (tmp_path / "new_folder").exists()
    assert main(["recipe", str(tmp_path / "bad.json")]) == 2
    assert "bad.json" in capsys.readouterr().err


HEADER = "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\n"


@pytest.mark.parametrize(
    "text,expected",
    [
        (HEADER + "a,1,1,1\nb,-1,-5,-1\n", "line 3 (data row 2, b)"),  # negative, not the -1 triple
        (HEADER + "a,1,-2,1\nb,-1,-1,-1\n", "line 2 (data row 1, a)"),
        (HEADER + "a,1,1,1\na,-1,-1,-1\n", "line 3: tomo_id 'a' appears twice"),
        (HEADER + "a,1,nan,1\nb,-1,-1,-1\n", "line 2 (a): column 'Motor axis 1'"),
        (HEADER + "a,1,x,1\nb,-1,-1,-1\n", "line 2 (a): column 'Motor axis 1' holds 'x'"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        ('{"tomo_id": "a", "Motor axis 0": 1}', "looks like JSON"),
    ],
)
def test_score_rejects_a_bad_submission_with_file_and_line(tmp_path, capsys, text, expected):
    argv = _score_files(tmp_path, text)
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"byu-motor score: error: {tmp_path / 'sub.csv'}: ")
    assert expected in err[0]
