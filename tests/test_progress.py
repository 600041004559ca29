"""byu_motor.progress: plain lines off a terminal, tqdm bars on one, nothing when quiet."""

from __future__ import annotations

import pytest

from byu_motor import progress


@pytest.fixture(autouse=True)
def _loud():
    was = progress.is_quiet()
    progress.set_quiet(False)
    yield
    progress.set_quiet(was)


def test_line_bar_prints_first_throttled_and_last_lines(capsys, monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    bar = progress.bar(4, "predict", unit="tomo")  # capsys' stderr is not a terminal: plain lines
    assert isinstance(bar, progress.LineBar)
    bar.update(1)  # 0 s after the first line: not printed
    clock[0] += progress.LINE_INTERVAL_S + 1
    bar.set_postfix_str("level tta=none")
    bar.update(1)  # printed: the interval has passed
    bar.update(1)
    bar.update(1)  # the total: always printed
    bar.close()  # nothing more
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "predict: 0/4 tomo (0%), 0:00 elapsed"
    assert lines[1] == "predict: 2/4 tomo (50%), 0:11 elapsed, ETA 0:11, level tta=none"
    assert lines[2] == "predict: 4/4 tomo (100%), 0:11 elapsed, level tta=none"
    assert len(lines) == 3


def test_line_bar_without_total_and_resumed_eta(capsys, monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    with progress.bar(None, "cache", unit="tomo") as bar:
        bar.update(3)
    with progress.bar(10, "train fold 1", unit="step", initial=6) as bar:
        clock[0] += 20.0
        bar.set_postfix(loss="0.5000")
        bar.update(2)  # 2 steps in 20 s, 2 to go: 20 s left (the 6 resumed steps do not count)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["cache: 0 tomo, 0:00 elapsed", "cache: 3 tomo, 0:00 elapsed"]
    assert lines[2] == "train fold 1: 6/10 step (60%), 0:00 elapsed"
    assert lines[3] == "train fold 1: 8/10 step (80%), 0:20 elapsed, ETA 0:20, loss=0.5000"


def test_quiet_silences_bars_and_status(capsys) -> None:
    progress.set_quiet(True)
    progress.status("synthesise: 3 tomograms")
    with progress.bar(3, "synthesise") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
    progress.set_quiet(False)
    progress.status("synthesise: 3 tomograms")
    assert capsys.readouterr().err == "synthesise: 3 tomograms\n"


def test_a_terminal_gets_a_tqdm_bar(monkeypatch) -> None:
    from tqdm.auto import tqdm

    monkeypatch.setattr(progress, "use_bars", lambda: True)
    bar = progress.bar(2, "predict", unit="tomo")
    try:
        assert isinstance(bar, tqdm) and bar.desc == "predict"
    finally:
        bar.close()
    assert isinstance(
        progress.bar(2, "predict", disable=True), progress.LineBar
    )  # a disabled bar prints nothing


def test_clock_format() -> None:
    assert progress._clock(75.2) == "1:15"
    assert progress._clock(3725) == "1:02:05"
