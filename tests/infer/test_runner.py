"""Tests of the inference runner with fake predictors on tiny JPEG tomograms: rows, faults, resume, budget."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from byu_motor.config import InferConfig
from byu_motor.data.io import read_tomogram, write_tomogram
from byu_motor.infer import passes as passes_module
from byu_motor.infer import previews as previews_module
from byu_motor.infer import resume as resume_module
from byu_motor.infer import runner as runner_module
from byu_motor.infer import workers as workers_module
from byu_motor.infer.runner import CheckpointInfo, inspect_checkpoint, run_prediction

COLS = ["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"]
SHAPE = (6, 16, 16)


class Crash(BaseException):
    """Stands for the process being killed (not caught by the runner's per-tomogram handler)."""


class FakePredictor:
    """Candidate = centroid of the voxels > 128 (score = max / 255); sleeps unit_s x views x scales x models.

    Module-level so that spawned workers can unpickle it.
    """

    def __init__(self, checkpoints, config, device, unit_s=0.0, fail_ids=(), log_path=None, sleep=None):
        self.sleep = sleep or time.sleep
        self.n_models = len(checkpoints)
        # a pass at s x the assumed spacing costs s^3 (the voxels it resamples to)
        self.views = (1 + len(config.tta)) * sum(s**3 for s in config.scales)
        self.unit_s = unit_s
        self.fail_ids = set(fail_ids)
        self.log_path = log_path
        self.level = (tuple(config.tta), self.n_models)

    def predict_volume(self, volume, spacing_a, tomo_id=None):
        if self.log_path is not None:
            with open(self.log_path, "a") as fh:
                fh.write(f"{tomo_id}\n")
        self.sleep(self.unit_s * self.views * self.n_models)
        if tomo_id in self.fail_ids:
            raise RuntimeError("synthetic failure")
        bright = np.argwhere(volume > 128)
        if len(bright) == 0:
            return [(3.0, 8.0, 8.0, float(volume.max()) / 255)]
        z, y, x = bright.mean(axis=0)
        return [(float(z), float(y), float(x), float(volume.max()) / 255), (0.0, 0.0, 0.0, 0.01)]

    def predict_heatmap(self, volume, spacing_a):
        from byu_motor.data.grid import Grid

        grid = Grid(volume.shape, spacing_a).strided(2)
        small = volume.reshape(3, 2, 8, 2, 8, 2).max(axis=(1, 3, 5)).astype(np.float32) / 255
        return small, grid


def factory(**kwargs):
    def make(checkpoints, config, device):
        return FakePredictor(checkpoints, config, device, **kwargs)

    return make


def fake_inspector(path: str) -> CheckpointInfo:
    data = json.loads(Path(path).read_text())
    return CheckpointInfo(path=path, spacing_a=(16.0, 16.0, 16.0), threshold=data.get("threshold"))


# Blob centre (z, y, x) and brightness per tomogram; None = no blob (score 40 / 255).
BLOBS = {
    "tomo_a": ((2, 5, 6), 250),
    "tomo_b": ((3, 10, 4), 200),
    "tomo_c": None,
    "tomo_d": ((1, 12, 12), 230),
    "tomo_e": ((4, 3, 9), 170),
    "tomo_f": ((2, 8, 8), 245),
    "tomo_g": None,
    "tomo_h": ((3, 6, 11), 215),
    "tomo_i": ((2, 11, 3), 190),
    "tomo_j": ((4, 9, 13), 240),
}


def make_volume(tomo_id: str) -> np.ndarray:
    vol = np.full(SHAPE, 40, dtype=np.uint8)
    blob = BLOBS[tomo_id]
    if blob is not None:
        (z, y, x), value = blob
        vol[z - 1 : z + 2, y - 1 : y + 2, x - 1 : x + 2] = value
    return vol


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for tomo_id in BLOBS:
        write_tomogram(make_volume(tomo_id), root / "test" / tomo_id, quality=100)
    return root


def expected_row(tomo_id: str, threshold: float) -> list:
    blob = BLOBS[tomo_id]
    if blob is None or blob[1] / 255 < threshold - 0.02:
        return [tomo_id, -1, -1, -1]
    return [tomo_id, *blob[0]]


def run(data_dir, ckpts, out, **kw):
    kw.setdefault("predictor_factory", factory())
    kw.setdefault("checkpoint_inspector", fake_inspector)
    kw.setdefault("devices", ["cpu"])
    kw.setdefault("config", InferConfig(threshold="fixed", threshold_value=0.5))
    kw.setdefault("keep_partial", True)  # these tests read the partial file of finished runs
    return run_prediction(data_dir, ckpts, out, **kw)


def test_all_rows_in_folder_order(data_dir, ckpts, tmp_path) -> None:
    out = tmp_path / "sub.csv"
    df = run(data_dir, ckpts, out)
    expected = [expected_row(t, 0.5) for t in sorted(BLOBS)]
    assert df.values.tolist() == expected
    back = pd.read_csv(out)
    assert back.columns.tolist() == COLS and back.values.tolist() == expected
    assert df.attrs["summary"]["detections"] == 8 and df.attrs["summary"]["predicted"] == 10
    lines = (tmp_path / "sub.csv.partial.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 10  # header + one line per tomogram


def test_sample_submission_order_and_faults(tmp_path, ckpts, caplog) -> None:
    root = tmp_path / "data"
    for tomo_id in ("tomo_a", "tomo_b", "tomo_d", "tomo_extra"):
        write_tomogram(make_volume(tomo_id if tomo_id in BLOBS else "tomo_c"), root / "test" / tomo_id)
    (root / "test" / "tomo_empty").mkdir()  # empty folder
    write_tomogram(make_volume("tomo_a"), root / "test" / "tomo_corrupt")
    (root / "test" / "tomo_corrupt" / "slice_0002.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    write_tomogram(make_volume("tomo_a"), root / "test" / "tomo_gap")
    (root / "test" / "tomo_gap" / "slice_0001.jpg").unlink()
    write_tomogram(make_volume("tomo_a"), root / "test" / "tomo_sizes")
    write_tomogram(np.zeros((1, 8, 8), np.uint8), root / "test" / "tomo_sizes_tmp")
    (root / "test" / "tomo_sizes_tmp" / "slice_0000.jpg").replace(
        root / "test" / "tomo_sizes" / "slice_0003.jpg"
    )
    (root / "test" / "tomo_sizes_tmp").rmdir()
    order = [
        "tomo_d",
        "tomo_corrupt",
        "tomo_missing",
        "tomo_a",
        "tomo_empty",
        "tomo_gap",
        "tomo_sizes",
        "tomo_b",
    ]
    pd.DataFrame({"tomo_id": order, **{c: [-1] * len(order) for c in COLS[1:]}}).to_csv(
        root / "sample_submission.csv", index=False
    )
    with caplog.at_level(logging.WARNING):
        df = run(root, ckpts, tmp_path / "sub.csv", predictor_factory=factory(fail_ids={"tomo_b"}))
    assert df["tomo_id"].tolist() == order
    rows = dict(zip(df["tomo_id"], df[COLS[1:]].values.tolist()))
    assert rows["tomo_d"] == [1, 12, 12] and rows["tomo_a"] == [2, 5, 6]
    for bad in ("tomo_corrupt", "tomo_missing", "tomo_empty", "tomo_gap", "tomo_sizes", "tomo_b"):
        assert rows[bad] == [-1, -1, -1], bad
        assert bad in caplog.text, bad
    assert "tomo_extra" in caplog.text and "tomo_extra" not in rows  # in the folder, not in the sample
    s = df.attrs["summary"]
    assert (s["read_errors"], s["predict_errors"], s["missing_folders"]) == (4, 1, 1)


def test_checkpoints_validated_before_any_read(data_dir, ckpts, tmp_path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    reads = []

    def reader(folder):
        reads.append(folder)
        return read_tomogram(folder)

    with pytest.raises(ValueError, match="bad.pt"):
        run(data_dir, [ckpts[0], str(bad)], tmp_path / "s.csv", reader=reader)
    assert reads == [] and not (tmp_path / "s.csv").exists()
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        run(data_dir, [str(tmp_path / "nothere.pt")], tmp_path / "s.csv", reader=reader)
    assert reads == []


@pytest.mark.slow
def test_real_inspector_names_the_bad_file(tmp_path) -> None:
    import torch

    from byu_motor.config import Config
    from byu_motor.models.checkpoint import save_checkpoint

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        inspect_checkpoint(bad)
    cfg = Config()
    cfg.data.spacing_a = (20.0, 20.0, 20.0)
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.zeros(1)}, cfg, extra={"threshold": 0.42})
    info = inspect_checkpoint(good)
    assert info.spacing_a == (20.0, 20.0, 20.0) and info.threshold == pytest.approx(0.42)


@pytest.mark.parametrize(
    "cfg,threshold",
    [
        (InferConfig(threshold="fixed", threshold_value=0.9), 0.9),
        (InferConfig(threshold="checkpoint"), 0.7),  # mean of 0.6 and 0.8
        # per-tomogram best scores (x255): 40 40 170 190 200 215 230 240 245 250; q=0.5 -> (200+215)/2
        (InferConfig(threshold="quantile", threshold_quantile=0.5), (200 + 215) / 2 / 255),
    ],
)
def test_threshold_modes(data_dir, ckpts, tmp_path, cfg, threshold) -> None:
    df = run(data_dir, ckpts, tmp_path / "s.csv", config=cfg)
    assert df.attrs["summary"]["threshold"] == pytest.approx(threshold, abs=0.01)
    assert df.values.tolist() == [expected_row(t, threshold) for t in sorted(BLOBS)]


def test_checkpoint_threshold_falls_back_to_fixed(data_dir, tmp_path, caplog) -> None:
    ck = tmp_path / "c.pt"
    ck.write_text("{}")
    with caplog.at_level(logging.WARNING):
        df = run(
            data_dir,
            [str(ck)],
            tmp_path / "s.csv",
            config=InferConfig(threshold="checkpoint", threshold_value=0.85),
        )
    assert df.attrs["summary"]["threshold"] == 0.85 and "no checkpoint stores" in caplog.text


def test_resume_after_crash(data_dir, ckpts, tmp_path) -> None:
    out = tmp_path / "s.csv"
    calls: list[str] = []

    def crashing(checkpoints, config, device):
        pred = FakePredictor(checkpoints, config, device)
        inner = pred.predict_volume

        def predict_volume(volume, spacing_a, tomo_id=None):
            if len(calls) == 4:
                raise Crash("killed")
            calls.append(tomo_id)
            return inner(volume, spacing_a, tomo_id=tomo_id)

        pred.predict_volume = predict_volume
        return pred

    with pytest.raises(Crash):
        run(data_dir, ckpts, out, predictor_factory=crashing)
    assert not out.exists()
    done_first = list(calls)
    assert done_first == sorted(BLOBS)[:4]
    log_path = tmp_path / "calls.txt"
    df = run(data_dir, ckpts, out, predictor_factory=factory(log_path=log_path))
    assert log_path.read_text().split() == sorted(BLOBS)[4:]
    assert df.values.tolist() == [expected_row(t, 0.5) for t in sorted(BLOBS)]
    assert df.attrs["summary"]["resumed"] == 4
    # a different ensemble invalidates the partial file: everything is predicted again
    log_path.unlink()
    run(data_dir, ckpts[:1], out, predictor_factory=factory(log_path=log_path))
    assert log_path.read_text().split() == sorted(BLOBS)
    # so does the same checkpoint rewritten in place (retrained)
    log_path.unlink()
    run(data_dir, ckpts[:1], out, predictor_factory=factory(log_path=log_path))
    assert not log_path.exists()  # unchanged: everything resumed
    path = Path(ckpts[0])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    run(data_dir, ckpts[:1], out, predictor_factory=factory(log_path=log_path))
    assert log_path.read_text().split() == sorted(BLOBS)


def level_sequence(out: Path) -> list[str]:
    lines = out.with_name(out.name + ".partial.jsonl").read_text().splitlines()[1:]
    return [json.loads(line)["level"] for line in lines]


class VirtualTime:
    """A clock that moves only when someone sleeps: the budget tests then measure the planner, not the disk.

    Stands in for the ``time`` module of every runner module that reads the clock (``time``, ``monotonic``,
    ``sleep``); thread-safe, since the loader's threads read tomograms while the main thread predicts.
    """

    def __init__(self) -> None:
        self.now = 1_000.0
        self._lock = threading.Lock()

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture()
def vclock(monkeypatch) -> VirtualTime:
    clock = VirtualTime()
    # the budget's end is set in the runner and read in the worker: both must see the same clock
    for module in (runner_module, passes_module, workers_module, resume_module, previews_module):
        monkeypatch.setattr(module, "time", clock)
    return clock


def virtual_run(
    clock: VirtualTime,
    data_dir,
    ckpts,
    out,
    budget_s: float,
    unit_s: float,
    read_s: float = 0.004,
    config=None,
):
    """A budgeted run on virtual time: prediction costs ``unit_s`` per view and model, a read ``read_s``."""

    def reader(folder):
        clock.sleep(read_s)
        return read_tomogram(folder)

    t0 = clock.monotonic()
    df = run(
        data_dir,
        ckpts,
        out,
        config=config or BUDGET_CFG,
        time_budget_s=budget_s,
        reader=reader,
        predictor_factory=factory(unit_s=unit_s, sleep=clock.sleep),
    )
    return df, clock.monotonic() - t0


BUDGET_CFG = InferConfig(threshold="fixed", threshold_value=0.5, tta=("flip_z", "rot90"), overlap=0.0)


def test_budget_ample_keeps_everything(data_dir, ckpts, tmp_path) -> None:
    out = tmp_path / "s.csv"
    df = run(
        data_dir, ckpts, out, config=BUDGET_CFG, time_budget_s=60, predictor_factory=factory(unit_s=0.002)
    )
    assert set(level_sequence(out)) == {"tta=flip_z,rot90|models=2|overlap=0"}
    assert df.attrs["summary"]["shed"] == [] and df.attrs["summary"]["predicted"] == 10


def test_budget_tight_sheds_in_order_and_finishes_in_time(vclock, data_dir, ckpts, tmp_path, caplog) -> None:
    # full level: 3 views x 2 models x 0.03 s = 0.18 s per tomogram (1.8 s for 10); cheapest: 0.03 s.
    out = tmp_path / "s.csv"
    budget_s = 1.2
    with caplog.at_level(logging.WARNING):
        df, wall = virtual_run(vclock, data_dir, ckpts, out, budget_s, unit_s=0.03)
    assert wall < budget_s
    assert df.attrs["summary"]["predicted"] == 10 and df.attrs["summary"]["not_reached"] == 0
    assert df.values.tolist() == [expected_row(t, 0.5) for t in sorted(BLOBS)]
    levels = level_sequence(out)
    assert levels[0] == "tta=flip_z,rot90|models=2|overlap=0"
    assert len(set(levels)) > 1
    shed = [m for m in df.attrs["summary"]["shed"] if "shedding" in m]
    text = " ".join(shed)
    # TTA views go first (last listed first), ensemble members after
    assert text.index("TTA view 'rot90'") < text.index("TTA view 'flip_z'")
    if "ensemble member" in text:
        assert text.index("TTA view 'flip_z'") < text.index("ensemble member 'b.pt'")
    assert "shedding TTA view 'rot90'" in caplog.text


def test_budget_impossible_gives_complete_submission(vclock, data_dir, ckpts, tmp_path) -> None:
    # The first tomogram (level 0: 0.3 s) leaves 0.15 s; cheapest level 0.05 s; reserve 0.045 s.
    out = tmp_path / "s.csv"
    budget_s = 0.45
    df, wall = virtual_run(vclock, data_dir, ckpts, out, budget_s, unit_s=0.05)
    assert wall < budget_s
    s = df.attrs["summary"]
    assert s["not_reached"] >= 1 and s["predicted"] >= 1 and s["predicted"] + s["not_reached"] == 10
    assert df["tomo_id"].tolist() == sorted(BLOBS)
    assert pd.read_csv(out)["tomo_id"].tolist() == sorted(BLOBS)
    assert any("stopping" in m for m in s["shed"])


def test_budget_sheds_the_second_assumed_spacing_first(vclock, data_dir, ckpts, tmp_path) -> None:
    # two spacings cost 1 + 1.25^3 = 2.95 passes: level 0 = 2 views x 2 models x 2.95 x 0.02 s = 0.236 s per
    # tomogram (2.4 s for 10), plus a 0.004 s read. After the first, 9 x 0.084 s without the 1.25x pass plus the
    # margin (0.16 s + the slowest tomogram) fit the 1.36 s left, so the TTA view stays
    out = tmp_path / "s.csv"
    cfg = dataclasses.replace(BUDGET_CFG, tta=("flip_z",), scales=(1.0, 1.25), scale_merge="lift")
    df, wall = virtual_run(vclock, data_dir, ckpts, out, budget_s=1.6, unit_s=0.02, config=cfg)
    assert wall < 1.6
    assert df.attrs["summary"]["predicted"] == 10
    levels = level_sequence(out)
    assert levels[:2] == [
        "tta=flip_z|models=2|overlap=0|scales=1,1.25",
        "tta=flip_z|models=2|overlap=0|scales=1",
    ]
    assert all(lv.startswith("tta=flip_z|models=2") for lv in levels)
    assert df.attrs["summary"]["shed"][0].startswith(
        "time budget: shedding assumed spacing x1.25 (level 0 -> 1"
    )


def test_budget_stops_when_a_tomogram_would_cross_the_reserve(vclock, data_dir, ckpts, tmp_path) -> None:
    # Cheapest level 0.1 s + 0.004 s read. After level 0 (0.604 s) 0.4 s are left, the reserve is 0.1 s:
    # tomograms 2-3 fit (ending at 0.812 s), a fourth would end at 0.916 s > 0.9 s and must not start.
    out = tmp_path / "s.csv"
    df, wall = virtual_run(vclock, data_dir, ckpts, out, budget_s=1.0, unit_s=0.1)
    s = df.attrs["summary"]
    assert s["predicted"] == 3 and s["not_reached"] == 7
    assert (
        level_sequence(out) == ["tta=flip_z,rot90|models=2|overlap=0"] + ["tta=none|models=1|overlap=0"] * 2
    )
    assert wall <= 1.0 - 0.1 + 1e-9


def test_previews(data_dir, ckpts, tmp_path, real_labels_csv) -> None:
    labels = tmp_path / "labels.csv"
    rows = [[0, "tomo_a", 2, 5, 6, *SHAPE, 16.0, 1], [1, "tomo_d", 1, 11, 12, *SHAPE, 16.0, 1]]
    cols = pd.read_csv(real_labels_csv, nrows=1).columns
    pd.DataFrame(rows, columns=cols).to_csv(labels, index=False)
    previews = tmp_path / "png"
    df = run(data_dir, ckpts, tmp_path / "s.csv", preview_dir=previews, labels_csv=labels)
    assert sorted(p.stem for p in previews.iterdir()) == sorted(BLOBS)
    assert df.attrs["summary"]["previews"] == 10
    cfg = InferConfig(threshold="fixed", threshold_value=0.5, preview_top=2)
    top = tmp_path / "top"
    run(data_dir, ckpts, tmp_path / "s2.csv", preview_dir=top, config=cfg)
    assert sorted(p.stem for p in top.iterdir()) == ["tomo_a", "tomo_f"]  # brightest blobs: 250, 245


@pytest.mark.slow
def test_two_cpu_workers_match_one(data_dir, ckpts, tmp_path) -> None:
    one = run(data_dir, ckpts, tmp_path / "one.csv")
    log_path = tmp_path / "calls.txt"
    two = run(
        data_dir,
        ckpts,
        tmp_path / "two.csv",
        devices=["cpu", "cpu"],
        predictor_factory=_two_factory(log_path),
    )
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "two.csv").read_text()
    assert one.values.tolist() == two.values.tolist()
    assert sorted(log_path.read_text().split()) == sorted(BLOBS)  # each tomogram predicted exactly once


def _two_factory(log_path: Path):
    import functools

    return functools.partial(FakePredictor, log_path=str(log_path))


def fails_once(checkpoints, config, device, marker: str, log_path: str):
    """A predictor factory whose first call, in whichever worker comes first, fails (a device that cannot load
    the model); every later call builds a FakePredictor. Module-level, so spawned workers can unpickle it."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return FakePredictor(checkpoints, config, device, log_path=log_path)
    raise RuntimeError("cannot load the model on this device")


@pytest.mark.slow
def test_a_crashed_workers_tomograms_go_to_the_workers_that_finished(
    data_dir, ckpts, tmp_path, caplog
) -> None:
    import functools

    one = run(data_dir, ckpts, tmp_path / "one.csv")
    log_path = tmp_path / "calls.txt"
    make = functools.partial(fails_once, marker=str(tmp_path / "failed"), log_path=str(log_path))
    with caplog.at_level(logging.WARNING):
        two = run(data_dir, ckpts, tmp_path / "two.csv", devices=["cpu", "cpu"], predictor_factory=make)
    assert two.values.tolist() == one.values.tolist()  # no -1 row for the crashed worker's half
    assert sorted(log_path.read_text().split()) == sorted(BLOBS)  # each tomogram predicted once
    summary = two.attrs["summary"]
    assert len(summary["worker_crashes"]) == 1 and "cannot load the model" in summary["worker_crashes"][0]
    assert summary["not_reached"] == 0 and "crashed worker(s) go to cpu" in caplog.text


def test_spacing_policies() -> None:
    from byu_motor.infer.spacing import resolve_spacing

    assert resolve_spacing((300, 960, 928), InferConfig()) == 13.1
    assert resolve_spacing((300, 960, 928), InferConfig(test_spacing_a=15.6)) == 15.6
    est = InferConfig(spacing_policy="estimate", test_spacing_a=13.1)
    assert resolve_spacing((300, 959, 928), est) == 15.6  # all 70 train tomograms of this shape
    assert resolve_spacing((300, 960, 928), est) == 13.1  # ambiguous in train: falls back to fixed
    assert resolve_spacing((7, 8, 9), est) == 13.1
    edge = InferConfig(spacing_policy="longest_edge", longest_edge=512)
    s = resolve_spacing((300, 960, 928), edge, model_spacing_a=(16.0, 16.0, 16.0))
    assert 960 * s / 16.0 == pytest.approx(512)  # the longest edge becomes 512 voxels at the model's spacing
    with pytest.raises(ValueError, match="model"):
        resolve_spacing((300, 960, 928), edge)
    with pytest.raises(ValueError, match="spacing_policy"):
        resolve_spacing((1, 1, 1), InferConfig(spacing_policy="guess"))


def test_runner_applies_the_spacing_policy(data_dir, ckpts, tmp_path) -> None:
    out = tmp_path / "s.csv"
    cfg = InferConfig(threshold="fixed", spacing_policy="longest_edge", longest_edge=8)
    run(data_dir, ckpts, out, config=cfg)  # fake inspector: model spacing 16 A; longest edge 16 voxels
    lines = out.with_name(out.name + ".partial.jsonl").read_text().splitlines()[1:]
    assert {json.loads(line)["spacing_a"] for line in lines} == {8 * 16.0 / 16}


@pytest.mark.slow
def test_cli_predict_with_a_real_tiny_checkpoint(tmp_path, capsys) -> None:
    import torch

    from byu_motor.cli import main
    from byu_motor.models.checkpoint import save_checkpoint
    from byu_motor.models.detector import create_model
    from byu_motor.presets import get_preset

    cfg = get_preset("tiny")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", create_model(cfg.model), cfg, extra={"threshold": 0.0})
    rng = np.random.default_rng(0)
    for name in ("tomo_x", "tomo_y"):
        write_tomogram(rng.integers(0, 255, (16, 32, 32)).astype(np.uint8), tmp_path / "data" / "test" / name)
    out = tmp_path / "sub.csv"
    argv = [
        "predict",
        str(tmp_path / "data"),
        "--checkpoints",
        str(ckpt),
        "--out",
        str(out),
        "--devices",
        "cpu",
    ]
    argv += ["--set", "infer.tta=flip_z", "--set", "test_spacing_a=64", "--preview", str(tmp_path / "png")]
    argv += ["--set", "threshold=checkpoint"]  # tiny's recipe cuts at a fixed 0.3, random weights stay below
    assert main(argv) == 0
    df = pd.read_csv(out)
    assert df["tomo_id"].tolist() == ["tomo_x", "tomo_y"]
    # threshold 0 from the checkpoint: every tomogram gets its best candidate, inside the volume
    assert (df[COLS[1:]].to_numpy() >= 0).all() and (df[COLS[1:]].to_numpy() < [16, 32, 32]).all()
    text = capsys.readouterr().out
    assert "2 rows, 2 detections" in text and "tta=flip_z|models=1" in text
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["tomo_x.png", "tomo_y.png"]
    assert (
        main(["predict", str(tmp_path / "data"), "--checkpoints", str(ckpt), "--set", "model.stride=2"]) == 2
    )


def test_wrapped_tomogram_is_repaired_when_the_checkpoint_was_trained_so(tmp_path, ckpts, caplog) -> None:
    rng = np.random.default_rng(0)
    normal = np.clip(rng.normal(118, 40, (6, 32, 32)), 0, 255).astype(np.uint8)
    normal[2:5, 10:13, 20:23] = 250  # a bright blob the fake predictor finds
    wrapped = (normal.astype(np.int16) - 127).astype(np.uint8)  # stored = correct - 127 (mod 256)
    for tid, vol in (("tomo_ok", normal), ("tomo_wrapped", wrapped)):
        write_tomogram(vol, tmp_path / "data" / "test" / tid, quality=100)

    def inspector(path: str) -> CheckpointInfo:
        return CheckpointInfo(path=path, spacing_a=(16.0,) * 3, fix_wraparound=True)

    with caplog.at_level(logging.INFO):
        df = run(tmp_path / "data", ckpts, tmp_path / "sub.csv", checkpoint_inspector=inspector)
    rows = df.set_index("tomo_id")
    assert rows.loc["tomo_wrapped"].tolist() == rows.loc["tomo_ok"].tolist() != [-1, -1, -1]
    # what was done, at info level (not an error), naming the split
    repaired = [r for r in caplog.records if "tomo_wrapped" in r.getMessage()]
    assert [r.levelno for r in repaired] == [logging.INFO]
    assert "test tomogram tomo_wrapped" in repaired[0].getMessage() and "restored" in repaired[0].getMessage()
    # Without the checkpoint asking for it, the volume is predicted as stored.
    df = run(tmp_path / "data", ckpts, tmp_path / "sub2.csv")
    assert df.set_index("tomo_id").loc["tomo_wrapped"].tolist() != rows.loc["tomo_ok"].tolist()


# ---------------------------------------------------------------------------------------------------------
# Budgets with tomograms of very different sizes, warm-up, cutting short, refused budgets (virtual time).

SIZED_SHAPES = {"s": (4, 16, 16), "h": (40, 64, 64)}  # 1024 and 163840 voxels
SIZED_RATE = 1e-7  # seconds per voxel per unit level cost (below the planner's pessimistic prior)


class SizedPredictor:
    """Takes ``rate x voxels x level cost`` of virtual time (x ``slow[tomo_id]``; + ``warmup_s`` on its first
    call per process), in 64 batches with the deadline checked before each, as the sliding window does."""

    warmed = False

    def __init__(self, checkpoints, config, device, sleep, slow=None, warmup_s=0.0):
        from byu_motor.infer.budget import level_cost

        self.cost = level_cost(config.tta, len(checkpoints), config.overlap, config.scales)
        self.sleep, self.slow, self.warmup_s = sleep, slow or {}, warmup_s

    def predict_volume(self, volume, spacing_a, tomo_id=None):
        from byu_motor.infer.budget import check_stop

        if not SizedPredictor.warmed:
            SizedPredictor.warmed = True
            self.sleep(self.warmup_s)
        seconds = SIZED_RATE * volume.size * self.cost * self.slow.get(tomo_id, 1.0)
        for _ in range(64):
            check_stop()
            self.sleep(seconds / 64)
        z, y, x = volume.shape
        return [(z // 2, y // 2, x // 2, 0.9)]


def sized_run(clock, tmp_path, ckpts, kinds: str, budget_s: float, **kw):
    """Tomograms ``t00, t01, ...`` of the sizes ``kinds`` names (``s`` small, ``h`` huge), run on virtual time."""
    root = tmp_path / f"data_{kinds}"
    for k, kind in enumerate(kinds):
        write_tomogram(np.full(SIZED_SHAPES[kind], 90, dtype=np.uint8), root / "test" / f"t{k:02d}")
    SizedPredictor.warmed = False

    def make(checkpoints, config, device):
        return SizedPredictor(checkpoints, config, device, sleep=clock.sleep, **kw)

    out = tmp_path / f"s_{kinds}.csv"
    t0 = clock.monotonic()
    df = run(root, ckpts, out, config=BUDGET_CFG, time_budget_s=budget_s, predictor_factory=make)
    return df, clock.monotonic() - t0, out


def sized_budget(kinds: str) -> float:
    """Half of what the richest level (3 views x 2 models) needs: the cheapest level (cost 1) fits easily."""
    voxels = sum(int(np.prod(SIZED_SHAPES[k])) for k in kinds)
    return 0.5 * SIZED_RATE * voxels * 6


@pytest.mark.parametrize("kinds", ["sssssssshh", "hhssssssss", "shshshshsh"])
def test_budget_holds_whatever_the_order_of_sizes(vclock, tmp_path, ckpts, kinds) -> None:
    budget_s = sized_budget(kinds)
    df, wall, out = sized_run(vclock, tmp_path, ckpts, kinds, budget_s)
    s = df.attrs["summary"]
    assert wall <= budget_s
    assert s["predicted"] == len(kinds) and s["cut"] == 0 and len(pd.read_csv(out)) == len(kinds)
    # the first tomogram calibrates at the cheapest level, later ones use the time left
    levels = level_sequence(out)
    assert levels[0] == "tta=none|models=1|overlap=0" and len(set(levels)) > 1
    assert s["budget_s"] == budget_s and s["used_s"] == pytest.approx(wall, abs=1e-3)
    assert s["slack_s"] == pytest.approx(budget_s - s["used_s"], abs=1e-3) and s["slack_s"] >= 0


def test_budget_holds_after_a_slow_first_tomogram(vclock, tmp_path, ckpts) -> None:
    kinds = "sssshhssss"
    budget_s = sized_budget(kinds)
    df, wall, out = sized_run(vclock, tmp_path, ckpts, kinds, budget_s, warmup_s=0.3 * budget_s)
    s = df.attrs["summary"]
    assert wall <= budget_s and len(pd.read_csv(out)) == len(kinds)
    assert s["predicted"] + s["not_reached"] + s["cut"] == len(kinds) and s["predicted"] >= 8


def test_a_tomogram_cut_short_gets_minus_one_and_every_row_is_written(vclock, tmp_path, ckpts) -> None:
    kinds = "sssshsssss"
    budget_s = sized_budget(kinds)
    # t04 runs 5x slower per voxel than anything measured before it: only the cut keeps the budget
    df, wall, out = sized_run(vclock, tmp_path, ckpts, kinds, budget_s, slow={"t04": 5.0})
    s = df.attrs["summary"]
    assert wall <= budget_s
    assert s["cut"] == 1 and s["predicted"] == 4 and s["not_reached"] == 5
    written = pd.read_csv(out)
    assert written["tomo_id"].tolist() == [f"t{k:02d}" for k in range(10)]
    assert (written.iloc[4:, 1:] == -1).all().all() and (written.iloc[:4, 1] >= 0).all()
    assert any("cut short" in m for m in s["shed"])
    # the cut tomogram is not stored as done: a resume predicts it again
    partial = out.with_name(out.name + ".partial.jsonl").read_text()
    assert '"t04"' not in partial


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf")])
def test_unusable_budgets_are_refused_before_any_work(data_dir, ckpts, tmp_path, bad) -> None:
    reads = []
    out = tmp_path / "s.csv"
    with pytest.raises(ValueError, match="time budget") as err:
        run(data_dir, ckpts, out, time_budget_s=bad, reader=lambda f: reads.append(f))
    assert repr(bad) in str(err.value)
    assert reads == [] and not out.exists() and not out.with_name(out.name + ".partial.jsonl").exists()


def test_the_first_tomogram_shed_by_the_prior_is_redone_at_level_0_when_time_remains(vclock, tmp_path, ckpts):
    # the budget fits every tomogram at the richest level at the real rate, but not at the planner's
    # pessimistic prior: the first one runs at the cheapest level, then is redone from the measured rate
    kinds = "ssssssssss"
    budget_s = 4 * sized_budget(kinds)
    df, wall, out = sized_run(vclock, tmp_path, ckpts, kinds, budget_s)
    assert wall <= budget_s and df.attrs["summary"]["redo_offered"] == 1
    richest = "tta=flip_z,rot90|models=2|overlap=0"
    lines = [json.loads(x) for x in out.with_name(out.name + ".partial.jsonl").read_text().splitlines()[1:]]
    first = [r["level"] for r in lines if r.get("tomo_id") == "t00"]
    assert first == ["tta=none|models=1|overlap=0", richest]
    assert {r["level"] for r in lines if r.get("tomo_id") != "t00"} == {richest}
    assert df.attrs["summary"]["finished"]


@pytest.mark.parametrize("budget_s", [None, 600.0])
def test_a_member_listing_identity_keeps_it_through_the_runner(data_dir, ckpts, tmp_path, budget_s) -> None:
    # the seed's X3D member lists identity explicitly (tta_identity off): the level configs must keep it
    from byu_motor.infer.predictor import Predictor
    from byu_motor.infer.recipe import apply_member
    from byu_motor.infer.spec import ModelSpec

    members = {ckpts[0]: {"tta": ["flip_z"]}, ckpts[1]: {"tta": ["identity", "rot90"]}}
    cfg = InferConfig(
        threshold="fixed", threshold_value=0.5, tta=("flip_z", "identity", "rot90"), tta_identity=False
    )
    cfg.members = members
    seen = []

    def recording(checkpoints, config, device):
        seen.append((list(checkpoints), config.tta))
        return FakePredictor(checkpoints, config, device)

    run(data_dir, ckpts, tmp_path / "s.csv", config=cfg, time_budget_s=budget_s, predictor_factory=recording)
    checkpoints, level0_tta = seen[0]
    assert checkpoints == ckpts and "identity" in level0_tta
    # what the Predictor then runs for the second member: exactly its two listed views
    spec = apply_member(ModelSpec(torch.nn.Identity(), 1, 10.0), members[ckpts[1]])
    level0 = dataclasses.replace(cfg, tta=level0_tta)
    assert Predictor([spec], level0, "cpu")._member_views(spec) == ("identity", "rot90")


def test_fail_over_puts_each_crashed_workers_likely_culprit_last(monkeypatch) -> None:
    from byu_motor.infer.workers import Collector

    @dataclasses.dataclass
    class Job:
        worker: int
        device: str
        items: list

    ran: list = []
    monkeypatch.setattr(passes_module, "run_jobs", lambda jobs, collect: ran.extend(jobs))
    items = [(f"t{i}", f"f{i}") for i in range(9)]
    jobs = [Job(k, f"dev{k}", items[k::3]) for k in range(3)]  # t0 t3 t6 | t1 t4 t7 | t2 t5 t8
    collect = Collector(partial=None, crashed={1, 2}, cut=["t8"])
    records = {"t1": {"status": "ok"}}  # worker 1 finished t1, died on t4; worker 2 died on t2 (t8 was cut)
    passes_module.fail_over(Job(0, "dev0", []), jobs, collect, records)
    assert [(j.device, [t for t, _ in j.items]) for j in ran] == [("dev0", ["t7", "t5", "t4", "t2"])]
    assert collect.crashed == set()  # the next pass counts its own crashes
    ran.clear()
    passes_module.fail_over(Job(0, "dev0", []), jobs, Collector(partial=None, crashed={0, 1, 2}), records)
    assert ran == []  # no worker left to take them: their rows stay -1
