"""Config round trips and --set overrides."""

from __future__ import annotations

import json

import pytest

from byu_motor.config import Config


def test_round_trip_through_json():
    cfg = Config(name="x")
    cfg.override(
        ["model.stride=(8, 8, 8)", 'train.losses={"bce": 1, "tversky": 0.5}', "infer.tta=flip_z,rot90"]
    )
    d = json.loads(json.dumps(cfg.to_dict()))
    back = Config.from_dict(d)
    assert back == cfg
    assert back.model.stride == (8, 8, 8)
    assert back.train.losses == {"bce": 1.0, "tversky": 0.5}
    assert back.infer.tta == ("flip_z", "rot90")


def test_override_casts_and_rejects():
    cfg = Config()
    cfg.override(["train.lr=3e-4", "train.steps=200", "data.spacing_a=16", "model.pretrained_file=none",
                  "train.amp=bf16", "infer.compile=true", "data.denoise=median"])  # fmt: skip
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.steps, int)
    assert cfg.data.spacing_a == (16.0, 16.0, 16.0)
    assert cfg.model.pretrained_file is None and cfg.infer.compile is True
    with pytest.raises(ValueError, match="unknown key"):
        cfg.override(["train.nope=1"])
    with pytest.raises(ValueError, match="unknown section"):
        cfg.override(["nope.lr=1"])
    with pytest.raises(ValueError, match="train.steps"):
        cfg.override(["train.steps=abc"])
    with pytest.raises(ValueError, match="key=value"):
        cfg.override(["train.steps"])


def test_from_dict_rejects_unknown_keys():
    d = Config().to_dict()
    d["model"]["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        Config.from_dict(d)
