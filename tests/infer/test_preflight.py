"""Tests of the prediction preflight: bad checkpoints, devices and output paths fail before any tomogram is read
and create nothing; the partial file follows the resolved output path."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from byu_motor.config import InferConfig
from byu_motor.data.io import read_tomogram, write_tomogram
from byu_motor.infer import preflight
from byu_motor.infer import workers as workers_module
from byu_motor.infer.runner import CheckpointInfo, inspect_checkpoint, run_prediction
from byu_motor.infer.workers import default_predictor_factory, resolve_devices
from byu_motor.models.checkpoint import save_checkpoint
from byu_motor.models.detector import create_model
from byu_motor.presets import get_preset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name in ("tomo_a", "tomo_b", "tomo_c"):
        write_tomogram(rng.integers(0, 255, (4, 16, 16)).astype(np.uint8), root / "test" / name)
    return root


@pytest.fixture()
def reads() -> list:
    return []


@pytest.fixture()
def reader(reads):
    def read(folder):
        reads.append(folder)
        return read_tomogram(folder)

    return read


@pytest.fixture(autouse=True)
def fresh_spec_cache():
    """Every test sees an empty worker spec cache (preflight fills it) and leaves none behind."""
    workers_module._SPEC_CACHE.clear()
    yield
    workers_module._SPEC_CACHE.clear()


def tiny_checkpoint(path: Path, extra=None, state=None, **model_changes) -> Path:
    cfg = get_preset("tiny")
    cfg.model = dataclasses.replace(cfg.model, **model_changes) if model_changes else cfg.model
    torch.manual_seed(0)
    weights = state if state is not None else create_model(get_preset("tiny").model).state_dict()
    return save_checkpoint(
        path, weights, cfg, extra={"threshold": 0.5, "step": 10} if extra is None else extra
    )


def predict(data_dir, ckpts, out, reader, **kw):
    kw.setdefault("devices", "cpu")
    kw.setdefault("keep_partial", True)  # the resume tests here reuse finished runs
    return run_prediction(data_dir, [str(c) for c in ckpts], out, reader=reader, **kw)


def assert_nothing_done(reads, out_dir: Path) -> None:
    assert reads == []
    assert not out_dir.exists(), sorted(out_dir.parent.iterdir())


# ----------------------------------------------------------------------------------------------------------
# Checkpoints: built, loaded strictly, finite, run once, before any tomogram.


def test_checkpoint_missing_half_its_keys_fails_before_any_tomogram(
    data_dir, tmp_path, reads, reader
) -> None:
    state = create_model(get_preset("tiny").model).state_dict()
    half = dict(list(state.items())[: len(state) // 2])
    bad = tiny_checkpoint(tmp_path / "half.pt", state=half)
    out = tmp_path / "out" / "sub.csv"
    with pytest.raises(ValueError, match=r"half\.pt.*missing") as info:
        predict(data_dir, [tiny_checkpoint(tmp_path / "good.pt"), bad], out, reader)
    assert "\n" not in str(info.value)
    assert_nothing_done(reads, tmp_path / "out")


def test_nan_weights_are_rejected_naming_the_file(data_dir, tmp_path, reads, reader) -> None:
    state = create_model(get_preset("tiny").model).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    bad = tiny_checkpoint(tmp_path / "diverged.pt", state=state)
    with pytest.raises(ValueError, match=r"diverged\.pt.*NaN"):
        predict(data_dir, [bad], tmp_path / "out" / "sub.csv", reader)
    assert_nothing_done(reads, tmp_path / "out")


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"encoder": "resnet9000"}, "unknown encoder 'resnet9000'"),
        ({"encoder": "densenet_tiny"}, "cannot rebuild"),  # resnet_tiny's kwargs (max_pool) do not fit it
    ],
)
def test_encoder_that_does_not_build_is_a_value_error_naming_the_file(
    data_dir, tmp_path, reads, reader, changes, message
) -> None:
    bad = tiny_checkpoint(tmp_path / "other.pt", **changes)
    with pytest.raises(ValueError, match=r"other\.pt") as info:
        predict(data_dir, [bad], tmp_path / "out" / "sub.csv", reader)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert_nothing_done(reads, tmp_path / "out")


def test_a_model_that_gives_nan_or_a_wrong_shape_is_refused() -> None:
    class Bad(torch.nn.Module):
        def __init__(self, out):
            super().__init__()
            self.out = out

        def forward(self, x):
            return self.out(x)

    assert preflight._smoke_forward(Bad(lambda x: x[:, :, ::4, ::4, ::4]), (4, 4, 4), "cpu") == (
        1,
        1,
        1,
        1,
        1,
    )
    with pytest.raises(ValueError, match="NaN"):
        preflight._smoke_forward(Bad(lambda x: x * float("nan")), (4, 4, 4), "cpu")
    with pytest.raises(ValueError, match="4-D"):
        preflight._smoke_forward(Bad(lambda x: x[0]), (4, 4, 4), "cpu")


def test_models_are_loaded_once_and_the_worker_reuses_them(tmp_path, monkeypatch) -> None:
    from byu_motor.models import checkpoint as checkpoint_module

    paths = [str(tiny_checkpoint(tmp_path / "a.pt")), str(tiny_checkpoint(tmp_path / "b.pt"))]
    loads = []
    real = checkpoint_module.load_checkpoint
    monkeypatch.setattr(
        checkpoint_module, "load_checkpoint", lambda p, **kw: loads.append(p) or real(p, **kw)
    )
    preflight.check_models(paths, ["cpu"], workers_module._SPEC_CACHE)
    assert sorted(workers_module._SPEC_CACHE) == [(p, "cpu") for p in paths] and len(loads) == 2
    default_predictor_factory(paths, InferConfig(), "cpu")
    assert len(loads) == 2  # the predictor took the checked models from the cache
    preflight.check_models(paths, ["cpu"], workers_module._SPEC_CACHE)
    assert len(loads) == 2  # checked before and unchanged: not loaded again
    os.utime(paths[1], ns=(1, 1))  # rewritten in place (retrained): checked and loaded afresh
    preflight.check_models(paths, ["cpu"], workers_module._SPEC_CACHE)
    assert loads[2:] == [paths[1]]
    workers_module._SPEC_CACHE.clear()
    preflight.check_models(paths, ["cpu", "cpu"], workers_module._SPEC_CACHE)
    assert workers_module._SPEC_CACHE == {} and len(loads) == 5  # several workers: other processes load


def test_checkpoint_without_a_training_record_warns(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        inspect_checkpoint(tiny_checkpoint(tmp_path / "trained.pt"))
    assert "training record" not in caplog.text
    with caplog.at_level(logging.WARNING):
        info = inspect_checkpoint(tiny_checkpoint(tmp_path / "handmade.pt", extra={"threshold": 0.2}))
    assert info.threshold == pytest.approx(0.2)
    assert "handmade.pt" in caplog.text and "'step'" in caplog.text


# ----------------------------------------------------------------------------------------------------------
# Devices: their own error, naming the device and not a checkpoint.


@pytest.fixture()
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("devices", ["gpu", "cuda:0", "cpu,cuda:1", ["cuda"], "mps"])
def test_bad_devices_fail_naming_the_device(data_dir, tmp_path, reads, reader, no_cuda, devices) -> None:
    ckpt = tiny_checkpoint(tmp_path / "good.pt")
    with pytest.raises(ValueError, match=r"^device (gpu|cuda|mps)") as info:
        predict(data_dir, [ckpt], tmp_path / "out" / "sub.csv", reader, devices=devices)
    assert "good.pt" not in str(info.value) and "checkpoint" not in str(info.value)
    assert_nothing_done(reads, tmp_path / "out")


def test_cuda_index_must_be_visible(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_devices("cuda:0, cpu") == ["cuda:0", "cpu"]
    with pytest.raises(ValueError, match=r"device cuda:3: only 1 CUDA device"):
        resolve_devices("cuda:0,cuda:3")


def test_cpu_devices_pass(no_cuda) -> None:
    assert resolve_devices("cpu,cpu") == ["cpu", "cpu"]
    assert resolve_devices(None) == ["cpu"] and resolve_devices("auto") == ["cpu"]


# ----------------------------------------------------------------------------------------------------------
# The output path: checked first, nothing created when it is bad; the partial file follows its resolved path.


@pytest.mark.parametrize(
    "case", ["directory", "new_directory", "empty", "under_a_file", "deep_under_a_file", "unwritable"]
)
def test_bad_output_fails_before_any_tomogram(data_dir, tmp_path, reads, reader, monkeypatch, case) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ckpt" / "good.pt")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    out, named = {
        "directory": (tmp_path / "a_dir", "a_dir"),
        "new_directory": (f"{tmp_path / 'new_dir'}/", "new_dir"),
        "empty": ("", "empty"),
        "under_a_file": (tmp_path / "a_file" / "sub.csv", "a_file"),
        "deep_under_a_file": (tmp_path / "a_file" / "x" / "sub.csv", "a_file"),
        "unwritable": (tmp_path / "new" / "sub.csv", "not writable"),
    }[case]
    if case == "unwritable":  # tests run as root, who may write anywhere: stand in for a read-only folder
        monkeypatch.setattr(preflight.os, "access", lambda path, mode: False)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=named):
        predict(data_dir, [ckpt], out, reader)
    assert reads == [] and workers_module._SPEC_CACHE == {}  # failed before the models were even loaded
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


class CountingPredictor:
    """Candidate at the centre, score 0.9; appends each tomo_id to ``log_path`` (to count predictions)."""

    def __init__(self, checkpoints, config, device, log_path=None):
        self.log_path = log_path

    def predict_volume(self, volume, spacing_a, tomo_id=None):
        with open(self.log_path, "a") as fh:
            fh.write(f"{tomo_id}\n")
        return [(*(s / 2 for s in volume.shape), 0.9)]


def test_same_resolved_output_shares_the_partial_file(data_dir, tmp_path, reader, monkeypatch) -> None:
    ckpt = tmp_path / "fake.pt"
    ckpt.write_text(json.dumps({}))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    log_path = tmp_path / "predicted.txt"

    def run(out):
        return predict(
            data_dir,
            [ckpt],
            out,
            reader,
            predictor_factory=lambda c, cfg, d: CountingPredictor(c, cfg, d, log_path=log_path),
            checkpoint_inspector=lambda p: CheckpointInfo(path=p, spacing_a=(16.0,) * 3),
            config=InferConfig(threshold="fixed", threshold_value=0.5),
        )

    first = run("sub.csv")
    assert len(log_path.read_text().splitlines()) == 3
    for again in ("./a/../sub.csv", str(work / "sub.csv")):
        df = run(again)
        assert df.attrs["summary"]["resumed"] == 3, again
        assert df.values.tolist() == first.values.tolist()
    assert len(log_path.read_text().splitlines()) == 3  # nothing predicted twice
    # no stray a/ (the marker says the run finished)
    assert sorted(p.name for p in work.iterdir()) == [
        "sub.csv",
        "sub.csv.partial.done",
        "sub.csv.partial.jsonl",
    ]
