"""Training engine on a tiny hand-made tomogram set: loss goes down, resume is exact, checkpoints load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from byu_motor.config import Config
from byu_motor.data.io import write_tomogram
from byu_motor.data.layout import TomoRecord, labels_to_frame
from byu_motor.presets import get_preset
from byu_motor.train.distributed import ShardedRangeSampler
from byu_motor.train.engine import StopTraining, build_scheduler, resolve_amp, train

SHAPE = (24, 48, 48)
SPACING_A = 64.0
N_POS, N_NEG = 5, 3


def write_tiny_dataset(root: Path, seed: int = 0) -> Path:
    """Competition layout with N_POS tomograms holding one dark ball (the 'motor') and N_NEG without.

    Shapes are (24, 48, 48) voxels at 64 A; the ball has radius 3 voxels and sits at least 6 voxels from
    every face. Returns ``root``.
    """
    rng = np.random.default_rng(seed)
    records = []
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    for i in range(N_POS + N_NEG):
        vol = rng.normal(150, 18, SHAPE)
        motors = np.zeros((0, 3))
        if i < N_POS:
            c = np.array([rng.uniform(6, n - 7) for n in SHAPE])
            ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 9.0
            vol[ball] = 40
            motors = c[None]
        tid = f"tomo_{i:03d}"
        write_tomogram(np.clip(vol, 0, 255).astype(np.uint8), root / "train" / tid)
        records.append(TomoRecord(tid, SHAPE, SPACING_A, motors, len(motors)))
    labels_to_frame(records).to_csv(root / "train_labels.csv", index=False)
    return root


def tiny_config(**train: object) -> Config:
    """The tiny preset shrunk to the test tomograms (64 A, 16x32x32 patches, no workers)."""
    cfg = get_preset("tiny").override(
        [
            "data.spacing_a=64",
            "data.patch_size=16,32,32",
            "train.batch_size=2",
            "train.num_workers=0",
            "train.warmup_steps=2",
            "train.log_every=1",
            "train.amp=none",
            "infer.patch_size=16,32,32",
            "infer.overlap=0",
            "infer.batch_windows=4",
        ]
    )
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two spinning threads per process are much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


VAL_IDS = ["tomo_000", "tomo_007"]  # one with a motor, one without


def test_loss_decreases_and_outputs_are_complete(data_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(steps=60, val_every=30, lr=3e-3, ema=0.9, batch_size=4)
    losses: list[float] = []
    out = tmp_path / "run"
    result = train(cfg, data_dir, out, val_ids=VAL_IDS, callback=lambda s, i: losses.append(i["loss"]))
    assert result["step"] == 60 and len(losses) == 60
    # per-step losses swing with the positive/negative mix of each batch: compare thirds of the run
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    assert last < 0.8 * first, (first, last)

    for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "resume.pt"):
        assert (out / name).exists(), name
    assert Config.from_dict(json.loads((out / "config.json").read_text())).to_dict() == cfg.to_dict()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["event"] == "train"]
    val_rows = [r for r in rows if r["event"] == "val"]
    assert [r["step"] for r in train_rows] == list(range(1, 61))
    assert [r["step"] for r in val_rows] == [30, 60]
    for r in rows:
        assert {"step", "loss", "lr", "f2", "threshold", "elapsed_s"} <= set(r)
    assert all(math.isfinite(r["loss"]) and 0 <= r["lr"] <= cfg.train.lr for r in train_rows)
    assert train_rows[0]["lr"] > 0 and train_rows[-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert all(0.0 <= r["f2"] <= 1.0 for r in val_rows)
    elapsed = [r["elapsed_s"] for r in rows]
    assert elapsed == sorted(elapsed)

    from byu_motor.models.checkpoint import load_checkpoint

    best = load_checkpoint(out / "best.pt")
    last = load_checkpoint(out / "last.pt")
    assert last.extra["step"] == 60
    assert best.extra["f2"] == pytest.approx(max(r["f2"] for r in val_rows))
    assert best.extra["f2"] == pytest.approx(result["best_f2"])
    assert best.extra["threshold"] == pytest.approx(result["best_threshold"])
    assert set(best.extra["quantile_thresholds"]) == {"0.30", "0.40", "0.50", "0.60", "0.70"}
    assert best.config.to_dict() == cfg.to_dict()
    # last.pt holds the EMA weights, which differ from the raw weights in resume.pt
    raw = torch.load(out / "resume.pt", weights_only=True)
    ema_sd, raw_sd = raw["ema"], raw["model"]
    for k, v in last.model.state_dict().items():
        torch.testing.assert_close(v, ema_sd[k])
    assert any(not torch.equal(ema_sd[k], raw_sd[k]) for k in raw_sd if raw_sd[k].is_floating_point())


def _final_state(out: Path) -> dict:
    return torch.load(out / "resume.pt", weights_only=True)


def test_resume_after_kill_matches_uninterrupted_run(data_dir: Path, tmp_path: Path) -> None:
    # folds from folds.csv (fold 0 of 5 is validation); EMA on; accumulation of 2 micro-batches
    cfg = tiny_config(steps=8, val_every=4, grad_accum=2, ema=0.8, lr=2e-3)
    full = tmp_path / "full"
    train(cfg, data_dir, full)

    cut = tmp_path / "cut"

    def kill_at_6(step: int, info: dict) -> None:
        if step == 6:
            raise StopTraining

    with pytest.raises(StopTraining):
        train(cfg, data_dir, cut, callback=kill_at_6)
    assert _final_state(cut)["step"] == 4  # the last periodic save before the "kill"
    folds_before = (cut / "folds.csv").read_text()
    seen: list[int] = []
    result = train(cfg, data_dir, cut, callback=lambda s, i: seen.append(s))
    assert seen == [5, 6, 7, 8]  # continued at the saved step
    assert result["step"] == 8
    assert (cut / "folds.csv").read_text() == folds_before

    a, b = _final_state(full), _final_state(cut)
    assert a["step"] == b["step"] == 8
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a["ema"][k], b["ema"][k], rtol=1e-5, atol=1e-6)
    opt_a, opt_b = a["optimizer"], b["optimizer"]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for pid in opt_a["state"]:
        for name, value in opt_a["state"][pid].items():
            torch.testing.assert_close(value, opt_b["state"][pid][name], rtol=1e-5, atol=1e-7)
    # rows logged after the saved step by the killed run are replaced by the resumed run's
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["event"] == "train"] == list(range(1, 9))
    assert [r["step"] for r in rows if r["event"] == "val"] == [4, 8]


def test_stop_at_step_then_resume_and_no_resume(data_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(steps=6, val_every=100, ema=0.0)
    out = tmp_path / "run"
    r1 = train(cfg, data_dir, out, val_ids=VAL_IDS, stop_at_step=3)
    assert r1["step"] == 3 and _final_state(out)["step"] == 3
    assert _final_state(out)["ema"] is None
    r2 = train(cfg, data_dir, out, val_ids=VAL_IDS)
    assert r2["step"] == 6
    seen: list[int] = []
    train(cfg, data_dir, out, resume=False, val_ids=VAL_IDS, callback=lambda s, i: seen.append(s))
    assert seen == list(range(1, 7))
    # a resume file from another model is refused, naming the section
    other = tiny_config(steps=6, val_every=100)
    other.model.neck_channels = 8
    with pytest.raises(ValueError, match="model config differs"):
        train(other, data_dir, out, val_ids=VAL_IDS)


def test_scheduler_warmup_and_cosine() -> None:
    cfg = tiny_config(steps=12, warmup_steps=2, lr=1e-2, min_lr=0.0, warmup_lr_init=0.0)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for s in range(13):
        sched.step_update(s)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.0)
    assert lrs[1] == pytest.approx(5e-3)  # linear warmup
    assert lrs[2] == pytest.approx(1e-2)  # peak right after warmup
    assert lrs[7] == pytest.approx(5e-3)  # half way through the 10 cosine steps
    assert lrs[12] == pytest.approx(0.0, abs=1e-12)


def test_amp_resolution() -> None:
    assert resolve_amp("fp16", torch.device("cpu")) == "none"
    assert resolve_amp("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ValueError, match="train.amp"):
        resolve_amp("fp8", torch.device("cpu"))


def test_sharded_sampler_partitions_and_resumes() -> None:
    one = list(ShardedRangeSampler(0, 6, 2))
    assert one == list(range(12))
    ranks = [list(ShardedRangeSampler(0, 6, 2, r, 2)) for r in range(2)]
    assert ranks[0] == [0, 1, 4, 5, 8, 9] and ranks[1] == [2, 3, 6, 7, 10, 11]
    assert list(ShardedRangeSampler(4, 6, 2, 1, 2)) == [10, 11]
    assert len(ShardedRangeSampler(4, 6, 2, 0, 2)) == 2


def test_hard_negative_mining_runs_and_resumes_exactly(data_dir: Path, tmp_path: Path) -> None:
    # mining at every validation (steps 4 and 8 minus the last); a kill at 6 resumes with the points mined at 4
    cfg = tiny_config(
        steps=8,
        val_every=4,
        ema=0.8,
        lr=2e-3,
        pos_ratio=0.3,
        hard_negative_ratio=0.7,
        hard_negative_min_score=0.0,
    )
    full = tmp_path / "full"
    train(cfg, data_dir, full)
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    mined = [r for r in rows if r["event"] == "mine"]
    assert [r["step"] for r in mined] == [4] and mined[0]["n_points"] > 0
    state = _final_state(full)
    assert state["hard_negatives"] is not None and sum(len(x) for x in state["hard_negatives"]) > 0

    cut = tmp_path / "cut"

    def kill_at_6(step: int, info: dict) -> None:
        if step == 6:
            raise StopTraining

    with pytest.raises(StopTraining):
        train(cfg, data_dir, cut, callback=kill_at_6)
    train(cfg, data_dir, cut)
    a, b = _final_state(full), _final_state(cut)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6)
    for x, y in zip(a["hard_negatives"], b["hard_negatives"]):
        torch.testing.assert_close(x, y)


def test_validation_ties_keep_the_later_checkpoint(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    # every validation scores the same: best.pt must hold the last (longest-trained) weights, not the first
    from byu_motor.models.checkpoint import load_checkpoint
    from byu_motor.train import validate

    def constant(self, module, stride):
        return {
            "f2": 0.5,
            "threshold": 0.3,
            "quantile_thresholds": {},
            "quantile_f2": {},
            "n_tomograms": 2,
            "seconds": 0.0,
        }

    monkeypatch.setattr(validate.Validator, "__call__", constant)
    cfg = tiny_config(steps=6, val_every=2, ema=0.0)
    result = train(cfg, data_dir, tmp_path / "run", val_ids=VAL_IDS)
    assert result["best_step"] == 6
    assert load_checkpoint(tmp_path / "run" / "best.pt").extra["step"] == 6


def test_channels_last_layout_trains_the_same_weights(data_dir: Path, tmp_path: Path) -> None:
    # the memory layout is a speed setting: the same seed gives the same losses and weights either way
    runs = {}
    for channels_last in (False, True):
        cfg = tiny_config(steps=6, val_every=100, ema=0.0, channels_last=channels_last)
        losses: list[float] = []
        train(
            cfg,
            data_dir,
            tmp_path / str(channels_last),
            callback=lambda s, i, seen=losses: seen.append(i["loss"]),
        )
        runs[channels_last] = (losses, _final_state(tmp_path / str(channels_last))["model"])
    (loss_a, sd_a), (loss_b, sd_b) = runs[False], runs[True]
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-4)
    assert any(v.dim() == 5 and not v.is_contiguous() for v in sd_b.values())  # saved as trained
    assert all(v.is_contiguous() for v in sd_a.values())
    for k in sd_a:
        torch.testing.assert_close(sd_a[k], sd_b[k], rtol=1e-3, atol=1e-5)
