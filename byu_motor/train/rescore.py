"""Second stage: train a crop classifier on the detector's own mistakes and store it in the checkpoints.

The detector ranks dense look-alikes (storage granules, ring-like complexes deep in the cell) level with
motors: it learns from dense crops where such objects are rare. The second stage trains only on the hard
cases. Its negatives are the finished detector's top candidates on its training tomograms that lie farther
than ``rescore.exclude_a`` from every motor; its positives are the motors (jittered copies). At inference
the Predictor blends each candidate's heatmap score with the classifier's probability
(:mod:`byu_motor.infer.rescore`).

:func:`attach_rescorer` runs at the end of :func:`byu_motor.train.engine.train` when ``rescore.enabled``:
it trains the classifier for the best checkpoint's detector, validates detector + classifier with the
same Validator, and rewrites ``best.pt`` with the classifier and the new thresholds (``last.pt`` stays the
detector alone, so its stored threshold stays true to it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from byu_motor.config import Config
from byu_motor.data.cache import CachedVolume
from byu_motor.models.rescorer import CropClassifier, create_rescorer

log = logging.getLogger(__name__)


def training_crops(
    volumes: Sequence[CachedVolume], negatives: Sequence[np.ndarray], cfg: Config, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised crops of the motors (``pos_copies`` jittered copies each) and of the negative centres.

    Args:
        volumes: cached training volumes (motors in their voxels).
        negatives: one ``(k, 3)`` array of negative centres per volume (its voxels).
        cfg: ``rescore`` (crop size, copies, jitter) and ``data.spacing_a`` (the crops' spacing).
        seed: seed of the jitter.

    Returns:
        ``(crops float32 (n, D, H, W), labels float32 (n,))``.
    """
    from byu_motor.infer.rescore import extract_crops

    if len(volumes) != len(negatives):
        raise ValueError(f"{len(volumes)} volumes but {len(negatives)} negative lists")
    r = cfg.rescore
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for v, neg in zip(volumes, negatives):
        motors = np.asarray(v.motors, dtype=np.float64).reshape(-1, 3)
        pos = np.repeat(motors, r.pos_copies, axis=0)
        pos = pos + rng.normal(0.0, r.jitter_vox, pos.shape)
        pts = np.concatenate([pos, np.asarray(neg, dtype=np.float64).reshape(-1, 3)])
        if not len(pts):
            continue
        crops = extract_crops(
            np.asarray(v.volume),
            pts,
            v.grid.spacing_a,
            cfg.data.spacing_a,
            r.crop_size,
            v.normalizer.mean * 255.0,
        )
        xs.append(v.normalizer(torch.from_numpy(crops)).numpy())
        ys.append(np.r_[np.ones(len(pos)), np.zeros(len(pts) - len(pos))].astype(np.float32))
    if not xs:
        return np.zeros((0, *r.crop_size), np.float32), np.zeros(0, np.float32)
    return np.concatenate(xs), np.concatenate(ys)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random x / y flips, in-plane rot90 and a shift of up to 2 voxels, per crop of ``[B, D, H, W]``."""
    out = []
    for crop in x:
        if torch.rand((), generator=gen) < 0.5:
            crop = crop.flip(2)
        if torch.rand((), generator=gen) < 0.5:
            crop = crop.flip(1)
        crop = crop.rot90(int(torch.randint(4, (), generator=gen)), (1, 2))
        shift = tuple(int(s) for s in torch.randint(-2, 3, (3,), generator=gen))
        out.append(crop.roll(shift, (0, 1, 2)))
    return torch.stack(out)


def train_rescorer(
    crops: np.ndarray,
    labels: np.ndarray,
    cfg: Config,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[CropClassifier, dict[str, Any]]:
    """Train the crop classifier on balanced batches (half positives, half negatives).

    Args:
        crops: normalised ``(n, D, H, W)`` crops (:func:`training_crops`).
        labels: ``(n,)`` 1 for motors, 0 for negatives; both classes must be present.
        cfg: ``rescore`` (architecture, steps, batch size, lr, weight decay, seed).
        device: where it trains.
        progress: show a tqdm bar.

    Returns:
        ``(classifier in eval mode, {"n_pos", "n_neg", "steps", "loss", "seconds"})``; ``loss`` is the mean
        of the last 10 % of steps.
    """
    r = cfg.rescore
    pos, neg = np.flatnonzero(labels > 0.5), np.flatnonzero(labels <= 0.5)
    if not len(pos) or not len(neg):
        raise ValueError(f"rescorer training needs motors and negatives, got {len(pos)} and {len(neg)} crops")
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(r.seed)
        model = create_rescorer(r).to(device)
    gen = torch.Generator().manual_seed(r.seed)
    # OneCycleLR drives the learning rate from lr / 25 up to lr and down again
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=r.steps)
    x_all, y_all = torch.from_numpy(crops), torch.from_numpy(labels.astype(np.float32))
    half = max(1, r.batch_size // 2)
    losses = []
    model.train()
    for _ in tqdm(range(r.steps), desc="rescorer", disable=not progress, dynamic_ncols=True):
        idx = torch.cat(
            [
                torch.from_numpy(pos)[torch.randint(len(pos), (half,), generator=gen)],
                torch.from_numpy(neg)[torch.randint(len(neg), (half,), generator=gen)],
            ]
        )
        x = _augment(x_all[idx], gen)[:, None].to(device)
        loss = F.binary_cross_entropy_with_logits(model(x), y_all[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    tail = losses[-max(1, len(losses) // 10) :]
    stats = {
        "n_pos": int(len(pos)),
        "n_neg": int(len(neg)),
        "steps": int(r.steps),
        "loss": float(np.mean(tail)),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return model.eval(), stats


def attach_rescorer(
    out_dir: str | Path,
    volumes: Sequence[CachedVolume],
    cfg: Config,
    device: torch.device | str,
    validator: Any = None,
    log_row: Callable[..., None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the second stage for ``out_dir/best.pt`` and rewrite ``best.pt`` with it.

    Args:
        out_dir: the run folder (``best.pt`` written by the engine).
        volumes: the cached training volumes the detector trained on.
        cfg: the experiment config (``rescore`` section).
        device: where the detector and classifier run.
        validator: a :class:`~byu_motor.train.validate.Validator`; when given, detector + classifier are
            validated and the checkpoints' ``threshold``, ``f2`` and ``quantile_thresholds`` are replaced
            by the combined pipeline's (the detector alone's are kept as ``detector_f2`` and
            ``detector_threshold``).
        log_row: ``log_row(event, **values)`` for the run's metrics log.
        progress: show a tqdm bar while the classifier trains.

    Returns:
        The training statistics plus ``mine_s``, ``f2_before``, and ``f2_after`` and ``threshold`` of detector
        + classifier (``None`` without a validator); also stored as ``extra["rescore"]`` in ``best.pt``.
    """
    from byu_motor.models.checkpoint import load_checkpoint, save_checkpoint
    from byu_motor.train.mining import off_motor_candidates

    out_dir = Path(out_dir)
    r = cfg.rescore
    best = load_checkpoint(out_dir / "best.pt", map_location=device)
    stride = tuple(int(s) for s in best.model.stride)
    t0 = time.perf_counter()
    negatives = off_motor_candidates(best.model, stride, volumes, cfg, device, r.topk, 0.0, r.exclude_a)
    mine_s = round(time.perf_counter() - t0, 2)
    crops, labels = training_crops(volumes, negatives, cfg, seed=r.seed)
    rescorer, stats = train_rescorer(crops, labels, cfg, device, progress)
    stats.update(mine_s=mine_s, f2_before=best.extra.get("f2"), f2_after=None, threshold=None)
    extra = dict(best.extra)
    if validator is not None:
        res = validator(best.model, stride, rescorer)
        stats.update(f2_after=res["f2"], threshold=res["threshold"])
        extra.update(
            detector_f2=best.extra.get("f2"),
            detector_threshold=best.extra.get("threshold"),
            f2=res["f2"],
            threshold=res["threshold"],
            quantile_thresholds=res["quantile_thresholds"],
        )
    extra["rescore"] = dict(stats)
    save_checkpoint(out_dir / "best.pt", best.model, best.config, extra, rescorer=rescorer)
    if log_row is not None:
        rest = {k: v for k, v in stats.items() if k not in ("f2_after", "threshold")}
        log_row("rescore", f2=stats["f2_after"], threshold=stats["threshold"], **rest)
    log.info("second stage: %s", stats)
    return stats
