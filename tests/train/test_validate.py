"""Validation predicts held-out tomograms at their labelled spacing, as inference would at a known one."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.data.io import read_tomogram, write_tomogram
from byu_motor.data.layout import TomoRecord
from byu_motor.infer.predictor import Predictor
from byu_motor.infer.spec import ModelSpec
from byu_motor.presets import get_preset
from byu_motor.train.validate import Validator

SHAPE = (24, 48, 48)
MOTOR = (12.0, 20.0, 26.0)


class DarkDetector(nn.Module):
    """Logits = darkness averaged over each output cell."""

    stride = (4, 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -8.0 * F.avg_pool3d(x, 4) - 2.0


def test_validation_ignores_extra_assumed_spacings(tmp_path):
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in SHAPE], indexing="ij")
    vol = np.full(SHAPE, 150, dtype=np.uint8)
    vol[(zz - MOTOR[0]) ** 2 + (yy - MOTOR[1]) ** 2 + (xx - MOTOR[2]) ** 2 <= 6] = 30
    write_tomogram(vol, tmp_path / "tomo_v", quality=100)
    cfg = get_preset("tiny").override(["data.patch_size=16,32,32", "infer.patch_size=16,32,32"])
    cfg.infer.steps, cfg.infer.scale_merge = (), "mean"
    records = {"tomo_v": TomoRecord("tomo_v", SHAPE, 64.0, np.array([MOTOR]))}

    def validate(scales):
        cfg.infer = dataclasses.replace(cfg.infer, scales=scales)
        return Validator(cfg, tmp_path, records, torch.device("cpu")).candidates(DarkDetector(), (4, 4, 4))

    one, two = validate((1.0,)), validate((1.0, 0.5))
    assert one == two and np.linalg.norm(np.subtract(one["tomo_v"][0][:3], MOTOR)) < 2.0
    # the same settings in a Predictor do change the candidates (so the check above can fail)
    spec = ModelSpec.from_config(DarkDetector(), (4, 4, 4), cfg, "check")
    direct = Predictor([spec], cfg.infer, "cpu").predict_volume(
        read_tomogram(tmp_path / "tomo_v"), 64.0, "tomo_v"
    )
    assert [tuple(float(v) for v in c) for c in direct] != two["tomo_v"]
