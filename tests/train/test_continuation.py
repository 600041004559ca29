"""Where a run trains: every tomogram (train_on_all), sessions cut by time, continued from a read-only copy."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest
import torch

from byu_motor.cli import main
from byu_motor.models import load_checkpoint
from byu_motor.train.continuation import adopt_previous_run, find_previous_run, recipe_without_validation
from byu_motor.train.engine import train
from tests.train.test_engine import N_NEG, N_POS, one_thread, tiny_config, write_tiny_dataset  # noqa: F401


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


def _state(out: Path) -> dict:
    return torch.load(out / "resume.pt", weights_only=True)


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_on_all_skips_validation_and_its_checkpoint_predicts(data_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(steps=2, val_every=2, train_on_all=True, grad_accum=2, ema_every_micro=True)
    cfg.infer.threshold = "checkpoint"  # needs validation: the checkpoint gets the seed's rule instead
    out = tmp_path / "all"
    seen: list[int] = []
    result = train(cfg, data_dir, out, callback=lambda s, i: seen.append(s), progress=False)
    assert result["step"] == 2 and result["best_f2"] is None and seen == [1, 2]
    assert not (out / "folds.csv").exists()
    assert [e["event"] for e in _events(out)] == ["train", "train"]  # no "val" rows
    loaded = load_checkpoint(out / "last.pt")
    model, ckpt_cfg, extra = loaded.model, loaded.config, loaded.extra
    assert ckpt_cfg.train.train_on_all and ckpt_cfg.infer.threshold == "negative_share" and extra["step"] == 2
    # the saved weights are the EMA's
    ema = _state(out)["ema"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ema[k])

    pred = tmp_path / "pred"
    for i in (0, N_POS + N_NEG - 1):  # a positive and a negative tomogram as the "test" set
        shutil.copytree(data_dir / "train" / f"tomo_{i:03d}", pred / "test" / f"tomo_{i:03d}")
    sub = tmp_path / "sub.csv"
    assert (
        main(["predict", str(pred), "--checkpoints", str(out / "last.pt"), "--out", str(sub), "--quiet"]) == 0
    )
    rows = pd.read_csv(sub)
    assert sorted(rows["tomo_id"]) == ["tomo_000", f"tomo_{N_POS + N_NEG - 1:03d}"]


def test_train_on_all_refuses_explicit_validation_ids(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_on_all"):
        train(tiny_config(train_on_all=True), data_dir, tmp_path / "x", val_ids=["tomo_000"], progress=False)


def test_recipe_without_validation_keeps_rules_that_need_none() -> None:
    cfg = tiny_config()
    cfg.infer.threshold = "quantile"
    assert recipe_without_validation(cfg) is cfg
    cfg.infer.threshold = "checkpoint"
    out = recipe_without_validation(cfg)
    assert out.infer.threshold == "negative_share" and cfg.infer.threshold == "checkpoint"


def _read_only(folder: Path) -> None:
    for p in folder.iterdir():
        p.chmod(stat.S_IRUSR | stat.S_IRGRP)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)


def test_a_session_continued_from_a_read_only_copy_matches_one_run(data_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(steps=6, val_every=2, grad_accum=2, ema=0.8, ema_every_micro=True, lr=2e-3)
    full = tmp_path / "full"
    train(cfg, data_dir, full, progress=False)

    first = tmp_path / "session1"
    train(cfg, data_dir, first, stop_at_step=3, progress=False)
    attached = tmp_path / "input" / "session1"  # the previous session's output, attached read-only
    shutil.copytree(first, attached)
    _read_only(attached)
    before = {p.name: p.read_bytes() for p in attached.iterdir()}
    assert find_previous_run(tmp_path / "input", cfg.name) == attached  # what the train notebook continues
    try:
        cfg2 = tiny_config(steps=6, val_every=2, grad_accum=2, ema=0.8, ema_every_micro=True, lr=2e-3)
        cfg2.train.resume_from = str(attached)
        second = tmp_path / "session2"
        seen: list[int] = []
        result = train(cfg2, data_dir, second, callback=lambda s, i: seen.append(s), progress=False)
        assert {p.name: p.read_bytes() for p in attached.iterdir()} == before  # the input is untouched
    finally:
        attached.chmod(stat.S_IRWXU)
    assert seen == [4, 5, 6] and result["step"] == 6
    assert (second / "folds.csv").read_text() == (full / "folds.csv").read_text()
    a, b = _state(full), _state(second)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a["ema"][k], b["ema"][k], rtol=1e-5, atol=1e-6)
    assert [r["step"] for r in _events(second) if r["event"] == "train"] == list(range(1, 7))
    # out_dir's own resume.pt wins over resume_from from then on
    assert not adopt_previous_run(attached, second)


def test_resume_from_a_folder_without_a_run_names_it(data_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(steps=2)
    cfg.train.resume_from = str(tmp_path / "empty")
    with pytest.raises(OSError, match="empty"):
        train(cfg, data_dir, tmp_path / "run", progress=False)


def test_stop_after_s_saves_and_stops_the_session(data_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(steps=5, val_every=100, stop_after_s=1e-9, fold=-1)
    out = tmp_path / "run"
    assert train(cfg, data_dir, out, progress=False)["step"] == 1
    assert _state(out)["step"] == 1 and (out / "last.pt").exists()
    cfg.train.stop_after_s = 0.0
    assert train(cfg, data_dir, out, progress=False)["step"] == 5  # the next session finishes the run


def _fake_run(folder: Path, step: int, preset: str | None) -> Path:
    folder.mkdir(parents=True)
    torch.save({"format": "fake", "step": step, "model": {"w": torch.zeros(3)}}, folder / "resume.pt")
    if preset is not None:
        (folder / "config.json").write_text(json.dumps({"name": preset}))
    return folder


def test_find_previous_run_picks_the_furthest_run_of_the_preset(tmp_path: Path) -> None:
    root = tmp_path / "input"
    assert find_previous_run(root, "seed_resnext50") is None  # nothing attached (or no such folder)
    _fake_run(root / "a-session1" / "run", 3000, "seed_resnext50")
    later = _fake_run(root / "notebooks" / "me" / "z-session2" / "run", 9000, "seed_resnext50")
    _fake_run(root / "b-other" / "run", 20000, "seed_densenet121")  # another member's run: not this one
    _fake_run(root / "c-unnamed", 50000, None)  # no config.json: only when any preset will do
    _fake_run(root / "d" / "e" / "f" / "g" / "run", 90000, "seed_resnext50")  # deeper than max_depth
    assert find_previous_run(root, "seed_resnext50") == later
    assert find_previous_run(root, "seed_densenet121") == root / "b-other" / "run"
    assert find_previous_run(root, None) == root / "c-unnamed"
    assert find_previous_run(root, None, max_depth=6) == root / "d" / "e" / "f" / "g" / "run"
    assert find_previous_run(root, "seed_x3d_m") is None
    broken = _fake_run(root / "00-broken" / "run", 0, "seed_resnext50")
    (broken / "resume.pt").write_bytes((broken / "resume.pt").read_bytes()[:100])  # cut off mid-write
    assert find_previous_run(root, "seed_resnext50") == later
    comp = (
        root / "byu-locating-bacterial-flagellar-motors-2025"
    )  # the competition data: its folders not walked
    (comp / "train").mkdir(parents=True)
    (comp / "train_labels.csv").write_text("tomo_id\n")
    _fake_run(comp / "train" / "tomo_x", 10**6, "seed_resnext50")
    assert find_previous_run(root, "seed_resnext50") == later
    # equal steps: the first path in sorted order, whatever the walk order
    _fake_run(root / "0-copy" / "run", 9000, "seed_resnext50")
    assert find_previous_run(root, "seed_resnext50") == root / "0-copy" / "run"


def test_keep_steps_and_a_seed_split_file(data_dir: Path, tmp_path: Path) -> None:
    """``train.keep_steps`` keeps ``step_<N>.pt``; ``train.folds_file`` (the seed's cv JSON) fixes validation."""
    from byu_motor.data.folds import held_out_ids

    held = ["tomo_001", f"tomo_{N_POS + N_NEG - 1:03d}"]
    split = tmp_path / "skf4_rd42.json"
    split.write_text(
        json.dumps({"num_folds": 2, "folds": [{"train": [], "val": ["tomo_999"]}, {"val": held}]})
    )
    assert held_out_ids(split, 1) == set(held)
    with pytest.raises(ValueError, match="outside"):
        held_out_ids(split, 2)
    csv_split = tmp_path / "folds.csv"
    csv_split.write_text("tomo_id,fold\ntomo_000,0\ntomo_001,1\ntomo_002,1\n")
    assert held_out_ids(csv_split, 1) == {"tomo_001", "tomo_002"}
    with pytest.raises(ValueError, match="does not exist"):
        held_out_ids(tmp_path / "nope.json", 0)
    cfg = tiny_config(steps=3, val_every=100, keep_steps=(2,), folds_file=str(split), fold=1, n_folds=2)
    out = tmp_path / "run"
    result = train(cfg, data_dir, out, progress=False)
    assert result["step"] == 3 and result["best_step"] in (2, 3)
    assert (out / "step_2.pt").exists() and not (out / "step_3.pt").exists()
    assert load_checkpoint(out / "step_2.pt").extra["step"] == 2
    assert not (out / "folds.csv").exists()  # the split came from the file
    vals = [e for e in _events(out) if e["event"] == "val"]
    assert [e["step"] for e in vals] == [2, 3]  # validated on the held-out pair at the kept step and the end
