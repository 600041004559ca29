"""The training entry point: AdamW + cosine warmup, grad accumulation and clipping, AMP, EMA, validation, resume.

One code path for the ``tiny`` preset on two CPU cores and for production presets on GPUs (one process or
several under ``torchrun``); :class:`~byu_motor.train.trainer.Trainer` holds its phases and hooks. What a run
leaves in ``out_dir``:

- ``config.json``: the full config at start; ``folds.csv``: the fold split (written once, read on resume);
- ``last.pt`` / ``best.pt``: inference checkpoints (:func:`byu_motor.models.checkpoint.save_checkpoint`,
  EMA weights when EMA is on) whose ``extra`` holds ``threshold``, ``f2``, ``step``, ``quantile_thresholds``;
- ``resume.pt``: raw model, EMA, optimiser, scaler, scheduler, step, RNG states and mined hard negatives,
  written atomically every ``val_every`` steps and at the end; rerunning the same command continues from it;
- ``metrics.jsonl``: one JSON object per logged event (``event`` "train", "val" or "mine",
  ``step``, ``loss``, ``lr``, ``f2``, ``threshold``, ``elapsed_s``; keys that do not apply are null).

Where it trains (:mod:`byu_motor.train.continuation`): ``train.train_on_all`` trains on every tomogram with
no validation (``last.pt`` = ``best.pt`` = the latest EMA weights, whose recipe gets a threshold rule that
needs no validation); ``train.stop_after_s`` ends a session with ``resume.pt`` saved (Kaggle's 12-hour
limit) and ``train.resume_from`` continues from a previous session's (read-only) output folder.

Hard-negative mining (``train.hard_negative_ratio > 0``, :mod:`byu_motor.train.mining`): every
``hard_negative_every`` steps (default ``val_every``) the EMA model predicts the cached training volumes and its
confident false positives become centres of that fraction of the negative crops; the loader restarts so its
workers see them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from byu_motor.config import Config
from byu_motor.train.checkpointing import RESUME_FORMAT
from byu_motor.train.hooks import Hook, StopTraining
from byu_motor.train.optim import AMP_MODES, build_optimizer, build_scheduler, resolve_amp
from byu_motor.train.rng import rng_state, seed_everything, set_rng_state
from byu_motor.train.trainer import Trainer

__all__ = [
    "AMP_MODES",
    "RESUME_FORMAT",
    "Hook",
    "StopTraining",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "resolve_amp",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "train",
]


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
    hooks: Sequence[Hook] = (),
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
        hooks: extra :class:`~byu_motor.train.hooks.Hook` objects, called after the built-in ones.

    Returns:
        ``step``, ``best_f2``, ``best_threshold``, ``best_step``, ``last_f2``, ``loss`` (mean of the last
        logged window), ``elapsed_s``, ``checkpoints`` (``{"last": path, "best": path}``).
    """
    trainer = Trainer(
        cfg,
        data_dir,
        out_dir,
        resume,
        device,
        val_ids,
        stop_at_step=stop_at_step,
        callback=callback,
        progress=progress,
        hooks=hooks,
    )
    return trainer.fit()
