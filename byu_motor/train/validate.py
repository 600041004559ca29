"""Validation during training: whole held-out tomograms through the inference engine's Predictor, then F2."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from byu_motor.config import Config
from byu_motor.data.layout import TomoRecord

log = logging.getLogger(__name__)


class Validator:
    """Score a detector on held-out tomograms exactly as inference would (``Predictor.predict_volume``).

    The original uint8 tomograms are read once and kept in memory when their total size is at most
    ``cfg.train.val_max_bytes`` (re-read at every validation otherwise). Each tomogram is predicted at its
    true labelled spacing, so validation measures the detector, not the spacing assumption.

    Args:
        cfg: the experiment config (``data`` for the model's input, ``infer`` for the sliding window).
        train_dir: folder holding one sub-folder of JPEG slices per tomogram.
        records: labels of the held-out tomograms.
        device: where the model runs.
        folders: ``{tomo_id: slice folder}`` overriding ``train_dir / tomo_id``.
    """

    def __init__(
        self,
        cfg: Config,
        train_dir: str | Path,
        records: Mapping[str, TomoRecord],
        device: torch.device,
        folders: Mapping[str, Path] | None = None,
    ):
        self.cfg = cfg
        self.train_dir = Path(train_dir)
        self.folders = dict(folders or {})  # tomograms of other data roots (byu-motor train --labels)
        self.records = dict(records)
        self.device = device
        total = sum(int(np.prod(r.shape)) for r in self.records.values())
        self._volumes: dict[str, np.ndarray] | None = None
        if total <= cfg.train.val_max_bytes:
            self._volumes = {tid: self._read(tid) for tid in self.records}

    def _read(self, tomo_id: str) -> np.ndarray:
        from byu_motor.infer.runner import compose_reader

        # as the runner reads a test tomogram (wraparound repair)
        read = compose_reader(fix_wraparound=self.cfg.data.fix_wraparound)
        return read(self.folders.get(tomo_id, self.train_dir / tomo_id))

    def candidates(self, module: nn.Module, stride: Sequence[int]) -> dict[str, list[tuple]]:
        """Candidates ``(z, y, x, score)`` (original voxels, best first) of every held-out tomogram.

        ``module`` is copied first: the Predictor switches it to eval mode and may change its memory
        format, which must not leak into the model being trained.
        """
        from byu_motor.infer.predictor import Predictor
        from byu_motor.infer.spec import ModelSpec

        spec = ModelSpec.from_config(copy.deepcopy(module), stride, self.cfg, "validation")
        # Held-out tomograms come with their spacing: the extra assumed spacings of infer.scales exist for
        # test tomograms whose spacing is unknown, and would only cost time here (mining does the same).
        # TTA views are left out too: validation picks the checkpoint and its threshold from single views.
        infer = dataclasses.replace(self.cfg.infer, scales=(1.0,), tta=())
        predictor = Predictor([spec], infer, self.device)
        out: dict[str, list[tuple]] = {}
        for tid, rec in self.records.items():
            vol = self._volumes[tid] if self._volumes is not None else self._read(tid)
            out[tid] = [tuple(float(v) for v in c) for c in predictor.predict_volume(vol, rec.spacing_a, tid)]
        return out

    def __call__(self, module: nn.Module, stride: Sequence[int]) -> dict[str, Any]:
        """Predict and score.

        Returns:
            ``f2`` at the best threshold, ``threshold``, ``quantile_thresholds`` (``{"0.50": thr}``),
            ``quantile_f2`` (``{"0.50": f2}``), ``n_tomograms`` and ``seconds``.
        """
        from byu_motor.postprocess.threshold import best_threshold, quantile_sweep

        t0 = time.perf_counter()
        cands = self.candidates(module, stride)
        thr, f2 = best_threshold(cands, self.records)
        sweep = quantile_sweep(cands, self.records, tuple(self.cfg.train.val_quantiles))
        q_thr = {f"{q:.2f}": float(t) for q, t in zip(sweep["q"], sweep["threshold"])}
        q_f2 = {f"{q:.2f}": float(f) for q, f in zip(sweep["q"], sweep["f2"])}
        if not np.isfinite(thr):  # abstaining everywhere was best: keep a threshold no score reaches
            thr = 1.0 + 1e-6
        return {
            "f2": float(f2),
            "threshold": float(thr),
            "quantile_thresholds": q_thr,
            "quantile_f2": q_f2,
            "n_tomograms": len(self.records),
            "seconds": time.perf_counter() - t0,
        }
