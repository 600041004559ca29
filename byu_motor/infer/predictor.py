"""Predictor: models x scales x TTA views over one tomogram -> heatmap -> candidates in original voxels."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from byu_motor.config import InferConfig
from byu_motor.data.grid import CASTS, Grid
from byu_motor.infer.accel import maybe_compile
from byu_motor.infer.device_volume import VolumeStager
from byu_motor.infer.merges import ENSEMBLE_MERGES, SCALE_MERGES, mean_on_finest, weighted_mean
from byu_motor.infer.sliding import SlidingWindow
from byu_motor.infer.spec import ModelSpec
from byu_motor.infer.stage_timer import stage
from byu_motor.infer.tiling import FinerWindow, check_tiling, decode_stride, window_settings
from byu_motor.infer.tta import view_groups
from byu_motor.postprocess.peaks import Candidate, decode_peaks, drop_border
from byu_motor.postprocess.seed_peaks import PEAK_DECODERS, seed_decode_peaks
from byu_motor.postprocess.steps import build_steps, run_steps

log = logging.getLogger(__name__)


class Predictor:
    """Run one or more detectors (an ensemble) over whole tomograms.

    Args:
        models: the ensemble; each may have its own stride, spacing and normalisation.
        config: inference settings (patch, overlap, TTA views, scales, merge, ensemble, NMS, top-k).
        device: where models run (default: CUDA when available, else CPU).

    Example:
        >>> pred = Predictor([ModelSpec.from_checkpoint("best.pt")], InferConfig())
        >>> pred.predict_volume(volume_uint8, spacing_a=13.1)   # [(z, y, x, prob), ...]
    """

    def __init__(
        self, models: Sequence[ModelSpec], config: InferConfig, device: str | torch.device | None = None
    ):
        if not models:
            raise ValueError("Predictor needs at least one model")
        if config.ensemble not in ENSEMBLE_MERGES:
            raise ValueError(
                f"unknown ensemble mode {config.ensemble!r}; choose from {sorted(ENSEMBLE_MERGES)}"
            )
        if not config.scales or min(config.scales) <= 0:
            raise ValueError(f"scales must be positive, got {config.scales!r}")
        if config.scale_merge not in SCALE_MERGES:
            raise ValueError(
                f"unknown scale_merge {config.scale_merge!r}; choose from {sorted(SCALE_MERGES)}"
            )
        if config.peak_decoder not in PEAK_DECODERS:
            raise ValueError(
                f"unknown infer.peak_decoder {config.peak_decoder!r}; choose from {PEAK_DECODERS}"
            )
        if config.resample_cast not in CASTS:
            raise ValueError(f"unknown infer.resample_cast {config.resample_cast!r}; choose from {CASTS}")
        for spec in models:  # each member decodes at its own stride / decode_upsample
            check_tiling(config.tiling, member_upsample(spec, config), [spec.stride3])
        # checked here, not per tomogram: the runner turns a tomogram's error into a -1 row and goes on
        self.steps = build_steps(config.steps)
        self.models = list(models)
        self.config = config
        self.device = (
            torch.device(device)
            if device is not None
            else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        self._stager = VolumeStager(self.device, config.resample_on_device, cast=config.resample_cast)
        self._modules = []
        for spec in self.models:
            module = spec.module.to(self.device).eval()
            if config.channels_last:
                module = module.to(memory_format=torch.channels_last_3d)
            if config.compile:
                module = maybe_compile(module, self.device)  # eager on cards Triton does not support
            self._modules.append(module)
        # per member, one sliding window per candidate list (one per view with config.views_apart)
        self._inferers = [
            [
                self._make_inferer(spec, group, config.tta_identity and not config.views_apart)
                for group in view_groups(self._member_views(spec), config.views_apart, config.tta_identity)
            ]
            for spec in self.models
        ]

    def _member_views(self, spec: ModelSpec) -> tuple[str, ...]:
        cfg = self.config
        return cfg.tta if spec.views is None else tuple(v for v in spec.views if v in cfg.tta)

    def _make_inferer(self, spec: ModelSpec, views: tuple[str, ...], add_identity: bool) -> SlidingWindow:
        cfg = self.config
        patch = cfg.patch_size if cfg.patch_size is not None else spec.patch_size
        kwargs = dict(
            patch_size=patch,
            batch_windows=cfg.batch_windows,
            merge=cfg.merge,
            views=views,
            add_identity=add_identity,
            device=self.device,
            amp=cfg.amp,
            channels_last=cfg.channels_last,
            batch_views=cfg.batch_views and self.device.type == "cuda",  # a CPU gains nothing from it
            **window_settings(cfg.tiling, cfg.overlap, cfg.border_weight),
        )
        factor = member_upsample(spec, cfg)
        if factor > 1:
            return FinerWindow(factor=factor, **kwargs)
        return SlidingWindow(**kwargs)

    def model_logits(
        self, volume: np.ndarray, spacing_a: float | Sequence[float], tomo_id: str | None = None
    ) -> list[tuple[torch.Tensor, Grid]]:
        """Per-list logits (one per model, or per model x view with ``config.views_apart``), each averaged
        over ``config.scales`` (and the TTA views not kept apart) on that model's grid.

        See :meth:`scale_logits` for the resampling and the frame of the grids.

        Returns:
            One ``(logits [D, H, W] float32 on the device, heatmap Grid)`` per list (:attr:`weights` in order).
        """
        return [mean_on_finest(parts) for parts in self.scale_logits(volume, spacing_a, tomo_id)]

    def scale_logits(
        self, volume: np.ndarray, spacing_a: float | Sequence[float], tomo_id: str | None = None
    ) -> list[list[tuple[torch.Tensor, Grid]]]:
        """Per model (per model x view with ``config.views_apart``), the logits at each assumed spacing of
        ``config.scales`` (the TTA views averaged per window unless kept apart).

        For each scale the uint8 volume is resampled (chunked, never as float32; on the model's device with
        ``config.resample_on_device``, :mod:`byu_motor.infer.device_volume`) from the assumed spacing
        ``spacing_a * scale`` to the model's spacing; the heatmap grids are expressed in the TRUE frame of the
        input volume (``Grid(volume.shape, spacing_a)``), so they map straight back to original voxels.

        Args:
            volume: uint8 ``(Z, Y, X)``.
            spacing_a: assumed voxel spacing of ``volume`` in Angstrom.
            tomo_id: name used in error messages.

        Returns:
            ``out[list][scale] = (logits [D, H, W] float32 on the device, heatmap Grid)``, lists in the order
            of :attr:`weights` (members, each member's views in the order of ``tta.view_groups``).
        """
        where = f"tomogram {tomo_id}" if tomo_id else "volume"
        if not isinstance(volume, np.ndarray) or volume.ndim != 3 or volume.dtype != np.uint8:
            raise ValueError(
                f"{where}: expected a uint8 (Z, Y, X) array, got {getattr(volume, 'dtype', type(volume))} "
                f"{getattr(volume, 'shape', '')}"
            )
        original = Grid(volume.shape, spacing_a)
        out = []
        for spec, module, inferers in zip(self.models, self._modules, self._inferers):
            lists: list[list[tuple[torch.Tensor, Grid]]] = [[] for _ in inferers]
            for scale in self.config.scales:
                assumed = Grid(volume.shape, tuple(s * scale for s in original.spacing_a))
                res_shape = assumed.resampled(spec.spacing3).shape
                vol = self._stager.resampled(volume, res_shape, spec.interp, spec.denoise)
                stride = decode_stride(spec.stride3, member_upsample(spec, self.config))
                grid = original.with_shape(res_shape).strided(stride)
                for parts, inferer in zip(lists, inferers):
                    parts.append((inferer(module, vol, stride, spec.normalizer), grid))
                del vol
            out.extend(lists)
        self._stager.release()
        return out

    def predict_heatmap(
        self, volume: np.ndarray, spacing_a: float | Sequence[float], tomo_id: str | None = None
    ) -> tuple[np.ndarray, Grid]:
        """Probability heatmap of the ensemble (logits averaged, then sigmoid).

        Returns:
            ``(probabilities float32 [D, H, W], heatmap Grid)``; map cells to original voxels with
            ``grid.map_to(Grid(volume.shape, spacing_a), cells)``.
        """
        logits, grid = weighted_mean(self.model_logits(volume, spacing_a, tomo_id), self.weights)
        return torch.sigmoid(logits).cpu().numpy().astype(np.float32, copy=False), grid

    def predict_volume(
        self, volume: np.ndarray, spacing_a: float | Sequence[float], tomo_id: str | None = None
    ) -> list[Candidate]:
        """Motor candidates ``(z, y, x, probability)`` in ORIGINAL voxels of ``volume``, best first.

        No threshold is applied (the runner does that). At most ``config.topk`` candidates; none (and a
        warning naming the tomogram) when the logits are not finite. The recipe's candidate steps
        (``config.steps``, :mod:`byu_motor.postprocess.steps`) run last.

        With several ``config.scales`` the candidates come from the logits averaged over the scales
        (``scale_merge="mean"``), or (``"lift"``) from the first scale's logits, each score raised to the
        averaged prediction's where that is higher within ``nms_kernel_a`` and the averaged prediction's
        other points added (:func:`byu_motor.postprocess.fusion.lift_points`): a second assumed spacing
        can then find what looks too small or too big at the first, without lowering any first-scale score.

        Args:
            volume: uint8 ``(Z, Y, X)``.
            spacing_a: assumed voxel spacing of ``volume`` (Angstrom, scalar or per axis).
            tomo_id: name used in warnings and errors.
        """
        return self.candidates_from_logits(
            self.scale_logits(volume, spacing_a, tomo_id), volume, spacing_a, tomo_id
        )

    def candidates_from_logits(
        self,
        parts: list[list[tuple[torch.Tensor, Grid]]],
        volume: np.ndarray,
        spacing_a: float | Sequence[float],
        tomo_id: str | None = None,
    ) -> list[Candidate]:
        """:meth:`predict_volume` after the forward passes: ``parts`` is :meth:`scale_logits`' output.

        Merges the scales and the checkpoints (:mod:`byu_motor.infer.merges`), decoding peaks on the way,
        then runs the recipe's candidate steps (:mod:`byu_motor.postprocess.steps`).
        """
        if not all(self._finite(lg, tomo_id) for p in parts for lg, _ in p):
            return []
        cfg = self.config
        original = Grid(volume.shape, spacing_a)

        floors = self.floors

        def decode(logits: torch.Tensor, grid: Grid, index: int | None = None) -> list[Candidate]:
            with stage("peaks"):
                return _decode(logits, grid, cfg.peak_floor if index is None else floors[index])

        def _decode(logits: torch.Tensor, grid: Grid, floor: float) -> list[Candidate]:
            if cfg.peak_decoder == "seed":
                k = cfg.peak_max if cfg.border_margin == 0 else 4 * cfg.peak_max
                probs = torch.sigmoid(logits).cpu()
                cands = seed_decode_peaks(probs, grid, original, cfg.peak_radius_a, floor, k, cfg.peak_blur_a)
                return drop_border(cands, volume.shape, cfg.border_margin)[: cfg.peak_max]
            # with a border margin, more peaks are decoded so that topk are left after dropping border ones
            k = cfg.topk if cfg.border_margin == 0 else 4 * cfg.topk
            cands = decode_peaks(
                torch.sigmoid(logits).cpu(), grid, original, cfg.nms_kernel_a, k, cfg.refine_peaks
            )
            return drop_border(cands, volume.shape, cfg.border_margin)[: cfg.topk]

        def merge_models(per_model: Sequence[tuple[torch.Tensor, Grid]]) -> list[Candidate]:
            return ENSEMBLE_MERGES[cfg.ensemble](per_model, self.weights, decode, cfg, spacing_a)

        cands = SCALE_MERGES[cfg.scale_merge](parts, merge_models, cfg, spacing_a)
        return run_steps(self.steps, cands, volume, original)

    @property
    def weights(self) -> list[float]:
        """One weight per candidate list, in order: the member's (repeated per view with ``views_apart``)."""
        return [spec.weight for spec, infs in zip(self.models, self._inferers) for _ in infs]

    @property
    def floors(self) -> list[float]:
        """One seed-decoder peak floor per candidate list, in the order of :attr:`weights`: the member's own
        (``ModelSpec.peak_floor``) or the config's ``peak_floor``."""
        own = [self.config.peak_floor if spec.peak_floor is None else spec.peak_floor for spec in self.models]
        return [floor for floor, infs in zip(own, self._inferers) for _ in infs]

    @staticmethod
    def _finite(logits: torch.Tensor, tomo_id: str | None) -> bool:
        """Whether every logit is finite; else a warning naming the tomogram."""
        if bool(torch.isfinite(logits).all()):
            return True
        n_bad = int((~torch.isfinite(logits)).sum())
        warnings.warn(
            f"tomogram {tomo_id or '<unnamed>'}: {n_bad} non-finite logits; reporting no candidates",
            RuntimeWarning,
            stacklevel=3,
        )
        return False


def member_upsample(spec: ModelSpec, config: InferConfig) -> int:
    """A member's ``decode_upsample``: its own (``ModelSpec.decode_upsample``, from the ensemble recipe) or
    else the inference config's."""
    return config.decode_upsample if spec.decode_upsample is None else spec.decode_upsample
