"""The Trainer: one training run as named phases (setup, resume, data, step, validate, checkpoint, finish) and hooks.

What a run leaves in ``out_dir`` is described in :mod:`byu_motor.train.engine`, whose ``train`` is the public
entry point (``Trainer(...).fit()``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from byu_motor.config import Config
from byu_motor.train.checkpointing import (
    atomic_torch_save,
    read_resume,
    resume_state,
    same_schedule,
    save_inference_checkpoints,
)
from byu_motor.train.continuation import adopt_previous_run, recipe_without_validation, time_is_up
from byu_motor.train.distributed import agree_int, all_reduce_mean, barrier, init_distributed, pick_device
from byu_motor.train.hooks import Hook
from byu_motor.train.inputs import load_volumes, make_dataset, make_loader, read_training_labels, split_folds
from byu_motor.train.losses import HeatmapLoss
from byu_motor.train.metrics_log import MetricsLog
from byu_motor.train.mining import HardNegativeMining
from byu_motor.train.optim import build_optimizer, build_scheduler, resolve_amp
from byu_motor.train.rng import seed_everything, set_rng_state

log = logging.getLogger(__name__)


class Trainer:
    """Train a detector on the competition layout in ``data_dir``; write checkpoints and logs to ``out_dir``.

    :meth:`fit` runs the phases in order: :meth:`setup` (device, process group, seed, fold split, model, EMA,
    optimiser, scheduler, scaler), :meth:`resume` (``resume.pt``), :meth:`setup_data` (volume cache,
    dataset, validator), then :meth:`train_step` until ``train.steps``, with :meth:`validate` and
    :meth:`checkpoint` every ``train.val_every`` steps, and :meth:`finish`. Hooks (:class:`Hook`) join at
    named points; hard-negative mining is one (:class:`~byu_motor.train.mining.HardNegativeMining`), always
    installed first and idle unless ``train.hard_negative_ratio > 0``.

    Args:
        cfg: experiment config (``model``, ``data``, ``train``; ``infer`` drives validation).
        data_dir: folder with ``train/<tomo_id>/slice_*.jpg`` and ``train_labels.csv``.
        out_dir: run folder (created).
        resume: continue from ``out_dir/resume.pt`` when it exists.
        device: default CUDA (``cuda:LOCAL_RANK`` under torchrun) when available, else CPU.
        val_ids: validate on these tomograms instead of fold ``cfg.train.fold``.
        stop_at_step: end after this step as if killed right after saving ``resume.pt`` (tests, time slices).
        callback: called as ``callback(step, info)`` after every optimiser step and its checkpoint (``info``:
            loss, lr); raising :class:`~byu_motor.train.hooks.StopTraining` (or anything) ends the run
            without saving, like a kill.
        progress: show a tqdm bar on the main process.
        hooks: more hooks, called after the built-in ones in this order.
    """

    def __init__(
        self,
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
    ):
        self.cfg = cfg
        self.data_dir, self.out_dir = Path(data_dir), Path(out_dir)
        self.resume_enabled = resume
        self.requested_device = device
        self.val_ids = val_ids
        self.stop_at_step = stop_at_step
        self.callback = callback
        self.progress = progress
        self.hooks: list[Hook] = [HardNegativeMining(cfg.train), *hooks]
        self.step = 0
        self.best: dict[str, Any] = {"f2": -1.0, "threshold": None, "step": -1, "quantile_thresholds": {}}
        self.last_result: dict[str, Any] | None = None
        self.last_loss = float("nan")
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl", self.elapsed)
        self._elapsed0 = 0.0
        self._t_start = self._session_t0 = time.perf_counter()
        self._batches: Iterator[dict[str, Any]] | None = None

    # ------------------------------------------------------------------------------------------ accessors

    @property
    def resume_path(self) -> Path:
        """``out_dir/resume.pt``."""
        return self.out_dir / "resume.pt"

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, saved for inference and mined with: EMA when on, else the raw model."""
        return self.ema.module if self.ema is not None else self.core

    def elapsed(self) -> float:
        """Training seconds so far, including those before a resume."""
        return self._elapsed0 + time.perf_counter() - self._t_start

    def log_event(self, event: str, **values: Any) -> None:
        """Append a ``metrics.jsonl`` row for ``event`` at the current step (call on the main process only)."""
        self.metrics.write(event, self.step, **values)

    # ------------------------------------------------------------------------------------------ phases

    def fit(self) -> dict[str, Any]:
        """Run every phase; see :func:`byu_motor.train.engine.train` for the returned dict."""
        self.setup()
        self.resume()
        self.setup_data()
        for hook in self.hooks:
            hook.on_train_start(self)
        self._t_start = time.perf_counter()
        self.run()
        return self.finish()

    def setup(self) -> None:
        """Device and process group, seed, train / validation split, model, EMA, optimiser, scheduler, scaler."""
        t = self.cfg.train
        self._setup_device()
        if t.steps < 1 or t.batch_size < 1 or t.grad_accum < 1 or t.val_every < 1:
            raise ValueError("train.steps, batch_size, grad_accum and val_every must be >= 1")
        if t.train_on_all and self.val_ids is not None:
            raise ValueError("train.train_on_all trains on every tomogram: pass no val_ids")
        if t.train_on_all:
            self.cfg = recipe_without_validation(self.cfg)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if t.resume_from and self.resume_enabled and self.info.is_main:
            adopt_previous_run(t.resume_from, self.out_dir)
        barrier()
        seed_everything(t.seed)
        self._setup_split()
        self._setup_model()

    def _setup_device(self) -> None:
        self.info = init_distributed()
        self.device = pick_device(self.info, self.requested_device)
        self.amp = resolve_amp(self.cfg.train.amp, self.device)

    def _setup_split(self) -> None:
        t = self.cfg.train
        labels = ", ".join(t.label_sources) or self.data_dir / "train_labels.csv"
        self.records, self.folders = read_training_labels(self.data_dir, t.label_sources)
        if t.train_on_all:  # the seed's final members: every tomogram, no validation, no folds.csv
            self.train_ids, self.val_list = list(self.records), []
        else:
            self.train_ids, self.val_list = split_folds(
                self.records, self.cfg, self.out_dir, self.info, self.val_ids
            )
        if t.val_limit > 0:
            self.val_list = self.val_list[: t.val_limit]
        if not self.train_ids:
            raise ValueError(f"{labels}: no training tomograms left after holding out fold {t.fold}")
        if self.info.is_main:
            (self.out_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2) + "\n")

    def _setup_model(self) -> None:
        from byu_motor.models import create_model

        t = self.cfg.train
        self.layout = torch.channels_last_3d if t.channels_last else torch.contiguous_format
        self.core = create_model(self.cfg.model).to(self.device, memory_format=self.layout)
        self.stride = tuple(int(s) for s in self.core.stride)
        self.model = self.core
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DDP(self.core, device_ids=ids)  # broadcasts rank 0's initial weights
        self.ema = None
        if t.ema > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.core, decay=t.ema)
        self.optimizer = build_optimizer(self.core, self.cfg)
        self.scheduler = build_scheduler(self.optimizer, self.cfg)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        self.criterion = HeatmapLoss(t)

    def resume(self) -> None:
        """Continue from ``resume.pt`` when resuming is on and it exists; every process must agree on the step."""
        if self.resume_enabled and self.resume_path.exists():
            state = read_resume(self.resume_path, self.cfg)
            self.core.load_state_dict(state["model"])
            if self.ema is not None and state.get("ema") is not None:
                self.ema.module.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            if same_schedule(state["config"]["train"], self.cfg):
                self.scheduler.load_state_dict(state["scheduler"])
            else:  # steps or lr changed on resume: the fresh schedule (a function of the step) takes over
                log.warning("%s: schedule settings changed; continuing on the new schedule", self.resume_path)
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.step, self._elapsed0 = int(state["step"]), float(state["elapsed_s"])
            self.best = dict(state["best"])
            set_rng_state(state["rng"])
            for hook in self.hooks:
                hook.load_state_dict(state)
        self.step = agree_int(self.step, self.device if self.device.type == "cuda" else "cpu")
        self.scheduler.step_update(self.step)

    def setup_data(self) -> None:
        """Cached training volumes, the patch dataset, the validator (main process) and the trimmed metrics log.

        It follows :meth:`resume` so that a resume file that does not fit this run fails before the volume
        cache is filled.
        """

        t = self.cfg.train
        self.volumes = load_volumes(
            self.data_dir, self.records, self.train_ids, self.cfg, self.info, self.folders
        )
        self.micro_per_step = t.grad_accum * self.info.world_size
        self.n_batches = t.steps * self.micro_per_step
        n = self.n_batches * t.batch_size
        self.dataset = make_dataset(self.volumes, self.cfg, self.stride, n)
        self.validator = None
        if self.info.is_main and self.val_list:
            from byu_motor.train.validate import Validator

            val_records = {tid: self.records[tid] for tid in self.val_list}
            self.validator = Validator(
                self.cfg, self.data_dir / "train", val_records, self.device, folders=self.folders
            )
        if self.info.is_main:
            self.metrics.trim(self.step)

    def restart_batches(self) -> None:
        """(Re)start the loader at the current step: its workers start afresh and copy the dataset as it is now."""
        self._batches = None
        first = self.step * self.micro_per_step
        self._batches = iter(
            make_loader(
                self.dataset,
                self.cfg.train,
                first,
                self.n_batches,
                self.info,
                self.device,
            )
        )

    def run(self) -> None:
        """The loop: steps until ``train.steps`` (or ``stop_at_step``), with hooks, validations and checkpoints."""
        from byu_motor import progress

        t = self.cfg.train
        self._window_sum, self._window_n = torch.zeros((), device=self.device), 0
        show = self.progress and self.info.is_main
        bar = progress.bar(t.steps, f"train fold {t.fold}", unit="step", initial=self.step, disable=not show)
        self.restart_batches()
        self.model.train()
        while self.step < t.steps:
            step_loss = self.train_step()
            lr = float(self.optimizer.param_groups[0]["lr"])
            self._window_sum += step_loss
            self._window_n += 1
            bar.update(1)
            self._log_loss(lr, bar)
            for hook in self.hooks:
                hook.on_step_end(self, {"loss": step_loss, "lr": lr})
            out_of_time = time_is_up(time.perf_counter() - self._session_t0, t.stop_after_s, self.device)
            save = self.step % t.val_every == 0 or self.step in (t.steps, self.stop_at_step, *t.keep_steps)
            if save or out_of_time:
                if show:
                    progress.status(f"validate fold {t.fold} at step {self.step}")
                self.last_result = self.validate_and_checkpoint()
            if self.callback is not None:
                self.callback(self.step, {"loss": float(step_loss), "lr": lr})
            if out_of_time or (self.stop_at_step is not None and self.step >= self.stop_at_step):
                break
        bar.close()
        self._batches = None

    def train_step(self) -> torch.Tensor:
        """One optimiser step (:func:`byu_motor.train.step.optimizer_step`: micro-batches, scaler, EMA).

        Returns:
            this process's mean loss over the micro-batches (a device tensor: reading it syncs).
        """
        from byu_motor.train.step import optimizer_step

        return optimizer_step(self)

    def _log_loss(self, lr: float, bar: Any) -> None:
        """Every ``log_every`` steps: the window's mean loss over all processes, logged by the main one."""
        t = self.cfg.train
        if self.step % t.log_every != 0 and self.step != t.steps:
            return
        # the only device sync of a log window
        self.last_loss = float(all_reduce_mean(self._window_sum / self._window_n))
        self._window_sum.zero_()
        self._window_n = 0
        if not math.isfinite(self.last_loss):
            raise FloatingPointError(
                f"step {self.step}: loss is {self.last_loss}; lower train.lr or check the data"
            )
        if self.info.is_main:
            self.log_event("train", loss=self.last_loss, lr=lr)
            bar.set_postfix(loss=f"{self.last_loss:.4f}", lr=f"{lr:.2e}")

    def validate_and_checkpoint(self) -> dict[str, Any] | None:
        """:meth:`validate` and :meth:`checkpoint` on the main process; every process waits for them.

        Returns:
            the validation result (None on other processes and without a validation set).
        """
        result = None
        if self.info.is_main:
            result = self.validate()
            self.checkpoint()
        barrier()
        for hook in self.hooks:
            hook.on_validation_end(self, result)
        return result

    def validate(self) -> dict[str, Any] | None:
        """Score the eval model on the held-out tomograms (when any), log it, write ``last.pt`` and ``best.pt``.

        Returns:
            the :class:`~byu_motor.train.validate.Validator` result, or None without a validation set.
        """
        result = None
        if self.validator is not None:
            result = self.validator(self.eval_model, self.stride)
            self.log_event(
                "val",
                f2=result["f2"],
                threshold=result["threshold"],
                quantile_f2=result["quantile_f2"],
                quantile_thresholds=result["quantile_thresholds"],
                val_s=round(result["seconds"], 2),
            )
        keep = self.step in self.cfg.train.keep_steps
        self.best = save_inference_checkpoints(
            self.out_dir, self.eval_model, self.cfg, result, self.best, self.step, keep
        )
        return result

    def checkpoint(self) -> None:
        """Write ``resume.pt`` atomically: weights, EMA, optimiser, scaler, scheduler, step, RNG and hook states."""
        state = resume_state(
            step=self.step,
            elapsed_s=self.elapsed(),
            cfg=self.cfg,
            model=self.core,
            ema=self.ema.module if self.ema is not None else None,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            best=self.best,
            hooks=self.hooks,
        )
        atomic_torch_save(state, self.resume_path)

    def finish(self) -> dict[str, Any]:
        """The run's summary (see :func:`byu_motor.train.engine.train`); hooks see it before it is returned."""
        best = self.best
        result = {
            "step": self.step,
            "best_f2": best["f2"] if best["step"] >= 0 else None,
            "best_threshold": best["threshold"],
            "best_step": best["step"],
            "last_f2": self.last_result["f2"] if self.last_result else None,
            "loss": self.last_loss,
            "elapsed_s": self.elapsed(),
            "checkpoints": {"last": str(self.out_dir / "last.pt"), "best": str(self.out_dir / "best.pt")},
        }
        log.info("training done: %s", result)
        for hook in self.hooks:
            hook.on_train_end(self, result)
        return result
