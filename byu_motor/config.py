"""Dataclass configs: one experiment = model + data + train + infer sections, JSON round trip, `--set` overrides.

Presets (named experiments) live in :mod:`byu_motor.presets`. A checkpoint stores ``Config.to_dict()``
and rebuilds everything from it with :meth:`Config.from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# the reading machinery lives in config_io; its public names stay importable from here
from byu_motor.config_io import (  # noqa: F401 (re-exported)
    _from_dict,
    apply_override,
    dataclass_from_mapping,
    migrate_config_dict,
)

Triple = tuple[int, int, int]


@dataclass
class ModelConfig:
    """What network to build.

    Args:
        encoder: registered encoder name (``byu-motor models`` lists them), e.g. ``"resnext50"``.
        neck: registered neck name (``"unet"``, ``"fpn"``, ``"fpn_factorized"``).
        head: registered head name (``"heatmap"``).
        stride: output stride per axis (z, y, x) of the logits relative to the input patch.
        in_channels: input channels (1 for a tomogram).
        neck_channels: channels of the neck's feature maps.
        deep_supervision: also return coarser logits for training.
        grad_checkpointing: trade compute for memory in the encoder.
        pretrained_file: local file with 2D/3D weights to initialise the encoder (never downloaded).
        encoder_kwargs: extra keyword arguments for the encoder factory (e.g. ``stem_stride=(1, 2, 2)``).
        norm: normalisation in the neck and head: ``"batch"``, ``"group"`` or ``"instance"``.
        act: activation in the neck and head: ``"relu"`` or ``"silu"``.
        pad_mode: how the detector pads inputs up to a multiple of the encoder's deepest stride:
            ``"constant"`` (zeros) or ``"replicate"``.
        neck_kwargs: extra keyword arguments for the neck factory (e.g. ``{"merge": true}`` for ``fpn``).
        head_kwargs: extra keyword arguments for the head factory (e.g. ``{"prior": 0.01}``).
    """

    encoder: str = "resnet18"
    neck: str = "fpn"
    head: str = "heatmap"
    stride: Triple = (16, 16, 16)
    in_channels: int = 1
    neck_channels: int = 64
    deep_supervision: bool = False
    grad_checkpointing: bool = False
    pretrained_file: str | None = None
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    norm: str = "batch"
    act: str = "relu"
    pad_mode: str = "constant"
    neck_kwargs: dict[str, Any] = field(default_factory=dict)
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    dims: int = 3  # 2: a timm image encoder on slice windows, logits in a 3D grid (models.detector2d)
    stride_2d: int = 16  # dims=2: stride of the 2D logit map (upsampled bilinearly to stride[1:])
    # dims=2, 3D call: "seed" non-overlapping slice triplets as the seed; "every": one per slice (3x compute)
    slice_windows: str = "seed"


@dataclass
class DataConfig:
    """Preprocessing shared by training and inference (stored in every checkpoint).

    Args:
        spacing_a: target voxel spacing in Angstrom per axis (z, y, x); volumes are resampled to it.
        patch_size: model input patch (D, H, W) in target-grid voxels.
        norm: ``"fixed"`` ((x / 255 - mean) / std) or ``"tomogram"`` (per-tomogram z-score).
        norm_mean: mean for ``"fixed"`` normalisation, in [0, 1] units.
        norm_std: std for ``"fixed"`` normalisation, in [0, 1] units.
        interp: resampling mode, ``"trilinear"``, ``"area"`` or ``"nearest"``.
        denoise: optional filter before downsampling: ``None``, ``"median"`` or ``"gaussian"``.
        fix_wraparound: repair wrongly quantised (+127 wraparound) tomograms when detected.
        cache_dir: where resampled training volumes are cached (``None``: ``<data>/.byu_cache``).
    """

    spacing_a: tuple[float, float, float] = (16.0, 16.0, 16.0)
    patch_size: Triple = (224, 448, 448)
    norm: str = "fixed"
    norm_mean: float = 0.46
    norm_std: float = 0.21
    interp: str = "trilinear"
    denoise: str | None = None
    fix_wraparound: bool = True
    cache_dir: str | None = None


@dataclass
class TrainConfig:
    """Optimisation and sampling settings for :mod:`byu_motor.train` (see its docs for each field)."""

    steps: int = 20000
    batch_size: int = 2
    grad_accum: int = 1
    lr: float = 5e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 500
    clip_grad: float = 5.0
    amp: str = "fp16"  # "fp16", "bf16" or "none"
    ema: float = 0.99  # 0 disables EMA
    # channels_last_3d weights and inputs: faster for some models and devices, slower for others
    # (python bench/layout.py measures each preset); presets turn it on where it is faster.
    channels_last: bool = False
    seed: int = 42
    losses: dict[str, float] = field(default_factory=lambda: {"bce": 1.0})
    pos_weight: float = 10.0
    sigma_a: float = 200.0
    target: str = "gaussian"  # "gaussian", "point" or "ball"
    label_smoothing: float = 0.0
    target_radius_a: float | None = None  # "ball" target radius in Angstrom (None: sigma_a)
    pos_ratio: float = 0.5
    salient_ratio: float = 0.0  # fraction of negative crops centred on blob-like objects (hard negatives)
    salient_radius_a: float = 250.0  # object radius the salient-point filter looks for
    # hard-negative mining (byu_motor.train.mining): every hard_negative_every steps (0: at each validation)
    # the model's top false positives on the training tomograms become centres of this fraction of negatives
    hard_negative_ratio: float = 0.0
    hard_negative_every: int = 0
    hard_negative_topk: int = 5  # candidates kept per tomogram
    hard_negative_min_score: float = 0.1  # weaker candidates are not hard
    hard_negative_exclude_a: float = 1000.0  # candidates this close to a motor are not negatives
    num_workers: int = 4
    val_every: int = 1000
    fold: int = 0
    n_folds: int = 5
    # optimisation details (owner: train engine)
    min_lr: float = 0.0  # floor of the cosine schedule
    warmup_lr_init: float = 1e-6  # learning rate at step 0 of the warmup
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    tversky_alpha: float = 0.5  # weight of false positives
    tversky_beta: float = 0.5  # weight of false negatives
    ds_decay: float = 0.5  # deep-supervision output i is weighted ds_decay ** i
    log_every: int = 50  # steps between training-loss lines in metrics.jsonl
    val_quantiles: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    val_max_bytes: float = 4e9  # held-out tomograms are kept in memory up to this total size
    val_limit: int = 0  # validate on at most this many held-out tomograms (0: all)
    augment: dict[str, float] = field(default_factory=dict)  # keys: byu_motor.data.augment.DEFAULT_AUGMENT
    # "LABELS[:ROOT]" label files to train on, each with its data root (byu-motor train --labels); empty: the
    # data folder's train_labels.csv (byu_motor.train.inputs.read_training_labels)
    label_sources: tuple[str, ...] = ()
    adam_eps: float = 1e-8  # AdamW epsilon (the seed: 1e-7; byu_motor.train.step, .continuation)
    ema_every_micro: bool = False  # EMA updated after every micro-batch (the seed), not every step
    train_on_all: bool = False  # no held-out fold, no validation (the seed's final members)
    resume_from: str = ""  # a previous run's (read-only) out_dir to continue from
    stop_after_s: float = 0.0  # end this session after so many seconds, resume.pt saved (0: never)
    # the seed's window sampling and augmentation (byu_motor.data.seed_sampler, byu_motor.data.seed_augment)
    sampler: str = "random"  # "random": PatchDataset crops (pos_ratio); "seed": every motor window x 16 views
    bg_ratio: float = (
        0.05  # sampler "seed": background windows per foreground window-view; 2D: negatives per positive
    )
    bg_from_pos: float = 0.25  # sampler "seed": positive tomograms' background weight vs negative ones'
    augment_set: str = "ours"  # "ours" (train.augment) or "seed" (the seed's zoom/affine/views + MONAI set)
    sigma_rule: str = "same"  # sampler "seed": "same" (smallest principal std) or "covariance" (transformed)
    # cache tomograms at their own spacing and resample each sample once, as the seed did: a 3D window (sampler
    # "seed": spacing + zoom + affine + view, its MONAI lazy resampling) or a 2D member's slice triplet
    # (original slices 32 A apart, resized to 16 A per pixel); the cache is then as large as the tomograms
    resample_once: bool = False
    # also keep the inference checkpoints of these steps as step_<N>.pt (the seed's CoaT: step 10000 of 16100)
    keep_steps: tuple[int, ...] = ()
    # the validation split from a file: a tomo_id,fold CSV or the seed's cv JSON (folds[k]["val"]); "": our own
    folds_file: str = ""
    # 2D members (data.slices2d): negatives from slices bg_min_dist_a from every motor; z jitter in sigma_a
    bg_min_dist_a: float = 1000.0
    z_jitter_sigma: float = 1.0


@dataclass
class InferConfig:
    """Inference settings for :mod:`byu_motor.infer` (see its docs for each field)."""

    test_spacing_a: float = 13.1
    spacing_policy: str = "fixed"  # "fixed", "estimate" or "longest_edge"
    longest_edge: int = 512
    # assumed spacings, x test_spacing_a (the first is the anchor for "lift")
    scales: tuple[float, ...] = (1.0,)
    # "mean": logits averaged over scales; "lift": the first scale's candidates, whose scores the averaged
    # prediction can raise but never lower (byu_motor.postprocess.fusion.lift_points).
    scale_merge: str = "mean"
    patch_size: Triple | None = None  # None: the checkpoint's patch size
    overlap: float = 0.25
    batch_windows: int = 4
    border_weight: float = 0.5
    merge: str = "mean"  # "mean" or "max"
    # "weighted": overlapping windows, border down-weighting, mean-grey padding; "seed": no overlap, last window
    # flush, zero padding, equal-weight mean where windows meet (byu_motor.infer.tiling)
    tiling: str = "weighted"
    # logits upsampled this many times (trilinear) before accumulation, decoded at stride / decode_upsample
    decode_upsample: int = 1
    tta: tuple[str, ...] = ()
    ensemble: str = "logits"  # "logits", "fusion" or "wbf" (byu_motor.infer.merges)
    fusion_radius_a: float = 400.0
    fusion_floor: float = 0.05  # ensemble="wbf": candidates scoring below this are dropped before fusion
    nms_kernel_a: float = 400.0
    topk: int = 5
    threshold: str = "checkpoint"  # "checkpoint", "fixed", "quantile" or "negative_share"
    threshold_value: float = 0.5
    # threshold="quantile": the threshold is this quantile of the per-tomogram best scores, so 0.45 predicts
    # about 55 % of tomograms POSITIVE (the opposite share of the seed's 0.55)
    threshold_quantile: float = 0.45
    # threshold="negative_share": the same quantile, named by the share of tomograms predicted NEGATIVE
    # (the seed's rule: 0.55 -> about 45 % positive)
    negative_share: float = 0.55
    amp: bool = True
    # channels_last_3d weights and inputs for the forward pass (python bench/layout.py); presets turn it on
    # where it is faster.
    channels_last: bool = False
    compile: bool = False
    refine_peaks: bool = True  # sub-cell refinement of peaks (score-weighted 3x3x3 centroid)
    # "maxpool": NMS box of nms_kernel_a, top-k, refine_peaks; "seed": 3x3x3 local maxima >= peak_floor, greedy
    # L2 NMS within peak_radius_a, up to peak_max, no refinement (byu_motor.postprocess.seed_peaks)
    peak_decoder: str = "maxpool"
    peak_floor: float = 0.02
    peak_radius_a: float = 1000.0
    peak_max: int = 100
    peak_blur_a: float = (
        0.0  # "seed" decoder: Gaussian blur before the peak search, sigma in Angstrom (0: none)
    )
    # each member x TTA view decoded as its own candidate list (with its member's weight) instead of the views'
    # logits averaged per window (byu_motor.infer.views_apart)
    views_apart: bool = False
    # the identity view is added to every member's views; False: a member that lists views uses only those
    tta_identity: bool = True
    border_margin: float = 0.0  # drop candidates within this fraction of each axis from a face
    # Candidate steps after peak decoding, in order (byu_motor.postprocess.steps): each a registered step's
    # name or {"name": ..., setting: value}, e.g. ({"name": "context_gate", "threshold": 0.1},).
    steps: tuple[Any, ...] = ()
    # Per-member settings of an ensemble, {checkpoint path: {"weight", "tta", "patch_size"}}, filled when the
    # checkpoints' recipes are resolved (byu_motor.infer.recipe); empty: every member uses this section's.
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Runner (byu_motor.infer.runner, workers): prefetching, time budget, previews.
    prefetch: int = 2  # tomograms held in memory at once (the one being predicted + those read ahead)
    loader_threads: int = 1  # tomograms decoded in parallel by the prefetching loader
    read_threads: int | None = None  # slice-decoding threads per tomogram (None: all CPUs)
    budget_safety: float = 0.1  # fraction of the time budget kept in reserve (plus the slowest tomogram)
    preview_top: int = 0  # with --preview: PNGs for the N best-scoring tomograms only (0: all)
    # resample and cut windows on the model's device (the uint8 volume uploaded once; fp16 on CUDA), not the host
    resample_on_device: bool = True
    # float -> uint8 after resampling a test tomogram: "round", or "floor" (the seed's truncating cast)
    resample_cast: str = "round"
    batch_views: bool = True  # on CUDA, all TTA views of a batch of windows in one forward pass


#: InferConfig fields that say how a machine runs a prediction and cannot change a single number of it
INFER_NEUTRAL_RUN_FIELDS = (
    "compile",
    "batch_windows",
    "prefetch",
    "loader_threads",
    "read_threads",
    "budget_safety",
    "preview_top",
)
#: all InferConfig fields that say how a machine runs a prediction (precision and memory layout round
#: differently, so they can change the last digits)
INFER_RUN_FIELDS = ("amp", "channels_last", "resample_on_device", "batch_views", *INFER_NEUTRAL_RUN_FIELDS)


@dataclass
class Config:
    """One experiment: what to build, how to preprocess, train and infer."""

    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe nested dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Rebuild from :meth:`to_dict` output; unknown keys raise ``ValueError`` naming them.

        Configs written before the candidate steps existed are read too (:func:`migrate_config_dict`).
        """
        return _from_dict(cls, migrate_config_dict(d), "config")

    def override(self, assignments: list[str]) -> Config:
        """Apply ``section.key=value`` strings in place (values cast to the field's type); returns self."""
        for item in assignments:
            apply_override(self, item)
        return self
