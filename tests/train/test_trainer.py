"""The Trainer's hooks: when they are called, what they keep in resume.pt, and how they end a run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from byu_motor.train.engine import train
from byu_motor.train.hooks import Hook, StopTraining
from byu_motor.train.mining import HardNegativeMining
from byu_motor.train.trainer import Trainer
from tests.train.test_engine import VAL_IDS, one_thread, tiny_config, write_tiny_dataset  # noqa: F401


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


class Recorder(Hook):
    """Records every call as (event, step) and keeps a counter in resume.pt."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.counter = 0
        self.loaded: int | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        self.calls.append(("start", trainer.step))

    def on_step_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        assert torch.isfinite(logs["loss"]) and logs["lr"] >= 0
        self.counter += 1
        self.calls.append(("step", trainer.step))

    def on_validation_end(self, trainer: Trainer, result: Mapping[str, Any] | None) -> None:
        assert result is not None and 0.0 <= result["f2"] <= 1.0
        self.calls.append(("val", trainer.step))

    def on_train_end(self, trainer: Trainer, result: Mapping[str, Any]) -> None:
        self.calls.append(("end", result["step"]))

    def state_dict(self) -> dict[str, Any]:
        return {"recorder_counter": self.counter}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.loaded = int(state["recorder_counter"])
        self.counter = self.loaded


def test_hooks_are_called_in_order_and_resume_with_their_state(data_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(steps=4, val_every=2, ema=0.0)
    out = tmp_path / "run"
    first = Recorder()
    train(cfg, data_dir, out, val_ids=VAL_IDS, stop_at_step=2, hooks=[first], progress=False)
    # stop_at_step ends the run normally: the hooks see its end
    assert first.calls == [("start", 0), ("step", 1), ("step", 2), ("val", 2), ("end", 2)]
    assert torch.load(out / "resume.pt", weights_only=True)["recorder_counter"] == 2

    second = Recorder()
    result = Trainer(cfg, data_dir, out, val_ids=VAL_IDS, hooks=[second], progress=False).fit()
    assert second.loaded == 2
    assert second.calls == [("start", 2), ("step", 3), ("step", 4), ("val", 4), ("end", 4)]
    assert result["step"] == 4
    assert torch.load(out / "resume.pt", weights_only=True)["recorder_counter"] == 4


def test_hook_state_may_not_overwrite_the_trainers_keys(data_dir: Path, tmp_path: Path) -> None:
    class Clash(Hook):
        def state_dict(self) -> dict[str, Any]:
            return {"step": 0}

    cfg = tiny_config(steps=2, val_every=2, ema=0.0, fold=-1)
    with pytest.raises(ValueError, match=r"Clash.*\['step'\]"):
        train(cfg, data_dir, tmp_path / "run", hooks=[Clash()], progress=False)
    assert not (tmp_path / "run" / "resume.pt").exists()


def test_a_hook_can_stop_the_run_like_a_kill(data_dir: Path, tmp_path: Path) -> None:
    class StopAt3(Hook):
        def on_step_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
            if trainer.step == 3:
                raise StopTraining

    cfg = tiny_config(steps=6, val_every=2, ema=0.0, fold=-1)
    out = tmp_path / "run"
    with pytest.raises(StopTraining):
        train(cfg, data_dir, out, hooks=[StopAt3()], progress=False)
    assert torch.load(out / "resume.pt", weights_only=True)["step"] == 2  # the last save before the stop


def test_mining_hook_state_round_trip_and_idle_when_off() -> None:
    on = HardNegativeMining(tiny_config(hard_negative_ratio=0.5, val_every=3).train)
    assert on.every == 3 and on.state_dict() == {"hard_negatives": None}
    points = [torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64), torch.zeros((0, 3), dtype=torch.float64)]
    on.load_state_dict({"hard_negatives": points})
    assert [p.dtype for p in on.points] == [np.float64, np.float64]
    saved = on.state_dict()["hard_negatives"]
    for a, b in zip(saved, points):
        torch.testing.assert_close(a, b)

    off = HardNegativeMining(tiny_config(hard_negative_ratio=0.0).train)
    off.load_state_dict({"hard_negatives": points})  # a run without mining ignores mined points
    assert off.points is None and off.state_dict() == {"hard_negatives": None}
    assert HardNegativeMining(tiny_config(hard_negative_every=5).train).every == 5
