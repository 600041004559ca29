"""Envelope context: how strongly the coarse density around a candidate changes from one side to the other.

A flagellar motor sits in the cell envelope: on one side lies the cytoplasm, on the other the periplasm and
the medium, so the tomogram's density, smoothed to a few hundred Angstrom, differs between the two sides.
A storage granule or a lone ring deep in the cytoplasm is surrounded by cytoplasm on every side. Measured 1000 A
around each candidate, this feature separates motors from granules and decoys on the synthetic data.

:func:`envelope_contrast` measures it: the volume is normalised by its 1-99 percentile range, smoothed with a
Gaussian of ``sigma_a``, and sampled on a sphere of ``radius_a`` around the point; the feature is the length
of the samples' first moment (dipole) along the sphere's directions, ``3 / n * |sum_i (v_i - mean v) d_i|``,
which for a linear ramp of slope ``g`` per Angstrom equals ``g * radius_a``. It does not depend on the sign
of the contrast (inverted tomograms give the same value). Only a neighbourhood of each candidate is read and
block-averaged first, so the cost does not grow with the tomogram.

:func:`gate_scores` turns it into a gate: candidates below a threshold keep a ``floor`` fraction of their score.

:func:`envelope_dipole` keeps the dipole as a vector. Its ``(y, x)`` part is the lateral contrast
(:attr:`ContextGateSettings.lateral`): in a tomogram the missing wedge blurs the membranes that face the beam,
so a cell's top and bottom surfaces say little about where a motor sits, while in a cell flattened in the ice
much of the cytoplasm lies within the sphere's reach of them.

The registered candidate step ``context_gate`` (:mod:`byu_motor.postprocess.steps`) runs the gate in a recipe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from byu_motor.data.grid import Grid, as_triple
from byu_motor.postprocess.peaks import Candidate
from byu_motor.postprocess.steps import register_step

_TRUNCATE = 3.0  # Gaussian support in sigmas; the neighbourhood read around a point has this margin


def sphere_directions(n: int = 64) -> np.ndarray:
    """``n`` nearly uniform unit vectors ``(n, 3)`` in ``(z, y, x)`` order (a Fibonacci sphere)."""
    if n < 6:
        raise ValueError(f"need at least 6 directions, got {n}")
    i = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / n)
    azimuth = np.pi * (1.0 + 5.0**0.5) * i
    return np.stack([np.cos(polar), np.sin(polar) * np.sin(azimuth), np.sin(polar) * np.cos(azimuth)], axis=1)


def robust_range(volume: np.ndarray, stride: int = 4) -> tuple[float, float]:
    """``(median, p99 - p1)`` of a volume's values, from every ``stride``-th voxel per axis.

    Raises:
        ValueError: for a constant volume (no range to normalise by).
    """
    sample = np.asarray(volume[::stride, ::stride, ::stride], dtype=np.float32)
    lo, med, hi = np.percentile(sample, [1.0, 50.0, 99.0])
    if not hi > lo:
        raise ValueError("volume has no contrast (1st and 99th percentiles are equal)")
    return float(med), float(hi - lo)


def envelope_dipole(
    volume: np.ndarray,
    points_zyx: np.ndarray | Sequence[Sequence[float]],
    spacing_a: float | Sequence[float],
    sigma_a: float = 200.0,
    radius_a: float = 1000.0,
    n_directions: int = 64,
) -> np.ndarray:
    """The dipole of the smoothed density on a sphere around each point, as a vector (module docstring).

    Args:
        volume: ``(Z, Y, X)`` tomogram, any real dtype (uint8 as read).
        points_zyx: ``(n, 3)`` points in voxels of ``volume``.
        spacing_a: voxel spacing in Angstrom (scalar or per axis); at test time the assumed spacing.
        sigma_a: Gaussian smoothing in Angstrom.
        radius_a: sphere radius in Angstrom.
        n_directions: sample directions on the sphere.

    Returns:
        float64 ``(n, 3)``: the dipole ``(z, y, x)`` in units of the volume's 1-99 percentile range, pointing to
        the brighter side (zeros for a volume without contrast).
    """
    points = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    if sigma_a <= 0 or radius_a <= 0:
        raise ValueError(f"sigma_a and radius_a must be positive, got {sigma_a} and {radius_a}")
    if volume.ndim != 3:
        raise ValueError(f"volume must be (Z, Y, X), got shape {volume.shape}")
    out = np.zeros((len(points), 3))
    if not len(points):
        return out
    try:
        centre, scale = robust_range(volume)
    except ValueError:
        return out
    spacing = np.array(as_triple(spacing_a, "spacing_a"), dtype=np.float64)
    factor = np.maximum(1, np.floor(sigma_a / (2.0 * spacing))).astype(int)  # block averaging per axis
    half = np.ceil((radius_a + _TRUNCATE * sigma_a) / spacing).astype(int)
    directions = sphere_directions(n_directions)
    offsets = directions * (radius_a / spacing)  # (n_dir, 3) voxels
    shape = np.array(volume.shape)
    for k, p in enumerate(points):
        base = np.round(p).astype(int)
        lo = np.clip(base - half, 0, shape - 1)
        hi = np.clip(base + half + 1, lo + 1, shape)
        # a copy: a float32 volume must not be normalised in place (it is the caller's array)
        crop = np.array(volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], dtype=np.float32)
        crop = _block_mean(crop, factor)
        crop -= centre
        crop /= scale
        smooth = ndi.gaussian_filter(crop, sigma_a / (spacing * factor), mode="nearest", truncate=_TRUNCATE)
        # crop voxel j covers original voxels [lo + j f, lo + (j + 1) f): its centre is lo + j f + (f - 1) / 2
        coords = (p[None] + offsets - lo - (factor - 1) / 2.0) / factor
        values = ndi.map_coordinates(smooth, coords.T, order=1, mode="nearest")
        out[k] = (values - values.mean()) @ directions * (3.0 / len(directions))
    return out


def envelope_contrast(
    volume: np.ndarray,
    points_zyx: np.ndarray | Sequence[Sequence[float]],
    spacing_a: float | Sequence[float],
    sigma_a: float = 200.0,
    radius_a: float = 1000.0,
    n_directions: int = 64,
) -> np.ndarray:
    """The length of :func:`envelope_dipole`: float64 ``(n,)`` in units of the volume's 1-99 % range."""
    return np.linalg.norm(
        envelope_dipole(volume, points_zyx, spacing_a, sigma_a, radius_a, n_directions), axis=1
    )


