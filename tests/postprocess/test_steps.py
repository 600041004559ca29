"""The candidate-step registry: a new step is one decorated function with its own settings dataclass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from byu_motor.config import Config, InferConfig
from byu_motor.data.grid import Grid
from byu_motor.postprocess.steps import _REGISTRY, build_steps, list_steps, register_step, run_steps


@pytest.fixture
def clean_registry():
    before = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)


def test_a_registered_step_runs_in_the_order_of_the_recipe(clean_registry):
    # the ten-line example of docs/API.md
    @dataclass
    class MinScore:
        floor: float = 0.05

    @register_step("min_score", MinScore)
    def min_score(candidates, volume, grid, settings):
        return [c for c in candidates if c[3] >= settings.floor]

    @dataclass
    class Halve:
        pass

    @register_step("halve", Halve)
    def halve(candidates, volume, grid, settings):
        return [(*c[:3], c[3] / 2) for c in candidates]

    cands = [(1.0, 2.0, 3.0, 0.9), (4.0, 5.0, 6.0, 0.3), (7.0, 8.0, 9.0, 0.1)]
    vol, grid = np.zeros((10, 10, 10), np.uint8), Grid((10, 10, 10), 10.0)
    assert {"min_score", "halve", "context_gate"} <= set(list_steps())
    # filter first, then halve: two left; halve first, then filter at 0.2: one left
    first = build_steps([{"name": "min_score", "floor": "0.2"}, "halve"])
    assert first[0].settings == MinScore(0.2)  # the value is cast to the field's type
    assert run_steps(first, cands, vol, grid) == [(1.0, 2.0, 3.0, 0.45), (4.0, 5.0, 6.0, 0.15)]
    second = build_steps(["halve", {"name": "min_score", "floor": 0.2}])
    assert run_steps(second, cands, vol, grid) == [(1.0, 2.0, 3.0, 0.45)]


def test_bad_step_entries_are_refused_naming_the_entry(clean_registry):
    with pytest.raises(ValueError, match=r"infer.steps\[1\]: unknown candidate step 'nope'"):
        build_steps(["context_gate", "nope"])
    with pytest.raises(ValueError, match=r"infer.steps\[0\]: expected a step name"):
        build_steps([{"threshold": 0.1}])
    with pytest.raises(ValueError, match="registered twice"):

        @dataclass
        class S:
            pass

        register_step("context_gate", S)(lambda c, v, g, s: c)


def test_steps_round_trip_through_the_config_and_set():
    cfg = Config().override(['infer.steps=[{"name": "context_gate", "threshold": 0.2}]'])
    assert cfg.infer.steps == ({"name": "context_gate", "threshold": 0.2},)
    assert Config.from_dict(cfg.to_dict()).infer.steps == cfg.infer.steps
    assert Config().override(["infer.steps=context_gate"]).infer.steps == ("context_gate",)
    assert Config().override(["infer.steps=[]"]).infer.steps == ()


def test_configs_written_before_the_steps_still_load():
    old = Config().to_dict()
    del old["infer"]["steps"]
    old["infer"].update(context_gate=0.1, context_lateral=0.04, context_floor=0.1, fusion_fill=False)
    old["infer"].update(context_sigma_a=200.0, context_radius_a=1000.0, edge_bands=False)
    old["rescore"] = {"enabled": False}
    cfg = Config.from_dict(old)
    (gate,) = build_steps(cfg.infer.steps)
    assert gate.name == "context_gate" and (gate.settings.threshold, gate.settings.lateral) == (0.1, 0.04)
    old["infer"]["context_gate"] = 0.0  # a gate that was off becomes no step
    assert Config.from_dict(old).infer.steps == ()
    assert InferConfig().steps == ()
