"""torch.compile falls back to eager on cards Triton does not support; autocast picks bf16 or fp16 by card."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from byu_motor.infer import accel


@pytest.fixture()
def card(monkeypatch):
    """Simulate a CUDA card of a given capability (and bf16 support) without one."""

    def set_card(capability, bf16=True, name="Simulated"):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(accel, "_WARNED", set())

    return set_card


def test_compile_falls_back_to_eager_with_one_warning_on_a_p100(card, monkeypatch, caplog):
    card((6, 0), bf16=False, name="Tesla P100")
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m, **k: compiled.append(m) or m)
    module = nn.Linear(2, 2)
    with caplog.at_level(logging.WARNING, logger="byu_motor.infer.accel"):
        assert accel.maybe_compile(module, "cuda:0") is module
        assert accel.maybe_compile(module, "cuda:0") is module
    assert compiled == []
    warnings = [r for r in caplog.records if "Triton" in r.getMessage()]
    assert len(warnings) == 1 and "P100" in warnings[0].getMessage() and "6.0" in warnings[0].getMessage()


@pytest.mark.parametrize("capability", [(7, 0), (7, 5), (9, 0)])
def test_compile_is_used_on_supported_cards(card, monkeypatch, capability):
    card(capability)
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m, **k: compiled.append(m) or m)
    module = nn.Linear(2, 2)
    accel.maybe_compile(module, "cuda:0")
    assert compiled == [module]
    assert accel.compile_supported("cpu")


@pytest.mark.parametrize(
    "capability, bf16, expected",
    [((6, 0), False, torch.float16), ((7, 5), True, torch.float16), ((8, 0), True, torch.bfloat16),
     ((9, 0), False, torch.float16)],
)  # fmt: skip
def test_autocast_dtype_by_card(card, capability, bf16, expected):
    # a T4 (sm 7.5) may claim bf16 through emulation: fp16 all the same
    card(capability, bf16=bf16)
    assert accel.autocast_dtype("cuda:0") is expected
    assert accel.autocast_dtype("cpu") is None


def test_predictor_compiles_through_the_guard(card, monkeypatch):
    from byu_motor.config import InferConfig
    from byu_motor.infer import Predictor
    from tests.infer.test_predictor import spec

    calls = []
    monkeypatch.setattr(accel, "maybe_compile", lambda m, d: calls.append(str(d)) or m)
    monkeypatch.setattr("byu_motor.infer.predictor.maybe_compile", accel.maybe_compile)
    Predictor([spec(2)], InferConfig(compile=True), device="cpu")
    assert calls == ["cpu"]
