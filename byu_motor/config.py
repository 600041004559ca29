"""Dataclass configs: one experiment = model + data + train + infer sections, JSON round trip, `--set` overrides.

Presets (named experiments) live in :mod:`byu_motor.presets`. A checkpoint stores ``Config.to_dict()``
and rebuilds everything from it with :meth:`Config.from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

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


#: the envelope-context fields InferConfig held before they became the ``context_gate`` step's settings
_OLD_CONTEXT_KEYS = {
    "context_gate": "threshold",
    "context_lateral": "lateral",
    "context_floor": "floor",
    "context_sigma_a": "sigma_a",
    "context_radius_a": "radius_a",
}
#: settings removed from the library (they measured no gain); older configs that hold them still load
_REMOVED_INFER_KEYS = ("fusion_fill", "edge_bands")


def migrate_config_dict(d: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored config with older layouts brought up to date (``d`` is not changed).

    The ``infer.context_*`` fields become a ``context_gate`` entry of ``infer.steps`` (when the gate was on);
    the removed ``rescore`` section and ``infer.fusion_fill`` / ``infer.edge_bands`` are dropped.
    """
    if not isinstance(d, dict):
        return d
    d = dict(d)
    d.pop("rescore", None)
    infer = d.get("infer")
    if isinstance(infer, dict):
        infer = {k: v for k, v in infer.items() if k not in _REMOVED_INFER_KEYS}
        old = {new: infer.pop(key) for key, new in _OLD_CONTEXT_KEYS.items() if key in infer}
        if old.get("threshold"):
            infer["steps"] = [*infer.get("steps", []), {"name": "context_gate", **old}]
        d["infer"] = infer
    return d


def dataclass_from_mapping(cls: type, d: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a JSON-like mapping, casting each value to its field's type.

    Raises:
        ValueError: naming ``where`` for an unknown key or a value that cannot be cast.
    """
    return _from_dict(cls, d, where)


def _from_dict(cls: type, d: dict[str, Any], where: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for {cls.__name__}")
    kwargs = {}
    for name, value in d.items():
        kwargs[name] = _cast(hints[name], value, f"{where}.{name}")
    return cls(**kwargs)


def _cast(tp: Any, value: Any, where: str) -> Any:
    """Cast a JSON/CLI value to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _cast(a, value, where)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise ValueError(f"{where}: cannot read {value!r}: {'; '.join(errors)}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        value = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_cast(args[0], v, where) for v in value)
        if len(value) == 1 and len(args) > 1:
            value = value * len(args)  # "16" -> (16, 16, 16)
        if len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_cast(a, v, where) for a, v in zip(args, value))
    if origin is dict:
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (str, Any)
        return {_cast(kt, k, where): _cast(vt, v, where) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{where}: not a boolean: {value!r}")
        return bool(value)
    if tp in (int, float, str):
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{where}: not an integer: {value!r}")
        try:
            return tp(float(value)) if tp is int and isinstance(value, str) and "e" in value else tp(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: cannot read {value!r} as {tp.__name__}") from err
    return value


def apply_override(cfg: Any, assignment: str) -> None:
    """Apply one ``a.b.c=value`` assignment to a nested dataclass, casting to the field type.

    Raises:
        ValueError: naming the assignment when the key path or the value is invalid.
    """
    if "=" not in assignment:
        raise ValueError(f"--set {assignment!r}: expected key=value")
    path, raw = assignment.split("=", 1)
    keys = path.strip().split(".")
    obj = cfg
    for key in keys[:-1]:
        if not dataclasses.is_dataclass(obj) or not hasattr(obj, key):
            raise ValueError(f"--set {assignment!r}: unknown section {key!r}")
        obj = getattr(obj, key)
    last = keys[-1]
    if not dataclasses.is_dataclass(obj) or last not in {f.name for f in dataclasses.fields(obj)}:
        raise ValueError(f"--set {assignment!r}: unknown key {last!r}")
    tp = typing.get_type_hints(type(obj))[last]
    raw = raw.strip()
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    try:
        setattr(obj, last, _cast(tp, value, path))
    except ValueError as err:
        raise ValueError(f"--set {assignment!r}: {err}") from err
