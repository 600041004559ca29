"""Hard-negative mining: the model's own most confident false positives on its training tomograms.

During training (``TrainConfig.hard_negative_ratio > 0``) the engine periodically runs the current (EMA)
model over every cached training volume with the inference engine's Predictor, keeps the top candidates that
lie farther than ``hard_negative_exclude_a`` from every labelled motor, and hands them to the
:class:`~byu_motor.data.dataset.PatchDataset`, which then centres that fraction of its negative crops on
them. The model sees again exactly the objects it confuses with motors (dense granules, ring-like
complexes, edges), instead of the easy background that fills most random crops.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from byu_motor.config import Config
from byu_motor.data.cache import CachedVolume
from byu_motor.data.salient import far_from


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
