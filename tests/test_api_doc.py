"""docs/API.md's example of adding a candidate step runs as written and plugs into the Predictor."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import torch

from byu_motor.config import InferConfig
from byu_motor.infer.predictor import Predictor
from byu_motor.infer.spec import ModelSpec
from byu_motor.postprocess import steps

API = Path(__file__).resolve().parents[1] / "docs" / "API.md"


class Peaks(torch.nn.Module):
    """Logits with two peaks of different height at stride 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(x, -8.0)
        out[..., 4, 4, 4] = 2.0  # sigmoid .88
        out[..., 12, 12, 12] = -1.0  # sigmoid .27
        return out


def test_the_documented_candidate_step_example_runs(monkeypatch, tmp_path):
    section = API.read_text().split("## Candidate steps", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 14  # a short example, imports included
    steps.list_steps()  # the built-in steps into the real registry first, or they would register in the copy
    monkeypatch.setattr(steps, "_REGISTRY", dict(steps._REGISTRY))  # the example's step stays in this test
    (tmp_path / "my_steps.py").write_text(code)  # a user's module, imported as a user would
    spec = importlib.util.spec_from_file_location("my_steps", tmp_path / "my_steps.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "my_steps", module)
    spec.loader.exec_module(module)
    assert "min_score" in steps.list_steps()

    model = ModelSpec(Peaks(), stride=1, spacing_a=10.0)
    vol = np.zeros((16, 16, 16), np.uint8)
    plain = Predictor([model], InferConfig(patch_size=(16, 16, 16), nms_kernel_a=30.0, refine_peaks=False))
    assert [round(c[3], 2) for c in plain.predict_volume(vol, 10.0)][:2] == [0.88, 0.27]
    cfg = InferConfig(patch_size=(16, 16, 16), nms_kernel_a=30.0, refine_peaks=False)
    cfg.steps = ({"name": "min_score", "floor": 0.5},)
    kept = Predictor([model], cfg).predict_volume(vol, 10.0)
    assert [tuple(round(v) for v in c[:3]) for c in kept] == [(4, 4, 4)]