def _block_mean(crop: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Average ``factor``-sized blocks of a 3D array (edge-padded to whole blocks)."""
    if np.all(factor == 1):
        return crop
    pad = [(0, int(-n % f)) for n, f in zip(crop.shape, factor)]
    crop = np.pad(crop, pad, mode="edge")
    z, y, x = (n // f for n, f in zip(crop.shape, factor))
    fz, fy, fx = (int(f) for f in factor)
    return crop.reshape(z, fz, y, fy, x, fx).mean(axis=(1, 3, 5), dtype=np.float32)


def gate_scores(
    candidates: Sequence[Candidate], contrast: np.ndarray | Sequence[float], threshold: float, floor: float
) -> list[Candidate]:
    """Scale the score of each candidate whose contrast is below ``threshold`` by ``floor``; best first.

    Args:
        candidates: ``[(z, y, x, score)]``.
        contrast: one :func:`envelope_contrast` value per candidate.
        threshold: contrast below which a candidate is damped.
        floor: factor in ``[0, 1]`` applied to damped scores.
    """
    contrast = np.asarray(contrast, dtype=np.float64).reshape(-1)
    if len(contrast) != len(candidates):
        raise ValueError(f"{len(candidates)} candidates but {len(contrast)} contrast values")
    if not 0.0 <= floor <= 1.0 or not math.isfinite(threshold):
        raise ValueError(f"floor must be in [0, 1] and threshold finite, got {floor} and {threshold}")
    gated = [
        (c[0], c[1], c[2], float(c[3]) * (1.0 if v >= threshold else floor))
        for c, v in zip(candidates, contrast)
    ]
    return sorted(gated, key=lambda c: -c[3])


@dataclass
class ContextGateSettings:
    """Settings of the ``context_gate`` candidate step.

    Args:
        threshold: contrast (dipole length, units of the tomogram's 1-99 % range) below which a candidate is
            damped.
        lateral: also damp a candidate whose dipole's ``(y, x)`` part is below this (0: not tested): the
            missing wedge blurs the membranes that face the beam, so only a lateral envelope places a motor.
        floor: fraction of its score a damped candidate keeps, in ``[0, 1]``.
        sigma_a: Gaussian smoothing of the density, Angstrom.
        radius_a: radius of the sampling sphere around each candidate, Angstrom.
    """

    threshold: float = 0.1
    lateral: float = 0.0
    floor: float = 0.1
    sigma_a: float = 200.0
    radius_a: float = 1000.0

    def __post_init__(self) -> None:
        if min(self.threshold, self.lateral) < 0 or not 0.0 <= self.floor <= 1.0:
            raise ValueError(
                f"threshold and lateral must be >= 0 and floor in [0, 1], got {self.threshold}, "
                f"{self.lateral} and {self.floor}"
            )
        if min(self.sigma_a, self.radius_a) <= 0:
            raise ValueError(f"sigma_a and radius_a must be positive, got {self.sigma_a} and {self.radius_a}")


def apply_context_gate(
    candidates: Sequence[Candidate],
    volume: np.ndarray,
    spacing_a: float | Sequence[float],
    settings: ContextGateSettings,
) -> list[Candidate]:
    """Damp candidates of ``volume`` without envelope context; best first.

    A candidate passes when its contrast (the dipole's length) reaches ``settings.threshold`` and, with
    ``settings.lateral`` > 0, the length of the dipole's ``(y, x)`` part reaches ``settings.lateral``; the
    others keep ``settings.floor`` of their score. A threshold of 0 returns the candidates unchanged.

    Args:
        candidates: ``[(z, y, x, score)]`` in voxels of ``volume``.
        volume: the tomogram, ``(Z, Y, X)``.
        spacing_a: its (assumed) voxel spacing in Angstrom.
        settings: the gate's sphere, smoothing, thresholds and floor.
    """
    if settings.threshold == 0 or not len(candidates):
        return list(candidates)
    dipole = envelope_dipole(
        volume, [c[:3] for c in candidates], spacing_a, settings.sigma_a, settings.radius_a
    )
    contrast = np.linalg.norm(dipole, axis=1)
    if settings.lateral > 0:
        # failing the lateral test counts as no contrast at all
        contrast[np.linalg.norm(dipole[:, 1:], axis=1) < settings.lateral] = 0.0
    return gate_scores(candidates, contrast, settings.threshold, settings.floor)


@register_step("context_gate", ContextGateSettings)
def context_gate(
    candidates: list[Candidate], volume: np.ndarray, grid: Grid, settings: ContextGateSettings
) -> list[Candidate]:
    """Candidate step ``context_gate``: :func:`apply_context_gate` at the grid's (assumed) spacing."""
    return apply_context_gate(candidates, volume, grid.spacing_a, settings)
