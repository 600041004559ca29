"""Tests for checkpoint save / load / validation (byu_motor.models.checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from byu_motor.config import Config, ModelConfig
from byu_motor.models import (
    FORMAT,
    CheckpointError,
    create_model,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from tests.models.test_detector import TEST_ENCODER, test_encoder_registered  # noqa: F401 (fixture)


def _config(**model_kw) -> Config:
    kw = dict(encoder=TEST_ENCODER, neck="unet", stride=(4, 4, 4), neck_channels=8)
    kw.update(model_kw)
    return Config(name="ckpt_test", model=ModelConfig(**kw))


def _trained_like(cfg: Config) -> nn.Module:
    """A model whose BatchNorm running stats and weights differ from a fresh build."""
    torch.manual_seed(1)
    model = create_model(cfg.model)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 1, 24, 24, 24) * 3 + 1)
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    cfg = _config(encoder_kwargs={"width": 3}, neck_kwargs={}, head_kwargs={"prior": 0.02})
    model = _trained_like(cfg)
    x = torch.randn(1, 1, 33, 47, 29)
    with torch.no_grad():
        ref = model(x)
    extra = {"threshold": np.float32(0.42), "step": 1000, "f2": 0.9, "hist": [1, 2], "t": torch.ones(2)}
    path = save_checkpoint(tmp_path / "sub" / "best.pt", model, cfg, extra=extra)
    assert path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]  # no temp file left behind

    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.config == cfg
    assert loaded.extra["threshold"] == pytest.approx(0.42) and isinstance(loaded.extra["threshold"], float)
    assert loaded.extra["step"] == 1000 and loaded.extra["hist"] == [1, 2]
    assert torch.equal(loaded.extra["t"], torch.ones(2))
    with torch.no_grad():
        out = loaded.model(x)
    assert torch.equal(ref, out)

    header = read_checkpoint_config(path)
    assert header.config == cfg and header.extra["step"] == 1000


def test_wrappers_are_unwrapped(tmp_path):
    cfg = _config()
    model = _trained_like(cfg)

    class Wrapper(nn.Module):  # what DistributedDataParallel / EMA wrappers look like
        def __init__(self, m):
            super().__init__()
            self.module = m

    save_checkpoint(tmp_path / "a.pt", Wrapper(model), cfg)
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    assert raw["format"] == FORMAT
    assert not any(k.startswith("module.") for k in raw["state_dict"])
    # A state dict carrying compile / DDP prefixes is cleaned too.
    prefixed = {"_orig_mod.module." + k: v for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "b.pt", prefixed, cfg)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "b.pt").model(x), model(x))


def test_config_without_pretrained_file_needed(tmp_path):
    cfg = _config(pretrained_file=str(tmp_path / "gone.pth"))  # absent on the machine that loads it
    save_checkpoint(tmp_path / "c.pt", create_model(_config().model), cfg)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.config.model.pretrained_file == str(tmp_path / "gone.pth")


def test_plain_state_dict_is_rejected(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(create_model(_config().model).state_dict(), path)
    with pytest.raises(CheckpointError, match="plain state dict") as err:
        load_checkpoint(path)
    assert "plain.pt" in str(err.value)


def test_wrong_format_is_rejected(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "someone_else/3", "config": {}, "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="someone_else/3") as err:
        read_checkpoint_config(path)
    assert "other.pt" in str(err.value)
    torch.save({"config": {}, "state_dict": {}, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="no 'format'"):
        load_checkpoint(path)


def test_non_torch_file_is_rejected(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.pt.*not a readable torch file"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_unknown_encoder_is_rejected_before_building(tmp_path):
    cfg = _config()
    d = cfg.to_dict()
    d["model"]["encoder"] = "resnet9000"
    path = tmp_path / "future.pt"
    torch.save({"format": FORMAT, "config": d, "state_dict": {}, "extra": {}}, path)
    with pytest.raises(CheckpointError, match="future.pt.*unknown encoder 'resnet9000'"):
        read_checkpoint_config(path)
    d["model"]["encoder"] = TEST_ENCODER
    d["model"]["neck"] = "bifpn"
    torch.save({"format": FORMAT, "config": d, "state_dict": {}, "extra": {}}, path)
    with pytest.raises(CheckpointError, match="unknown neck 'bifpn'"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_are_rejected(tmp_path):
    path = tmp_path / "mismatch.pt"
    save_checkpoint(path, create_model(_config().model), _config(neck_channels=16))
    with pytest.raises(CheckpointError, match="mismatch.pt.*do not fit"):
        load_checkpoint(path)


def test_bad_config_and_extra_values(tmp_path):
    d = _config().to_dict()
    d["model"]["colour"] = "blue"
    path = tmp_path / "badcfg.pt"
    torch.save({"format": FORMAT, "config": d, "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="badcfg.pt.*invalid config.*colour"):
        read_checkpoint_config(path)
    with pytest.raises(TypeError, match="extra.when"):
        save_checkpoint(tmp_path / "x.pt", create_model(_config().model), _config(), extra={"when": object()})
    assert not (tmp_path / "x.pt").exists()


def test_nan_weights_are_rejected_naming_the_file(tmp_path):
    cfg = _config()
    state = create_model(cfg.model).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = torch.full_like(state[key], float("inf"))
    path = save_checkpoint(tmp_path / "diverged.pt", state, cfg)
    with pytest.raises(CheckpointError, match=f"diverged.pt.*NaN or inf.*{key}"):
        load_checkpoint(path)


def test_kwargs_the_encoder_does_not_take_are_a_checkpoint_error(tmp_path):
    cfg = _config(encoder_kwargs={"no_such_option": 1})
    path = tmp_path / "kwargs.pt"
    torch.save({"format": FORMAT, "config": cfg.to_dict(), "state_dict": {}, "extra": {}}, path)
    with pytest.raises(CheckpointError, match="kwargs.pt.*cannot rebuild.*TypeError.*no_such_option"):
        load_checkpoint(path)


def test_header_read_gives_the_full_loads_config_and_extra(tmp_path):
    cfg = _config(encoder_kwargs={"width": 3})
    extra = {"threshold": 0.37, "step": 7, "t": torch.arange(3.0)}
    path = save_checkpoint(tmp_path / "h.pt", _trained_like(cfg), cfg, extra=extra)
    header = read_checkpoint_config(path)  # memory-mapped: touches the pickled header only
    full = load_checkpoint(path)
    assert header.config == full.config == cfg
    assert header.config.to_dict() == torch.load(path, weights_only=True)["config"]
    assert header.extra.keys() == full.extra.keys() == extra.keys()
    assert header.extra["threshold"] == full.extra["threshold"] == 0.37
    assert torch.equal(header.extra["t"], full.extra["t"]) and torch.equal(header.extra["t"], extra["t"])


def test_legacy_non_zip_checkpoint_still_reads(tmp_path):
    # torch's pre-1.6 layout cannot be memory-mapped: read fully instead
    cfg = _config()
    model = _trained_like(cfg)
    save_checkpoint(tmp_path / "z.pt", model, cfg, extra={"step": 3})
    payload = torch.load(tmp_path / "z.pt", weights_only=True)
    torch.save(payload, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert read_checkpoint_config(tmp_path / "legacy.pt") == read_checkpoint_config(tmp_path / "z.pt")
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "legacy.pt").model(x), model(x))
