"""Second-stage re-scoring: crops around the detector's candidates, a crop classifier, a blended score.

The same :func:`extract_crops` serves training (crops from the cached volumes at the detector's spacing) and
inference (crops from the original tomogram, resampled on the fly), so both see the same pixels up to
interpolation. Only the candidates' neighbourhoods are resampled: the cost does not grow with the tomogram.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.data.grid import as_triple
from byu_motor.data.normalize import Normalizer
from byu_motor.postprocess.peaks import Candidate

# Views of the crop batch at inference: identity, x flip, y flip, in-plane rot90 (dims of [N, D, H, W]).
_VIEWS = (
    lambda x: x,
    lambda x: x.flip(3),
    lambda x: x.flip(2),
    lambda x: x.rot90(1, (2, 3)),
)


def extract_crops(
    volume: np.ndarray,
    centres: np.ndarray | Sequence[Sequence[float]],
    spacing_a: float | Sequence[float],
    crop_spacing_a: float | Sequence[float],
    crop_size: Sequence[int],
    pad_value: float,
) -> np.ndarray:
    """Crops of ``crop_size`` voxels at ``crop_spacing_a`` centred on ``centres``, sampled trilinearly.

    The centre falls on crop voxel ``size // 2`` of each axis. Where the spacings agree and a centre is a whole
    voxel, the crop is an exact copy of the voxels. Voxels outside the volume read ``pad_value``.

    Args:
        volume: uint8 (or float) ``(Z, Y, X)`` array.
        centres: ``(n, 3)`` crop centres in ``volume``'s voxels (z, y, x).
        spacing_a: voxel spacing of ``volume``, Angstrom (scalar or per axis).
        crop_spacing_a: voxel spacing of the crops, Angstrom.
        crop_size: ``(D, H, W)`` voxels.
        pad_value: grey value outside the volume (0..255 units).

    Returns:
        float32 ``(n, D, H, W)`` in the volume's grey units.
    """
    pts = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    size = np.asarray([int(s) for s in crop_size])
    ratio = np.asarray(as_triple(crop_spacing_a)) / np.asarray(as_triple(spacing_a))
    out = np.empty((len(pts), *size), dtype=np.float32)
    offsets = [(np.arange(n) - n // 2) * r for n, r in zip(size, ratio)]  # crop voxel n // 2 is the centre
    for i, c in enumerate(pts):
        coords = [c[a] + offsets[a] for a in range(3)]
        lo = [int(np.floor(x[0])) for x in coords]
        hi = [int(np.floor(x[-1])) + 2 for x in coords]  # exclusive, one voxel beyond for interpolation
        region = np.full([h - lo_ for lo_, h in zip(lo, hi)], pad_value, dtype=np.float32)
        src = tuple(slice(max(0, lo_), min(n, h)) for lo_, h, n in zip(lo, hi, volume.shape))
        dst = tuple(slice(s.start - lo_, s.stop - lo_) for s, lo_ in zip(src, lo))
        if all(s.stop > s.start for s in src):
            region[dst] = volume[src]
        # grid_sample with align_corners=True: -1 and +1 are the centres of the first and last voxel
        axes = [
            torch.from_numpy(2.0 * (x - lo_) / max(n - 1, 1) - 1.0).float()
            for x, lo_, n in zip(coords, lo, region.shape)
        ]
        gz, gy, gx = torch.meshgrid(*axes, indexing="ij")
        grid = torch.stack([gx, gy, gz], dim=-1)[None]  # (1, D, H, W, 3), last dim (x, y, z)
        sampled = F.grid_sample(
            torch.from_numpy(region)[None, None], grid, mode="bilinear", align_corners=True
        )
        out[i] = sampled[0, 0].numpy()
    return out


@torch.no_grad()
def classify_crops(
    module: nn.Module,
    crops: np.ndarray,
    normalizer: Normalizer,
    device: torch.device | str = "cpu",
    batch: int = 64,
    tta: bool = True,
) -> np.ndarray:
    """Motor probability of each crop, averaged over four views (identity, flips, rot90) when ``tta``.

    Args:
        module: a :class:`~byu_motor.models.rescorer.CropClassifier` (put in eval mode here).
        crops: ``(n, D, H, W)`` grey values (0..255 units).
        normalizer: the detector's input normalisation.
        device: where the classifier runs.
        batch: crops per forward pass.
        tta: average the four views.

    Returns:
        float64 ``(n,)`` probabilities.
    """
    module.eval()
    views = _VIEWS if tta else _VIEWS[:1]
    probs = []
    for start in range(0, len(crops), batch):
        x = normalizer(torch.from_numpy(crops[start : start + batch])).to(device)[:, None]
        p = torch.stack([torch.sigmoid(module(v(x).contiguous()).float()) for v in views]).mean(0)
        probs.append(p.cpu().double().numpy())
    return np.concatenate(probs) if probs else np.zeros(0)


def blend_scores(candidates: Sequence[Candidate], probs: Sequence[float], weight: float) -> list[Candidate]:
    """``heatmap ** (1 - weight) * classifier ** weight`` for each candidate, best first.

    Args:
        candidates: ``(z, y, x, heatmap score)``.
        probs: classifier probability of each candidate.
        weight: exponent of the classifier, in ``[0, 1]`` (0: the detector alone, 1: the classifier alone).
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"rescore weight must be in [0, 1], got {weight}")
    if len(candidates) != len(probs):
        raise ValueError(f"{len(candidates)} candidates but {len(probs)} classifier scores")
    scored = [
        (c[0], c[1], c[2], float(max(c[3], 0.0) ** (1.0 - weight) * max(float(p), 0.0) ** weight))
        for c, p in zip(candidates, probs)
    ]
    return sorted(scored, key=lambda c: -c[3])
