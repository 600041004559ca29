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
    from byu_motor.data.normalize import Normalizer
    from byu_motor.infer.predictor import Predictor
    from byu_motor.infer.spec import ModelSpec

    t = cfg.train
    data = cfg.data
    spec = ModelSpec(
        module=copy.deepcopy(module),
        stride=tuple(int(s) for s in stride),  # type: ignore[arg-type]
        spacing_a=tuple(data.spacing_a),  # type: ignore[arg-type]
        normalizer=Normalizer.from_data_config(data),
        patch_size=tuple(data.patch_size),  # type: ignore[arg-type]
        interp=data.interp,
        denoise=data.denoise,
        name="mining",
    )
    infer = dataclasses.replace(cfg.infer, topk=int(t.hard_negative_topk), tta=(), scales=(1.0,))
    predictor = Predictor([spec], infer, device)
    out: list[np.ndarray] = []
    for v in volumes:
        spacing = np.asarray(v.grid.spacing_a, dtype=np.float64)
        cands = predictor.predict_volume(np.asarray(v.volume), tuple(spacing), v.tomo_id)
        pts = np.array([c[:3] for c in cands if c[3] >= t.hard_negative_min_score], dtype=np.float64)
        pts = pts.reshape(-1, 3)
        if len(pts) and len(v.motors):
            d = np.linalg.norm((pts[:, None, :] - v.motors[None, :, :]) * spacing, axis=2).min(axis=1)
            pts = pts[d > t.hard_negative_exclude_a]
        out.append(pts)
    return out
