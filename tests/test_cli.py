"""The `byu-motor` dispatcher: version, help, and the score command end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd

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
