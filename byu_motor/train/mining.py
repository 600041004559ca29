"""Hard-negative mining: the model's own most confident false positives on its training tomograms.

During training (``TrainConfig.hard_negative_ratio > 0``) the :class:`HardNegativeMining` hook periodically runs the current (EMA)
model over every cached training volume with the inference engine's Predictor, keeps the top candidates that
lie farther than ``hard_negative_exclude_a`` from every labelled motor, and hands them to the
:class:`~byu_motor.data.dataset.PatchDataset`, which then centres that fraction of its negative crops on
them. The model sees again exactly the objects it confuses with motors (dense granules, ring-like
complexes, edges), instead of the easy background that fills most random crops.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from byu_motor.config import Config, TrainConfig
from byu_motor.data.cache import CachedVolume
from byu_motor.data.salient import far_from
from byu_motor.train.hooks import Hook

if TYPE_CHECKING:
    from byu_motor.train.trainer import Trainer


def mine_hard_negatives(
    module: nn.Module,
    stride: Sequence[int],
    volumes: Sequence[CachedVolume],
    cfg: Config,
    device: torch.device | str = "cpu",
) -> list[np.ndarray]:
    """Confident false positives of ``module`` on each training volume.

    Args:
        module: the detector (copied first: the Predictor switches it to eval mode).
        stride: its output stride ``(sz, sy, sx)``.
        volumes: cached training volumes (their own grids, motors in their voxels).
        cfg: experiment config: ``data`` for the model's input, ``infer`` for the sliding window;
            ``train.hard_negative_topk`` candidates per volume, ``train.hard_negative_min_score`` and
            ``train.hard_negative_exclude_a``.
        device: where the model runs.

    Returns:
        One float64 ``(k, 3)`` array per volume (``k <= hard_negative_topk``, possibly 0): candidate centres
        in that volume's voxels, best first, each farther than ``hard_negative_exclude_a`` from all motors.
    """
    t = cfg.train
    return off_motor_candidates(
        module,
        stride,
        volumes,
        cfg,
        device,
        t.hard_negative_topk,
        t.hard_negative_min_score,
        t.hard_negative_exclude_a,
    )


def off_motor_candidates(
    module: nn.Module,
    stride: Sequence[int],
    volumes: Sequence[CachedVolume],
    cfg: Config,
    device: torch.device | str,
    topk: int,
    min_score: float,
    exclude_a: float,
) -> list[np.ndarray]:
    """The detector's top ``topk`` candidates (score >= ``min_score``) farther than ``exclude_a`` from every motor.

    Returns:
        One float64 ``(k, 3)`` array of centres (the volume's voxels, best first) per volume.
    """
    from byu_motor.infer.predictor import Predictor
    from byu_motor.infer.spec import ModelSpec

    spec = ModelSpec.from_data_config(copy.deepcopy(module), stride, cfg.data, "mining")
    # the detector's own confusions, before the envelope-context gate damps them: they are what it must learn
    infer = dataclasses.replace(cfg.infer, topk=int(topk), tta=(), scales=(1.0,), steps=())
    predictor = Predictor([spec], infer, device)
    out: list[np.ndarray] = []
    for v in volumes:
        spacing = v.grid.spacing_a
        cands = predictor.predict_volume(np.asarray(v.volume), spacing, v.tomo_id)
        pts = np.array([c[:3] for c in cands if c[3] >= min_score], dtype=np.float64)
        out.append(far_from(pts, v.motors, spacing, exclude_a))
    return out


class HardNegativeMining(Hook):
    """Mine every ``hard_negative_every`` steps (0: every ``val_every``) and feed the points to the dataset.

    Mining runs on every process with the eval model (EMA when on) after the optimiser step and before that
    step's validation, never after the last step; the loader then restarts so its workers see the new points.
    The points are kept in ``resume.pt`` (``hard_negatives``), so a resumed run samples as if uninterrupted.
    Idle when ``hard_negative_ratio`` is 0.

    Args:
        train_cfg: the run's ``train`` config.
    """

    def __init__(self, train_cfg: TrainConfig):
        self.enabled = train_cfg.hard_negative_ratio > 0
        self.every = train_cfg.hard_negative_every or train_cfg.val_every
        self.last_step = train_cfg.steps
        self.points: list[np.ndarray] | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        """Hand the points restored from ``resume.pt`` to the dataset before its first batch."""
        if self.points is not None:
            trainer.dataset.set_hard_negatives(self.points)

    def on_step_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        """Mine when the step is due, feed the dataset, restart the loader and log a ``mine`` event."""
        step = trainer.step
        if not (self.enabled and step % self.every == 0 and step < self.last_step):
            return
        t0 = time.perf_counter()
        self.points = mine_hard_negatives(
            trainer.eval_model, trainer.stride, trainer.volumes, trainer.cfg, trainer.device
        )
        trainer.dataset.set_hard_negatives(self.points)
        trainer.restart_batches()
        if trainer.info.is_main:
            trainer.log_event(
                "mine",
                n_points=int(sum(len(x) for x in self.points)),
                mine_s=round(time.perf_counter() - t0, 2),
            )

    def state_dict(self) -> dict[str, Any]:
        """``{"hard_negatives": one (k, 3) float64 tensor per training volume, or None before any mining}``."""
        if self.points is None:
            return {"hard_negatives": None}
        return {"hard_negatives": [torch.from_numpy(np.ascontiguousarray(x)) for x in self.points]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take the points mined before the kill (ignored when mining is off in this run)."""
        saved = state.get("hard_negatives")
        if self.enabled and saved is not None:
            self.points = [x.numpy().astype(np.float64) for x in saved]
