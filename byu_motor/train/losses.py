"""Heatmap losses chosen by name and weighted from ``cfg.train.losses``, with deep supervision.

Every loss maps ``(logits [B, 1, d, h, w], target [B, 1, d, h, w] in [0, 1])`` to a scalar and is computed
in float32 whatever the autocast dtype (fp16 sums over a whole heatmap overflow or lose precision).

- ``bce``: binary cross-entropy with ``pos_weight`` on positive targets (``cfg.train.pos_weight``).
- ``focal``: focal loss with ``focal_alpha`` / ``focal_gamma`` (soft targets supported).
- ``tversky``: ``1 - TP / (TP + alpha FP + beta FN)`` per sample on sigmoid probabilities, smoothed by 1.
- ``jsd``: spatial-softmax Jensen-Shannon divergence. The softmax runs over all cells of one sample plus one
  extra *background* cell whose logit is fixed at 0; the target distribution is the heatmap normalised to
  sum 1 (background 0), and a sample with an empty target puts all its mass on the background cell. So empty
  patches are not skipped: they teach the model to keep every logit well below 0, which also pins the logit
  scale that a plain spatial softmax leaves free.

Deep supervision: when the model returns a list ``[main, coarser...]``, the target is max-pooled to each
coarser output's shape and output ``i`` is weighted ``ds_decay ** i`` (1, 0.5, 0.25 by default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from byu_motor.config import TrainConfig
from byu_motor.models.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES: Registry[LossFn] = Registry("loss")


def _check(logits: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if logits.shape != target.shape:
        raise ValueError(
            f"loss {name!r}: logits {tuple(logits.shape)} and target {tuple(target.shape)} differ"
        )


def bce_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float = 1.0) -> torch.Tensor:
    """Mean binary cross-entropy; positive terms (``target * log p``) are weighted by ``pos_weight``.

    Args:
        logits: ``[B, 1, d, h, w]`` raw scores.
        target: same shape, values in [0, 1].
        pos_weight: weight of the positive term (motors are a tiny fraction of the cells).
    """
    _check(logits, target, "bce")
    pw = torch.tensor(float(pos_weight), device=logits.device, dtype=torch.float32)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=pw)


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Mean focal loss ``alpha_t (1 - p_t)^gamma BCE`` with ``p_t = p t + (1 - p)(1 - t)``.

    Args:
        logits: ``[B, 1, d, h, w]`` raw scores.
        target: same shape, values in [0, 1] (soft targets interpolate ``p_t`` and ``alpha_t``).
        alpha: weight of the positive class (``1 - alpha`` for the negative); ``alpha < 0`` disables it.
        gamma: focusing exponent (0 gives plain BCE times ``alpha_t``).
    """
    _check(logits, target, "focal")
    x, t = logits.float(), target.float()
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    return loss.mean()


def tversky_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0
) -> torch.Tensor:
    """Mean over samples of ``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` on sigmoid probabilities.

    Args:
        logits: ``[B, 1, d, h, w]`` raw scores.
        target: same shape, values in [0, 1].
        alpha: weight of false positives (``sum p (1 - t)``).
        beta: weight of false negatives (``sum (1 - p) t``); alpha = beta = 0.5 is the soft Dice loss.
        smooth: added to numerator and denominator so that empty targets give a finite loss that still
            pushes probabilities down.
    """
    _check(logits, target, "tversky")
    p = torch.sigmoid(logits.float()).flatten(1)
    t = target.float().flatten(1)
    tp = (p * t).sum(1)
    fp = (p * (1 - t)).sum(1)
    fn = ((1 - p) * t).sum(1)
    return (1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)).mean()


def jsd_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over samples of the Jensen-Shannon divergence (natural log) of spatial softmax vs target.

    The softmax is over every cell of a sample plus one background cell with logit 0; the target heatmap is
    normalised to sum 1, or is all background when empty (see the module docstring).

    Args:
        logits: ``[B, 1, d, h, w]`` raw scores.
        target: same shape, values >= 0.
    """
    _check(logits, target, "jsd")
    x = logits.float().flatten(1)
    x = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)  # background cell
    t = target.float().flatten(1).clamp_min(0)
    mass = t.sum(1, keepdim=True)
    empty = (mass <= 0).float()
    q = torch.cat([t / mass.clamp_min(1e-12), empty], dim=1)
    log_p = torch.log_softmax(x, dim=1)
    p = log_p.exp()
    m = 0.5 * (p + q)
    log_m = torch.log(m.clamp_min(1e-30))
    kl_pm = (p * (log_p - log_m)).sum(1)
    kl_qm = (torch.xlogy(q, q) - q * log_m).sum(1)
    return (0.5 * (kl_pm + kl_qm)).mean()


@LOSSES.register("bce")
def _build_bce(cfg: TrainConfig) -> LossFn:
    return lambda x, t: bce_loss(x, t, cfg.pos_weight)


@LOSSES.register("focal")
def _build_focal(cfg: TrainConfig) -> LossFn:
    return lambda x, t: focal_loss(x, t, cfg.focal_alpha, cfg.focal_gamma)


@LOSSES.register("tversky")
def _build_tversky(cfg: TrainConfig) -> LossFn:
    return lambda x, t: tversky_loss(x, t, cfg.tversky_alpha, cfg.tversky_beta)


@LOSSES.register("jsd")
def _build_jsd(cfg: TrainConfig) -> LossFn:
    return jsd_loss


def pool_target(target: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Max-pool a heatmap target ``[B, 1, d, h, w]`` to ``shape`` ``(d', h', w')`` (a coarser output).

    Max keeps every motor's peak value, so a motor stays a positive at every scale.
    """
    shape = tuple(int(s) for s in shape)
    if tuple(target.shape[2:]) == shape:
        return target
    return F.adaptive_max_pool3d(target.float(), shape)


class HeatmapLoss:
    """Weighted sum of named losses over one output or a deep-supervision list of outputs.

    Args:
        cfg: the train section; ``cfg.losses`` maps loss names to weights (e.g. ``{"bce": 1, "tversky": 0.5}``),
            ``cfg.ds_decay`` weights output ``i`` of a deep-supervision list by ``ds_decay ** i``.

    Example:
        >>> crit = HeatmapLoss(TrainConfig(losses={"bce": 1.0, "jsd": 0.5}))
        >>> total, parts = crit(model(x), target)   # parts: {"bce": float, "jsd": float}
    """

    def __init__(self, cfg: TrainConfig):
        if not cfg.losses:
            raise ValueError("train.losses is empty: name at least one loss, e.g. {'bce': 1.0}")
        self.terms = [(name, float(w), LOSSES.build(name, cfg=cfg)) for name, w in cfg.losses.items()]
        self.ds_decay = float(cfg.ds_decay)

    def __call__(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss (scalar tensor with grad) and each named term, detached and summed over scales.

        The terms stay tensors so that a training step does not wait for the device to report them.

        Args:
            outputs: logits ``[B, 1, d, h, w]`` or a list ``[main, coarser...]``; ``main`` matches ``target``.
            target: ``[B, 1, d, h, w]`` heatmap at the main output's resolution.
        """
        outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        total = outs[0].new_zeros((), dtype=torch.float32)
        parts = {name: total.detach().clone() for name, _, _ in self.terms}
        for i, out in enumerate(outs):
            scale_w = self.ds_decay**i
            tgt = pool_target(target, out.shape[2:]) if i else target
            for name, w, fn in self.terms:
                value = fn(out, tgt)
                total = total + scale_w * w * value
                parts[name] += scale_w * value.detach()
        return total, parts
