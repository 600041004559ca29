"""The stage timer: exclusive time per stage, and on a tiny run the stages add up to the wall time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from byu_motor.config import InferConfig
from byu_motor.data.io import read_tomogram, write_tomogram
from byu_motor.infer import Predictor
from byu_motor.infer.budget import build_levels
from byu_motor.infer.stage_timer import (
    STAGES,
    StageTimer,
    active,
    run_stages,
    stage,
    timed_iter,
    total_stages,
)
from byu_motor.infer.workers import WorkerJob, run_worker
from tests.infer.test_predictor import CENTRE, SPACING_A, ball_volume, spec


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nested_stages_are_charged_their_exclusive_time():
    clock = FakeClock()
    timer = StageTimer(clock=clock)
    with active(timer):
        with stage("fusion"):
            clock.now += 1.0
            with stage("forward"):
                clock.now += 3.0
                with stage("upload"):
                    clock.now += 0.5
            with stage("peaks"):
                clock.now += 2.0
            clock.now += 0.25
        with stage("forward"):
            clock.now += 1.0
    assert timer.take() == {"fusion": 1.25, "forward": 4.0, "upload": 0.5, "peaks": 2.0}
    assert timer.take() == {}


def test_stage_without_an_active_timer_does_nothing_and_sync_runs_at_boundaries():
    with stage("forward"):
        pass
    calls = []
    timer = StageTimer(sync=lambda: calls.append(1))
    with timer.stage("forward"):
        pass
    assert len(calls) == 2


def test_timed_iter_charges_the_wait_for_each_item():
    clock = FakeClock()
    timer = StageTimer(clock=clock)

    def slow():
        for k in range(3):
            clock.now += 2.0
            yield k

    assert list(timed_iter(slow(), timer, "read")) == [0, 1, 2]
    assert timer.take() == {"read": 6.0}


def test_totals_sum_the_tomograms_in_stage_order():
    out = total_stages([{"forward": 1.0, "read": 0.5}, {"forward": 2.0, "custom": 1.0}], {"threshold": 0.25})
    assert list(out) == ["read", "forward", "threshold", "custom", "sum_s"]
    assert out["forward"] == 3.0 and out["sum_s"] == 4.75
    recs = [{"stages": {"forward": 1.0}, "startup_s": 2.0, "decode_s": 0.5}, {"status": "read_error"}]
    run = run_stages(recs, time.monotonic())
    assert run["tomograms"] == 1 and run["startup_s"] == 2.0 and run["decode_s"] == 0.5
    assert 0.0 <= run["threshold"] < 1.0


@pytest.mark.parametrize("on_device", [True, False])
def test_stages_add_up_to_the_wall_time_of_a_tiny_run(tmp_path, on_device):
    """Three real JPEG tomograms through run_worker with a real Predictor (ball detector, resampling, two
    views). Start-up (building the predictor: the model, once) is excluded explicitly: it is reported as
    ``startup_s`` and subtracted from the wall time; decoding in the loader thread is overlapped (``decode_s``)."""
    items = []
    for k in range(3):
        vol = ball_volume((45, 67, 53), CENTRE, (80.0 + 10 * k) / SPACING_A)
        write_tomogram(vol, tmp_path / f"t{k}")
        items.append((f"t{k}", str(tmp_path / f"t{k}")))
    cfg = InferConfig(tta=("flip_x",), test_spacing_a=SPACING_A, resample_on_device=on_device, read_threads=1)

    def factory(paths, config, device):
        return Predictor([spec(2)], config, device=device)

    job = WorkerJob(0, "cpu", items, ["a.pt"], cfg, build_levels(cfg, ["a.pt"])[:1], None, 20.0, factory,
                    lambda folder: read_tomogram(folder, num_threads=1))  # fmt: skip
    events = []
    t0 = time.perf_counter()
    run_worker(job, events.append)
    wall = time.perf_counter() - t0
    results = [e for e in events if e["event"] == "result"]
    assert [r["status"] for r in results] == ["ok"] * 3
    startup = sum(r["startup_s"] for r in results)
    staged = sum(sum(r["stages"].values()) for r in results)
    assert startup > 0 and all(r["decode_s"] > 0 for r in results)
    assert abs(staged - (wall - startup)) <= 0.05 * (wall - startup), (staged, wall, startup)
    for r in results:  # per tomogram too: its stages are its seconds less its start-up
        assert sum(r["stages"].values()) == pytest.approx(r["seconds"] - r["startup_s"], rel=0.05, abs=0.01)
        assert set(r["stages"]) <= set(STAGES) and {"read", "resample", "forward", "peaks"} <= set(
            r["stages"]
        )
    assert "upload" not in results[0]["stages"]  # on a CPU the host array is the device's: no copy
    assert np.isfinite(staged)


def test_run_summary_has_the_stages_of_the_tomograms_predicted_in_this_run(tmp_path, ckpts):
    from tests.infer.test_runner import factory, fake_inspector

    for k in range(3):
        write_tomogram(ball_volume((6, 16, 16), (3, 8, 8), 2.0), tmp_path / "data" / "test" / f"t{k}")
    kw = dict(predictor_factory=factory(unit_s=0.02), checkpoint_inspector=fake_inspector, devices="cpu")
    kw["keep_partial"] = True  # the second run resumes from the first one's kept resume file
    from byu_motor.infer.runner import run_prediction

    df = run_prediction(tmp_path / "data", ckpts, tmp_path / "sub.csv", **kw)
    stages = df.attrs["summary"]["stages"]
    assert stages["tomograms"] == 3 and stages["fusion"] >= 3 * 0.02  # the fake predictor's own time
    assert {"read", "fusion", "threshold", "sum_s", "startup_s", "decode_s"} <= set(stages)
    assert stages["sum_s"] == pytest.approx(sum(v for k, v in stages.items() if k in STAGES), abs=0.005)
    again = run_prediction(tmp_path / "data", ckpts, tmp_path / "sub.csv", **kw)  # all rows reused
    assert again.attrs["summary"]["stages"]["tomograms"] == 0
