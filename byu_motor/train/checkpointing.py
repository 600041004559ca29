"""What a training run saves: inference checkpoints (``last.pt``, ``best.pt``) and the resume file ``resume.pt``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from byu_motor.atomic import atomic_write
from byu_motor.config import Config
from byu_motor.train.hooks import Hook
from byu_motor.train.rng import rng_state

RESUME_FORMAT = "byu_motor.resume/1"
SCHEDULE_FIELDS = ("steps", "lr", "warmup_steps", "min_lr", "warmup_lr_init")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temp file renamed over ``path``: a kill never leaves half a file."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def resume_state(
    *,
    step: int,
    elapsed_s: float,
    cfg: Config,
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    best: dict[str, Any],
    hooks: Sequence[Hook] = (),
) -> dict[str, Any]:
    """The content of ``resume.pt``, with the current global RNG states and each hook's state.

    Args:
        step: optimiser steps done.
        elapsed_s: training seconds so far.
        cfg: the run's config (checked on resume by :func:`read_resume`).
        model: the raw model being trained (not the DDP wrapper).
        ema: the EMA copy of it, or None when EMA is off.
        optimizer: the optimiser.
        scheduler: the timm learning-rate scheduler.
        scaler: the AMP gradient scaler (its state is kept only when it is enabled).
        best: ``extra`` of the best inference checkpoint so far.
        hooks: the run's hooks; their :meth:`~byu_motor.train.hooks.Hook.state_dict` keys become top-level keys.

    Raises:
        ValueError: when a hook's keys clash with the Trainer's own or another hook's, naming them.
    """
    state = {
        "format": RESUME_FORMAT,
        "step": step,
        "elapsed_s": elapsed_s,
        "config": cfg.to_dict(),
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "best": best,
        "rng": rng_state(),
    }
    for hook in hooks:
        extra = hook.state_dict()
        clash = sorted(set(extra) & set(state))
        if clash:
            raise ValueError(f"{type(hook).__name__}.state_dict() reuses resume.pt keys {clash}")
        state.update(extra)
    return state


def read_resume(path: Path, cfg: Config) -> dict[str, Any]:
    """Load ``resume.pt`` (``weights_only``) and check that it belongs to a run of ``cfg``.

    Raises:
        ValueError: when the file is not a resume file, or its ``model`` or ``data`` config differs from
            ``cfg``'s (its weights or cached volumes would not fit this run).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != RESUME_FORMAT:
        raise ValueError(f"{path}: not a resume file (format {state.get('format')!r})")
    saved = state["config"]
    for section in ("model", "data"):
        if saved[section] != cfg.to_dict()[section]:
            raise ValueError(
                f"{path}: its {section} config differs from this run's; use another out_dir or --no-resume"
            )
    return state


def same_schedule(saved_train: Mapping[str, Any], cfg: Config) -> bool:
    """Whether a saved ``train`` config section has the learning-rate schedule of ``cfg``."""
    now = cfg.to_dict()["train"]
    return all(saved_train[k] == now[k] for k in SCHEDULE_FIELDS)


def checkpoint_extra(result: Mapping[str, Any] | None, cfg: Config, step: int) -> dict[str, Any]:
    """The ``extra`` of an inference checkpoint: ``threshold``, ``f2``, ``step``, ``quantile_thresholds``.

    Args:
        result: the Validator's result, or None without a validation set (the configured fixed threshold
            then stands in and ``f2`` is None).
        cfg: the run's config.
        step: the optimiser step of the weights.
    """
    if result is None:
        return {"threshold": cfg.infer.threshold_value, "f2": None, "step": step, "quantile_thresholds": {}}
    return {
        "threshold": result["threshold"],
        "f2": result["f2"],
        "step": step,
        "quantile_thresholds": result["quantile_thresholds"],
    }


def save_inference_checkpoints(
    out_dir: Path,
    model: nn.Module,
    cfg: Config,
    result: Mapping[str, Any] | None,
    best: dict[str, Any],
    step: int,
    keep: bool = False,
) -> dict[str, Any]:
    """Write ``last.pt``, and ``best.pt`` when ``result`` is at least as good as ``best`` (``keep``: also
    ``step_<step>.pt``).

    Args:
        out_dir: the run folder.
        model: the weights to save (the EMA model when EMA is on).
        cfg: the run's config (saved with the weights: the checkpoint is the recipe).
        result: the Validator's result at ``step``, or None without a validation set.
        best: ``extra`` of the best checkpoint so far (``f2`` -1 before the first validation).
        step: the optimiser step.

    Returns:
        the new ``best`` (``best`` itself when this step is not better).
    """
    from byu_motor.models.checkpoint import save_checkpoint

    extra = checkpoint_extra(result, cfg, step)
    save_checkpoint(out_dir / "last.pt", model, cfg, extra)
    if keep:
        save_checkpoint(out_dir / f"step_{step}.pt", model, cfg, extra)
    if result is None:  # nothing to compare: the latest weights are the best we know
        save_checkpoint(out_dir / "best.pt", model, cfg, extra)
    elif result["f2"] >= best["f2"]:  # ties: the later, longer-trained weights
        best = dict(extra)
        save_checkpoint(out_dir / "best.pt", model, cfg, extra)
    return best
