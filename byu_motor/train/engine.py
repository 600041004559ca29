"""The training loop: AdamW + cosine warmup, grad accumulation and clipping, AMP, EMA, validation, resume.

One code path for the ``tiny`` preset on two CPU cores and for production presets on GPUs (one process or
several under ``torchrun``). What a run leaves in ``out_dir``:

- ``config.json``: the full config at start; ``folds.csv``: the fold split (written once, read on resume);
- ``last.pt`` / ``best.pt``: inference checkpoints (:func:`byu_motor.models.checkpoint.save_checkpoint`,
  EMA weights when EMA is on) whose ``extra`` holds ``threshold``, ``f2``, ``step``, ``quantile_thresholds``;
- ``resume.pt``: raw model, EMA, optimiser, scaler, scheduler, step, RNG states and mined hard negatives,
  written atomically every ``val_every`` steps and at the end; rerunning the same command continues from it;
- ``metrics.jsonl``: one JSON object per logged event (``event`` "train", "val" or "mine",
  ``step``, ``loss``, ``lr``, ``f2``, ``threshold``, ``elapsed_s``; keys that do not apply are null).

Hard-negative mining (``train.hard_negative_ratio > 0``, :mod:`byu_motor.train.mining`): every
``hard_negative_every`` steps (default ``val_every``) the EMA model predicts the cached training volumes and its
confident false positives become centres of that fraction of the negative crops; the loader restarts so its
workers see them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from byu_motor.atomic import atomic_write
from byu_motor.config import Config
from byu_motor.train.distributed import (
    DistInfo,
    ShardedRangeSampler,
    agree_int,
    all_reduce_mean,
    barrier,
    init_distributed,
)
from byu_motor.train.losses import HeatmapLoss

log = logging.getLogger(__name__)

RESUME_FORMAT = "byu_motor.resume/1"
AMP_MODES = ("fp16", "bf16", "none")


class StopTraining(Exception):
    """Raised by a ``callback`` to end a run early (as a kill would); ``train`` lets it propagate."""


# ---------------------------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    # the legacy global generator is seeded for third-party code that still draws from it
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state as tensors, lists and numbers (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()  # noqa: NPY002
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            name,
            keys.numpy().astype(np.uint32),
            int(pos),
            int(has_gauss),
            float(cached),
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_amp(amp: str, device: torch.device) -> str:
    """The effective AMP mode: ``fp16`` becomes ``none`` on CPU (no fp16 autocast/GradScaler there).

    Raises:
        ValueError: for an unknown mode, naming it.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"train.amp={amp!r} is not one of {AMP_MODES}")
    if amp == "fp16" and device.type != "cuda":
        return "none"
    return amp


def _autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh))


