"""Resume keeps only what it should: changed, failed and shed-level rows are redone; nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from byu_motor.data.io import write_tomogram
from byu_motor.infer.resume import folder_fingerprint, supersedes
from tests.infer.test_runner import (  # noqa: F401 (vclock is a fixture)
    BLOBS,
    BUDGET_CFG,
    expected_row,
    factory,
    level_sequence,
    make_volume,
    run,
    vclock,
    virtual_run,
)

LEVEL0 = "tta=flip_z,rot90|models=2|overlap=0"


@pytest.fixture()
def data(tmp_path) -> Path:
    """A fresh test folder per test (the tests change it)."""
    root = tmp_path / "data"
    for tomo_id in BLOBS:
        write_tomogram(make_volume(tomo_id), root / "test" / tomo_id, quality=100)
    return root


def predicted(log_path: Path) -> list[str]:
    """The tomograms a fake predictor was called on (then forgets them)."""
    if not log_path.exists():
        return []
    out = log_path.read_text().split()
    log_path.unlink()
    return out


def touch_later(folder: Path) -> None:
    """Move every file's mtime 1 s on, so the folder listing changes even on a coarse clock."""
    for f in folder.iterdir():
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_rerun_predicts_a_repaired_corrupt_tomogram(data, ckpts, tmp_path) -> None:
    out, log_path = tmp_path / "s.csv", tmp_path / "calls.txt"
    slice_path = data / "test" / "tomo_b" / "slice_0002.jpg"
    good = slice_path.read_bytes()
    slice_path.write_bytes(b"\xff\xd8 not a jpeg")
    df = run(data, ckpts, out, predictor_factory=factory(log_path=log_path))
    assert df.set_index("tomo_id").loc["tomo_b"].tolist() == [-1, -1, -1]
    assert df.attrs["summary"]["read_errors"] == 1 and not df.attrs["summary"]["finished"]
    predicted(log_path)
    slice_path.write_bytes(good)  # repaired
    df = run(data, ckpts, out, predictor_factory=factory(log_path=log_path))
    assert predicted(log_path) == ["tomo_b"]
    assert df.values.tolist() == [expected_row(t, 0.5) for t in sorted(BLOBS)]
    assert df.attrs["summary"]["finished"]


def test_failed_rows_are_redone(data, ckpts, tmp_path) -> None:
    out, log_path = tmp_path / "s.csv", tmp_path / "calls.txt"
    df = run(data, ckpts, out, predictor_factory=factory(fail_ids={"tomo_d"}, log_path=log_path))
    assert df.set_index("tomo_id").loc["tomo_d"].tolist() == [-1, -1, -1]
    assert len(predicted(log_path)) == 10
    df = run(data, ckpts, out, predictor_factory=factory(log_path=log_path))
    assert predicted(log_path) == ["tomo_d"]  # same input, but it failed: predicted again
    assert df.set_index("tomo_id").loc["tomo_d"].tolist() == [1, 12, 12]


def test_changed_input_folder_is_redone(data, ckpts, tmp_path) -> None:
    out, log_path = tmp_path / "s.csv", tmp_path / "calls.txt"
    run(data, ckpts, out)
    folder = data / "test" / "tomo_c"
    before = folder_fingerprint(folder)
    write_tomogram(make_volume("tomo_e"), folder, quality=100)  # tomo_c now holds tomo_e's blob
    touch_later(folder)
    assert folder_fingerprint(folder) != before
    df = run(data, ckpts, out, predictor_factory=factory(log_path=log_path))
    assert predicted(log_path) == ["tomo_c"]
    assert df.set_index("tomo_id").loc["tomo_c"].tolist() == [4, 3, 9]
    assert df.attrs["summary"]["resumed"] == 9


def shed_run(vclock, data, ckpts, out) -> list[str]:  # noqa: F811
    """A tight budgeted run that sheds; returns the tomograms left at a shed level."""
    df, _ = virtual_run(vclock, data, ckpts, out, 1.2, unit_s=0.03)
    assert df.attrs["summary"]["predicted"] == 10 and not df.attrs["summary"]["finished"]
    lines = out.with_name(out.name + ".partial.jsonl").read_text().splitlines()[1:]
    shed = [json.loads(line)["tomo_id"] for line in lines if json.loads(line)["level"] != LEVEL0]
    assert shed
    return shed


def test_shed_rows_are_redone_when_the_rerun_has_time(vclock, data, ckpts, tmp_path) -> None:  # noqa: F811
    out, log_path = tmp_path / "s.csv", tmp_path / "calls.txt"
    shed = shed_run(vclock, data, ckpts, out)
    df = run(data, ckpts, out, config=BUDGET_CFG, predictor_factory=factory(log_path=log_path))
    assert predicted(log_path) == shed
    assert df.attrs["summary"]["levels"] == {LEVEL0: 10} and df.attrs["summary"]["finished"]
    assert df.values.tolist() == [expected_row(t, 0.5) for t in sorted(BLOBS)]


