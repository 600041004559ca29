"""Intensity normalisation shared by training and inference, applied per patch (never to a whole float copy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NORM_MODES = ("fixed", "tomogram")


@dataclass(frozen=True)
class Normalizer:
    """Map uint8 voxels to model inputs: ``(x / 255 - mean) / std``.

    With ``mode="fixed"`` mean and std are the configured constants (in [0, 1] units); with
    ``mode="tomogram"`` they come from :meth:`fit` on each tomogram (per-tomogram z-score).
    """

    mode: str = "fixed"
    mean: float = 0.46
    std: float = 0.21

    def __post_init__(self) -> None:
        if self.mode not in NORM_MODES:
            raise ValueError(f"unknown normalisation {self.mode!r}; choose from {NORM_MODES}")
        if not self.std > 0:
            raise ValueError(f"normalisation std must be positive, got {self.std}")

    @classmethod
    def from_data_config(cls, data_cfg) -> Normalizer:
        """Build from a :class:`byu_motor.config.DataConfig`."""
        return cls(data_cfg.norm, data_cfg.norm_mean, data_cfg.norm_std)

    def fit(self, volume: np.ndarray, max_samples: int = 2_000_000, seed: int = 0) -> Normalizer:
        """Return the normaliser for ``volume`` (uint8 ``(Z, Y, X)``): itself for ``fixed``, fitted stats otherwise.

        Statistics come from a strided subsample, so no float copy of the volume is made.
        """
        if self.mode == "fixed":
            return self
        step = max(1, int(round((volume.size / max_samples) ** (1 / 3))))
        sample = volume[::step, ::step, ::step].astype(np.float32) / 255.0
        std = float(sample.std())
        return Normalizer("tomogram", float(sample.mean()), std if std > 1e-6 else 1.0)

    def __call__(self, patch: torch.Tensor) -> torch.Tensor:
        """Normalise a uint8 (or float in 0..255) tensor of any shape; returns float32."""
        return (patch.float() * (1.0 / 255.0) - self.mean) * (1.0 / self.std)
