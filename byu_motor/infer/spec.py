"""ModelSpec: any detector module plus the stride, spacing, normalisation and patch it expects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from byu_motor.data.grid import as_triple
from byu_motor.data.normalize import Normalizer


@dataclass
class ModelSpec:
    """A detector and what it expects from its input.

    Args:
        module: any ``nn.Module`` mapping ``[B, 1, D, H, W]`` to logits ``[B, 1, D/s, H/s, W/s]`` (ceil).
        stride: output stride, scalar or ``(sz, sy, sx)``.
        spacing_a: voxel spacing (Angstrom) the model was trained at, scalar or per axis.
        normalizer: intensity normalisation of its inputs.
        patch_size: window ``(D, H, W)`` in model-grid voxels (``None``: the config's or the whole volume).
        weight: weight in an ensemble.
        name: label for logs.
        interp: resampling mode to the model's spacing (``"trilinear"``, ``"area"``, ``"nearest"``).
        denoise: optional filter before resampling (see :func:`byu_motor.data.grid.resample_volume`).
        threshold: the checkpoint's tuned probability threshold, if any (used by the runner).
        views: this member's TTA views (``None``: the inference config's ``tta``); views that the config's
            ``tta`` does not list (e.g. shed by the time budget) are skipped.
        decode_upsample: this member's logit upsampling before accumulation (decoded at ``stride /
            decode_upsample``; ``None``: the inference config's ``decode_upsample``).
        peak_floor: this member's lowest peak probability for the seed's decoder when its lists are decoded
            apart (``"fusion"``, ``"wbf"``; the seed's 0.02 for 3D, 0.01 for 2D); ``None``: the config's.
    """

    module: nn.Module
    stride: int | tuple[int, int, int]
    spacing_a: float | tuple[float, float, float]
    normalizer: Normalizer = field(default_factory=Normalizer)
    patch_size: tuple[int, int, int] | None = None
    weight: float = 1.0
    name: str = ""
    interp: str = "trilinear"
    denoise: str | None = None
    threshold: float | None = None
    views: tuple[str, ...] | None = None
    decode_upsample: int | None = None
    peak_floor: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stride, int):
            self.stride = (self.stride,) * 3
        self.stride = tuple(int(s) for s in self.stride)  # type: ignore[assignment]
        if len(self.stride) != 3 or min(self.stride) < 1:
            raise ValueError(f"model {self.name!r}: stride must be 3 positive integers, got {self.stride!r}")
        self.spacing_a = as_triple(self.spacing_a, "spacing_a")
        if min(self.spacing_a) <= 0:
            raise ValueError(f"model {self.name!r}: spacing must be positive, got {self.spacing_a!r}")
        if self.patch_size is not None:
            self.patch_size = tuple(int(p) for p in self.patch_size)  # type: ignore[assignment]
        if not self.weight > 0:
            raise ValueError(f"model {self.name!r}: weight must be positive, got {self.weight}")

    @property
    def stride3(self) -> tuple[int, int, int]:
        """Stride as a 3-tuple."""
        return self.stride  # type: ignore[return-value]

    @property
    def spacing3(self) -> tuple[float, float, float]:
        """Spacing as a 3-tuple (Angstrom)."""
        return self.spacing_a  # type: ignore[return-value]

    @classmethod
    def from_data_config(
        cls, module: nn.Module, stride: int | Sequence[int], data: Any, name: str = "", **kwargs: Any
    ) -> ModelSpec:
        """A spec whose spacing, normalisation, patch and resampling come from a ``DataConfig``.

        Args:
            module: the detector.
            stride: its output stride, scalar or ``(sz, sy, sx)``.
            data: :class:`byu_motor.config.DataConfig` the module was (or is being) trained with.
            name: label for logs.
            **kwargs: other :class:`ModelSpec` fields (``weight``, ``threshold``).
        """
        return cls(
            module=module,
            stride=stride if isinstance(stride, int) else tuple(int(s) for s in stride),  # type: ignore[arg-type]
            spacing_a=tuple(data.spacing_a),  # type: ignore[arg-type]
            normalizer=Normalizer.from_data_config(data),
            patch_size=tuple(data.patch_size),  # type: ignore[arg-type]
            name=name,
            interp=data.interp,
            denoise=data.denoise,
            **kwargs,
        )

    @classmethod
    def from_config(
        cls, module: nn.Module, stride: int | Sequence[int], cfg: Any, name: str = "", **kwargs: Any
    ) -> ModelSpec:
        """:meth:`from_data_config` with ``cfg.data`` (``cfg``: the :class:`byu_motor.config.Config` the
        module was, or is being, trained with); ``kwargs``: other fields (``weight``, ``threshold``)."""
        return cls.from_data_config(module, stride, cfg.data, name, **kwargs)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", weight: float = 1.0
    ) -> ModelSpec:
        """Build from a checkpoint written by :func:`byu_motor.models.checkpoint.save_checkpoint`.

        Stride comes from ``model.stride``, spacing, normalisation, patch and resampling from the stored
        ``config.data``, the tuned threshold from ``extra["threshold"]`` when present.
        """
        from byu_motor.models.checkpoint import load_checkpoint

        loaded = load_checkpoint(path, map_location=device)
        model = loaded.model.to(device).eval()
        stride: Sequence[int] = getattr(model, "stride", None) or loaded.config.model.stride
        thr = (loaded.extra or {}).get("threshold")
        return cls.from_config(
            model,
            stride,
            loaded.config,
            Path(path).stem,
            weight=weight,
            threshold=None if thr is None else float(thr),
        )