def test_shed_rows_are_redone_with_an_ample_budget(vclock, data, ckpts, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "s.csv"
    shed = shed_run(vclock, data, ckpts, out)
    df, _ = virtual_run(vclock, data, ckpts, out, 30.0, unit_s=0.03)
    assert level_sequence(out)[-len(shed) :] == [LEVEL0] * len(shed)
    assert df.attrs["summary"]["levels"] == {LEVEL0: 10}


def test_shed_rows_are_kept_when_the_rerun_has_no_time(vclock, data, ckpts, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "s.csv"
    shed_run(vclock, data, ckpts, out)
    first = out.read_bytes()
    lines_before = level_sequence(out)
    df, _ = virtual_run(vclock, data, ckpts, out, 0.05, unit_s=0.03)
    assert level_sequence(out) == lines_before  # nothing tried
    assert out.read_bytes() == first and df.attrs["summary"]["predicted"] == 10


def test_a_failed_redo_keeps_the_shed_row(vclock, data, ckpts, tmp_path) -> None:  # noqa: F811
    out, log_path = tmp_path / "s.csv", tmp_path / "calls.txt"
    shed = shed_run(vclock, data, ckpts, out)
    first = out.read_bytes()
    bad = factory(fail_ids=set(shed), log_path=log_path)
    df = run(data, ckpts, out, config=BUDGET_CFG, predictor_factory=bad)
    assert predicted(log_path) == shed and out.read_bytes() == first
    assert df.attrs["summary"]["predicted"] == 10 and df.attrs["summary"]["predict_errors"] == 0
    # and so on reload: the failure lines are in the file, the shed rows still stand
    df = run(data, ckpts, out, config=BUDGET_CFG, predictor_factory=factory(log_path=log_path))
    assert predicted(log_path) == shed and df.attrs["summary"]["levels"] == {LEVEL0: 10}


def test_supersedes_rule() -> None:
    old = {"status": "ok", "input": "x", "level_index": 2}
    assert supersedes({"status": "ok", "input": "x", "level_index": 0}, old)
    assert not supersedes({"status": "ok", "input": "x", "level_index": 2}, old)
    assert not supersedes({"status": "predict_error", "input": "x"}, old)
    assert supersedes({"status": "read_error", "input": "y"}, old)  # the input changed: the old row is void
    assert supersedes(
        {"status": "ok", "input": "x", "level_index": 3}, {"status": "read_error", "input": "x"}
    )


def test_finished_run_marker_and_fresh_start(data, ckpts, tmp_path) -> None:
    out, log_path = tmp_path / "s.csv", tmp_path / "calls.txt"
    run(data, ckpts, out)
    marker = tmp_path / "s.csv.partial.done"
    assert marker.exists()
    run(data, ckpts, out, predictor_factory=factory(log_path=log_path))
    assert predicted(log_path) == [] and marker.exists()  # CSV still there: the finished rows stand
    out.unlink()  # asks for a fresh start
    df = run(data, ckpts, out, predictor_factory=factory(log_path=log_path))
    assert predicted(log_path) == sorted(BLOBS) and df.attrs["summary"]["resumed"] == 0
    assert (tmp_path / "s.csv.partial.jsonl.prev").exists() and marker.exists()


def test_a_finished_run_removes_its_partial_file_an_unfinished_one_keeps_it(data, ckpts, tmp_path) -> None:
    out = tmp_path / "s.csv"
    partial, marker = tmp_path / "s.csv.partial.jsonl", tmp_path / "s.csv.partial.done"
    failing = sorted(BLOBS)[0]
    df = run(data, ckpts, out, keep_partial=False, predictor_factory=factory(fail_ids=(failing,)))
    assert df.attrs["summary"]["predict_errors"] == 1 and not df.attrs["summary"]["finished"]
    assert partial.exists() and not marker.exists()  # kept: the next run resumes from it
    log_path = tmp_path / "calls.txt"
    df = run(data, ckpts, out, keep_partial=False, predictor_factory=factory(log_path=log_path))
    assert predicted(log_path) == [failing] and df.attrs["summary"]["finished"]
    assert out.exists() and not partial.exists() and not marker.exists()


_KILLED_RUN = """
from byu_motor.config import InferConfig
from tests.infer.test_runner import FakePredictor, fake_inspector
from byu_motor.infer.runner import run_prediction

def slow(checkpoints, config, device):
    return FakePredictor(checkpoints, config, device, unit_s=0.15)

run_prediction({data!r}, {ckpts!r}, {out!r}, InferConfig(threshold="fixed", threshold_value=0.5),
               devices=["cpu"], predictor_factory=slow, checkpoint_inspector=fake_inspector)
"""


def test_kill_9_then_rerun_gives_a_byte_identical_csv(data, ckpts, tmp_path) -> None:
    clean = tmp_path / "clean.csv"
    run(data, ckpts, clean)
    out = tmp_path / "killed.csv"
    partial = tmp_path / "killed.csv.partial.jsonl"
    root = str(Path(__file__).resolve().parents[2])
    script = _KILLED_RUN.format(data=str(data), ckpts=ckpts, out=str(out))
    # run from the repository root: `python -c` puts the working directory first on the import path
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) >= 1 + 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    df = run(data, ckpts, out)
    assert 3 <= df.attrs["summary"]["resumed"] < 10
    assert out.read_bytes() == clean.read_bytes()
    assert pd.read_csv(out)["tomo_id"].tolist() == sorted(BLOBS)


def test_no_redo_when_the_first_phase_ran_out_of_time(vclock, data, ckpts, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "s.csv"
    shed = shed_run(vclock, data, ckpts, out)
    # two new tomograms too slow for the budget: the first phase stops, the shed rows are not touched
    for tomo_id in ("tomo_k", "tomo_l"):
        write_tomogram(make_volume("tomo_a"), data / "test" / tomo_id, quality=100)
    before = level_sequence(out)
    df, _ = virtual_run(vclock, data, ckpts, out, 0.35, unit_s=0.1)
    assert df.attrs["summary"]["not_reached"] == 1 and df.attrs["summary"]["redo_offered"] == len(shed)
    assert level_sequence(out) == [*before, LEVEL0]  # tomo_k only
    assert df.set_index("tomo_id").loc["tomo_k"].tolist() == [2, 5, 6]
