"""Disagreements by the 1000 A rule, the candidates CSV, and the page machinery's escaping."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from byu_motor.commands.predict import _write_report
from byu_motor.report.candidates import read_candidates_csv, read_truth, write_candidates_csv
from byu_motor.report.cases import find_cases, tomogram_cases
from byu_motor.report.page import json_script, render_page, table

SPACING_A = 100.0  # 1000 A = 10 voxels


def test_cases_follow_the_1000_a_rule() -> None:
    motors = np.array([[10.0, 10.0, 10.0], [40.0, 40.0, 40.0]])
    cands = [[10.0, 10.0, 19.0, 0.9], [40.0, 52.0, 40.0, 0.8], [70.0, 70.0, 70.0, 0.7], [0.0, 0.0, 0.0, 0.1]]
    cases = tomogram_cases("t", cands, motors, SPACING_A, floor=0.5)
    # 9 voxels (900 A) away: a match; 12 voxels: misplaced, paired with the second motor; then a false
    # positive (no label left); the 0.1 candidate is under the floor
    assert [(c.kind, c.candidate, c.label) for c in cases] == [
        ("misplaced", (40.0, 52.0, 40.0), (40.0, 40.0, 40.0)),
        ("fp", (70.0, 70.0, 70.0), None),
    ]
    assert cases[0].score == 0.8
    missed = tomogram_cases("t", [[10.0, 10.0, 10.0, 0.4]], motors[:1], SPACING_A, floor=0.5)
    assert [(c.kind, c.label, c.candidate) for c in missed] == [("missed", (10.0, 10.0, 10.0), None)]


def test_a_second_peak_next_to_a_matched_label_is_a_case() -> None:
    # two labels 6 voxels apart and a third motor between them, unlabelled: the best two candidates take one
    # label each, the third (within 1000 A of both labels) is left over and becomes a case
    motors = np.array([[10.0, 10.0, 10.0], [10.0, 10.0, 16.0]])
    cands = [[10.0, 10.0, 10.0, 0.9], [10.0, 10.0, 16.0, 0.8], [10.0, 14.0, 13.0, 0.7]]
    cases = tomogram_cases("t", cands, motors, SPACING_A, floor=0.5)
    assert [(c.kind, c.candidate) for c in cases] == [("fp", (10.0, 14.0, 13.0))]
    # one label, two candidates near it: the better one matches it, the nearer one is the case
    cases = tomogram_cases("t", cands[1:], motors[:1], SPACING_A, floor=0.5)
    assert [(c.kind, c.candidate) for c in cases] == [("fp", (10.0, 14.0, 13.0))]


def test_find_cases_skips_unpredicted_tomograms() -> None:
    truth = {"a": np.zeros((0, 3)), "b": np.array([[5.0, 5.0, 5.0]])}
    cases = find_cases({"a": [[1.0, 2.0, 3.0, 0.9]]}, truth, {"a": SPACING_A, "b": SPACING_A})
    assert [(c.tomo_id, c.kind) for c in cases] == [("a", "fp")]


def test_candidates_csv_round_trip_and_errors(tmp_path) -> None:
    path = write_candidates_csv(tmp_path / "c.csv", {"a": [[1, 2, 3, 0.25], [4, 5, 6, 0.75]], "b": []})
    assert read_candidates_csv(path) == {"a": [[4.0, 5.0, 6.0, 0.75], [1.0, 2.0, 3.0, 0.25]]}
    bad = tmp_path / "bad.csv"
    bad.write_text("tomo_id,z,y,x,score\na,1,2,3,0.5\na,1,two,3,0.5\n")
    with pytest.raises(ValueError, match=r"bad\.csv: line 3"):
        read_candidates_csv(bad)
    bad.write_text("tomo_id,z,y,x\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['score'\]"):
        read_candidates_csv(bad)


def test_read_truth_needs_a_spacing(tmp_path) -> None:
    path = tmp_path / "sol.csv"
    pd.DataFrame(
        [["a", 1.0, 2.0, 3.0]], columns=["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"]
    ).to_csv(path, index=False)
    with pytest.raises(ValueError, match="Voxel spacing"):
        read_truth(path)


def test_page_escapes_text() -> None:
    html = render_page("a <b> & c", table(["<h>"], [["<td>", 1.5, 2]]) + json_script("d", {"x": "</script>"}))
    assert "<title>a &lt;b&gt; &amp; c</title>" in html
    assert "<th>&lt;h&gt;</th><" in html and "<td>&lt;td&gt;</td>" in html
    assert '<td class="num">1.5</td><td class="num">2</td>' in html
    assert '</script>"' not in html and '<\\/script>"' in html


def test_predict_report_hunk_writes_page_and_candidates(tmp_path) -> None:
    df = pd.DataFrame({"tomo_id": ["a"], "Motor axis 0": [1], "Motor axis 1": [2], "Motor axis 2": [3]})
    df.attrs["summary"] = {"threshold": 0.4, "rows": 1}
    df.attrs["candidates"] = {"a": [[1.0, 2.0, 3.0, 0.5]]}
    args = argparse.Namespace(report=str(tmp_path / "rep"), labels=None, preview=None)
    page = _write_report(args, df)
    assert page == str(tmp_path / "rep" / "index.html")
    assert read_candidates_csv(tmp_path / "rep" / "candidates.csv") == {"a": [[1.0, 2.0, 3.0, 0.5]]}
    assert "no previews were written" in (tmp_path / "rep" / "index.html").read_text()