def _append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _trim_metrics(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (the resume point; 0 for a fresh start) so steps are never repeated."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
    path.write_text("".join(x + "\n" for x in keep), encoding="utf-8")


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW over ``model``'s trainable parameters; biases and norm weights (1-D) get no weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.train.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config):
    """timm's cosine schedule with linear warmup, stepped per optimiser step (``step_update(step)``)."""
    from timm.scheduler import CosineLRScheduler

    t = cfg.train
    warmup = max(0, min(int(t.warmup_steps), int(t.steps) - 1))
    return CosineLRScheduler(
        optimizer,
        t_initial=max(1, int(t.steps) - warmup),
        lr_min=t.min_lr,
        warmup_t=warmup,
        warmup_lr_init=t.warmup_lr_init,
        warmup_prefix=True,  # the cosine starts after the warmup and ends exactly at train.steps
        t_in_epochs=False,
    )


def _schedule_fields(train: dict[str, Any]) -> tuple:
    return tuple(train[k] for k in ("steps", "lr", "warmup_steps", "min_lr", "warmup_lr_init"))


def _split_folds(records: dict, cfg: Config, out_dir: Path, info: DistInfo, val_ids) -> tuple[list, list]:
    """Train / validation tomo_ids: explicit ``val_ids``, else fold ``cfg.train.fold`` of ``folds.csv``."""
    ids = list(records)
    if val_ids is not None:
        val = [tid for tid in ids if tid in set(val_ids)]
        missing = sorted(set(val_ids) - set(ids))
        if missing:
            raise ValueError(f"val_ids not in train_labels.csv: {missing[:5]}")
        return [tid for tid in ids if tid not in set(val)], val
    t = cfg.train
    if t.n_folds <= 1 or t.fold < 0:
        return ids, []
    from byu_motor.data.folds import make_folds, read_folds, write_folds

    path = out_dir / "folds.csv"
    if info.is_main and not path.exists():
        write_folds(path, make_folds(records, t.n_folds, t.seed))
    barrier()
    folds = read_folds(path)
    unknown = sorted(set(ids) - set(folds))
    if unknown:
        raise ValueError(
            f"{path}: no fold for {len(unknown)} tomogram(s), e.g. {unknown[:3]}; delete it to re-split"
        )
    if not 0 <= t.fold < t.n_folds:
        raise ValueError(f"train.fold={t.fold} is outside 0..{t.n_folds - 1}")
    val = [tid for tid in ids if int(folds[tid]) == t.fold]
    return [tid for tid in ids if int(folds[tid]) != t.fold], val


def _load_volumes(data_dir: Path, records: dict, ids: list[str], cfg: Config, info: DistInfo) -> list:
    """Resampled cached volumes of the training tomograms (rank 0 fills the cache, the others then read it)."""
    from byu_motor.data.cache import VolumeCache

    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else data_dir / ".byu_cache"
    cache = VolumeCache(cache_dir, cfg.data)
    if info.is_main:
        vols = [cache.get(data_dir / "train" / tid, records[tid]) for tid in ids]
    barrier()
    if not info.is_main:
        vols = [cache.get(data_dir / "train" / tid, records[tid]) for tid in ids]
    return vols


# ---------------------------------------------------------------------------------------------- train


def train(
    cfg: Config,
    data_dir: str | Path,
    out_dir: str | Path,
    resume: bool = True,
    device: str | torch.device | None = None,
    val_ids: list[str] | None = None,
    *,
    stop_at_step: int | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a detector on the competition layout in ``data_dir``; write checkpoints and logs to ``out_dir``.

    Args:
        cfg: experiment config (``model``, ``data``, ``train``; ``infer`` drives validation).
        data_dir: folder with ``train/<tomo_id>/slice_*.jpg`` and ``train_labels.csv``.
        out_dir: run folder (created); see the module docstring for what it holds.
        resume: continue from ``out_dir/resume.pt`` when it exists.
        device: default CUDA (``cuda:LOCAL_RANK`` under torchrun) when available, else CPU.
        val_ids: validate on these tomograms instead of fold ``cfg.train.fold``.
        stop_at_step: end after this step as if killed right after saving ``resume.pt`` (tests, time slices).
        callback: called as ``callback(step, info)`` after every optimiser step (``info``: loss, lr);
            raising :class:`StopTraining` (or anything) ends the run without saving, like a kill.
        progress: show a tqdm bar on the main process.

    Returns:
        ``step``, ``best_f2``, ``best_threshold``, ``best_step``, ``last_f2``, ``loss`` (mean of the last
        logged window), ``elapsed_s``, ``checkpoints`` (``{"last": path, "best": path}``).
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from byu_motor.data.dataset import PatchDataset, collate_patches, mix_batch
    from byu_motor.data.layout import read_labels
    from byu_motor.models import create_model
    from byu_motor.models.checkpoint import save_checkpoint

    t = cfg.train
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    info = init_distributed()
    if device is None:
        device = f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:  # plain "cuda": this process's GPU under torchrun, else GPU 0
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    elif info.enabled:  # CPU processes would otherwise oversubscribe the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))
    amp = resolve_amp(t.amp, device)
    if t.steps < 1 or t.batch_size < 1 or t.grad_accum < 1 or t.val_every < 1:
        raise ValueError("train.steps, batch_size, grad_accum and val_every must be >= 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(t.seed)

    labels = data_dir / "train_labels.csv"
    records = read_labels(labels)
    train_ids, val_list = _split_folds(records, cfg, out_dir, info, val_ids)
    if t.val_limit > 0:
        val_list = val_list[: t.val_limit]
    if not train_ids:
        raise ValueError(f"{labels}: no training tomograms left after holding out fold {t.fold}")
    if info.is_main:
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    # model, EMA, optimiser, scheduler, scaler --------------------------------------------------------
    layout = torch.channels_last_3d if t.channels_last else torch.contiguous_format
    model = create_model(cfg.model).to(device, memory_format=layout)
    stride = tuple(int(s) for s in model.stride)
    core = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        model = DDP(model, device_ids=ids)  # broadcasts rank 0's initial weights
    ema = None
    if t.ema > 0:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(core, decay=t.ema)
    optimizer = build_optimizer(core, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    criterion = HeatmapLoss(t)

    step, elapsed0 = 0, 0.0
    saved_hard = None
    best = {"f2": -1.0, "threshold": None, "step": -1, "quantile_thresholds": {}}
    resume_path = out_dir / "resume.pt"
    if resume and resume_path.exists():
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
        if state.get("format") != RESUME_FORMAT:
            raise ValueError(f"{resume_path}: not a resume file (format {state.get('format')!r})")
        saved = state["config"]
        for section in ("model", "data"):
            if saved[section] != cfg.to_dict()[section]:
                raise ValueError(
                    f"{resume_path}: its {section} config differs from this run's; "
                    "use another out_dir or --no-resume"
                )
        core.load_state_dict(state["model"])
        if ema is not None and state.get("ema") is not None:
            ema.module.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        if _schedule_fields(saved["train"]) == _schedule_fields(cfg.to_dict()["train"]):
            scheduler.load_state_dict(state["scheduler"])
        else:  # steps or lr changed on resume: the fresh schedule (a function of the step) takes over
            log.warning("%s: schedule settings changed; continuing on the new schedule", resume_path)
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, elapsed0 = int(state["step"]), float(state["elapsed_s"])
        best = dict(state["best"])
        set_rng_state(state["rng"])
        saved_hard = state.get("hard_negatives")
    step = agree_int(step, device if device.type == "cuda" else "cpu")
    scheduler.step_update(step)

    # data --------------------------------------------------------------------------------------------
    volumes = _load_volumes(data_dir, records, train_ids, cfg, info)
    micro_per_step = t.grad_accum * info.world_size
    n_batches = t.steps * micro_per_step
    dataset = PatchDataset(
        volumes, cfg.data, t, stride, length=n_batches * t.batch_size, seed=t.seed, augment=True
    )

    def batches_from(first_step: int):
        """Batches from ``first_step`` on (workers start afresh and copy the dataset as it is now)."""
        sampler = ShardedRangeSampler(
            first_step * micro_per_step, n_batches, t.batch_size, info.rank, info.world_size
        )
        loader = DataLoader(
            dataset,
            batch_size=t.batch_size,
            sampler=sampler,
            num_workers=t.num_workers,
            collate_fn=collate_patches,
            pin_memory=device.type == "cuda",
            drop_last=True,
            persistent_workers=False,
        )
        return iter(loader)

    mine_every = t.hard_negative_every or t.val_every
    hard_points: list[np.ndarray] | None = None
    if t.hard_negative_ratio > 0 and saved_hard is not None:
        # the points mined before the kill: sampling continues as if uninterrupted
        hard_points = [x.numpy().astype(np.float64) for x in saved_hard]
        dataset.set_hard_negatives(hard_points)
    validator = None
    if info.is_main and val_list:
        from byu_motor.train.validate import Validator

        validator = Validator(cfg, data_dir / "train", {tid: records[tid] for tid in val_list}, device)

    metrics_path = out_dir / "metrics.jsonl"
    if info.is_main:
        _trim_metrics(metrics_path, step)
    t_start = time.perf_counter()

    def elapsed() -> float:
        return elapsed0 + time.perf_counter() - t_start

    def log_row(event: str, **values: Any) -> None:
        row = {"event": event, "step": step, "loss": None, "lr": None, "f2": None, "threshold": None}
        row.update(values)
        row["elapsed_s"] = round(elapsed(), 3)
        _append_jsonl(metrics_path, row)

    def extra_for(res: dict[str, Any] | None) -> dict[str, Any]:
        if res is None:  # no validation set: the configured fixed threshold stands in
            return {
                "threshold": cfg.infer.threshold_value,
                "f2": None,
                "step": step,
                "quantile_thresholds": {},
            }
        return {
            "threshold": res["threshold"],
            "f2": res["f2"],
            "step": step,
            "quantile_thresholds": res["quantile_thresholds"],
        }

    def checkpoint() -> dict[str, Any] | None:
        """Validate (rank 0), write last/best/resume; every rank waits for it."""
        nonlocal best
        res = None
        if info.is_main:
            eval_model = ema.module if ema is not None else core
            if validator is not None:
                res = validator(eval_model, stride)
                log_row(
                    "val",
                    f2=res["f2"],
                    threshold=res["threshold"],
                    quantile_f2=res["quantile_f2"],
                    quantile_thresholds=res["quantile_thresholds"],
                    val_s=round(res["seconds"], 2),
                )
            extra = extra_for(res)
            save_checkpoint(out_dir / "last.pt", eval_model, cfg, extra)
            if res is None:  # nothing to compare: the latest weights are the best we know
                save_checkpoint(out_dir / "best.pt", eval_model, cfg, extra)
            elif res["f2"] >= best["f2"]:  # ties: the later, longer-trained weights
                best = dict(extra)
                save_checkpoint(out_dir / "best.pt", eval_model, cfg, extra)
            _atomic_torch_save(
                {
                    "format": RESUME_FORMAT,
                    "step": step,
                    "elapsed_s": elapsed(),
                    "config": cfg.to_dict(),
                    "model": core.state_dict(),
                    "ema": ema.module.state_dict() if ema is not None else None,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "best": best,
                    "rng": rng_state(),
                    "hard_negatives": None
                    if hard_points is None
                    else [torch.from_numpy(np.ascontiguousarray(x)) for x in hard_points],
                },
                resume_path,
            )
        barrier()
        return res

    # loop --------------------------------------------------------------------------------------------
    last_res: dict[str, Any] | None = None
    window_sum, window_n, last_loss = torch.zeros((), device=device), 0, float("nan")
    bar = tqdm(
        total=t.steps, initial=step, disable=not (progress and info.is_main), desc="train", dynamic_ncols=True
    )
    batches = batches_from(step)
    model.train()
    while step < t.steps:
        optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=device)
        for micro in range(t.grad_accum):
            batch = next(batches)
            # batch mixing draws from a generator keyed by (seed, rank, step): identical after a resume
            batch = mix_batch(batch, t, np.random.default_rng([t.seed, info.rank, step, micro]))
            x = batch["image"].to(device, non_blocking=True).contiguous(memory_format=layout)
            y = batch["target"].to(device, non_blocking=True)
            skip_sync = (
                info.enabled and micro < t.grad_accum - 1
            )  # DDP all-reduces on the last micro-step only
            with model.no_sync() if skip_sync else contextlib.nullcontext():
                with _autocast(amp, device):
                    out = model(x)
                loss, _ = criterion(out, y)
                scaler.scale(loss / t.grad_accum).backward()
            step_loss += loss.detach() / t.grad_accum
        if t.clip_grad and t.clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(core.parameters(), t.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        scheduler.step_update(step)
        if ema is not None:
            ema.update(core, step=step)
        lr = float(optimizer.param_groups[0]["lr"])
        window_sum += step_loss
        window_n += 1
        bar.update(1)
        if step % t.log_every == 0 or step == t.steps:
            # the only device sync of a log window
            last_loss = float(all_reduce_mean(window_sum / window_n))
            window_sum.zero_()
            window_n = 0
            if not math.isfinite(last_loss):
                raise FloatingPointError(
                    f"step {step}: loss is {last_loss}; lower train.lr or check the data"
                )
            if info.is_main:
                log_row("train", loss=last_loss, lr=lr)
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
        if t.hard_negative_ratio > 0 and step % mine_every == 0 and step < t.steps:
            from byu_motor.train.mining import mine_hard_negatives

            t_mine = time.perf_counter()
            hard_points = mine_hard_negatives(
                ema.module if ema is not None else core, stride, volumes, cfg, device
            )
            dataset.set_hard_negatives(hard_points)
            del batches
            batches = batches_from(step)
            if info.is_main:
                log_row(
                    "mine",
                    n_points=int(sum(len(x) for x in hard_points)),
                    mine_s=round(time.perf_counter() - t_mine, 2),
                )
        if step % t.val_every == 0 or step == t.steps or step == stop_at_step:
            last_res = checkpoint()
        if callback is not None:
            callback(step, {"loss": float(step_loss), "lr": lr})
        if stop_at_step is not None and step >= stop_at_step:
            break
    bar.close()
    del batches
    result = {
        "step": step,
        "best_f2": best["f2"] if best["step"] >= 0 else None,
        "best_threshold": best["threshold"],
        "best_step": best["step"],
        "last_f2": last_res["f2"] if last_res else None,
        "loss": last_loss,
        "elapsed_s": elapsed(),
        "checkpoints": {"last": str(out_dir / "last.pt"), "best": str(out_dir / "best.pt")},
    }
    log.info("training done: %s", result)
    return result
