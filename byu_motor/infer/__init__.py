"""Inference: model specs, sliding windows, TTA, ensembles and the Predictor."""

from __future__ import annotations

from typing import Any

__all__ = ["ModelSpec", "Predictor"]


def __getattr__(name: str) -> Any:
    # Lazy: ``byu_motor.infer.runner`` workers and the CLI import submodules without paying for the
    # model zoo (timm, MONAI) until a Predictor is really built.
    if name == "Predictor":
        from byu_motor.infer.predictor import Predictor

        return Predictor
    if name == "ModelSpec":
        from byu_motor.infer.spec import ModelSpec

        return ModelSpec
    raise AttributeError(f"module 'byu_motor.infer' has no attribute {name!r}")
