"""Voxel grids, coordinate mapping between them, and chunked uint8 resampling.

The one place where coordinates change grid. A grid is a shape and a per-axis voxel spacing in Angstrom;
all grids of one tomogram share their outer corner as the physical origin, so the centre of voxel ``c``
sits at ``(c + 0.5) * spacing``. This gives exactly the ``F.interpolate(..., align_corners=False)``
convention ``c_new = (c_old + 0.5) * (n_new / n_old) - 0.5``, and for a heatmap at stride ``s`` the
centre of cell ``k`` at input voxel ``k * s + (s - 1) / 2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

INTERP_MODES = ("trilinear", "area", "nearest")
DENOISE_MODES = (None, "median", "gaussian")
# float -> uint8 after resampling: "round" (ours), "floor" (the seed's inference: a plain uint8 cast truncates)
CASTS = ("round", "floor")


def _to_grey(res: torch.Tensor, cast: str) -> torch.Tensor:
    """Resampled float grey values -> uint8 by ``cast`` (:data:`CASTS`), clipped to 0..255."""
    res = res.floor_() if cast == "floor" else res.round_()
    return res.clamp_(0, 255).to(torch.uint8)


def _check_cast(cast: str) -> None:
    if cast not in CASTS:
        raise ValueError(f"unknown uint8 cast {cast!r}; choose from {CASTS}")


def as_triple(value: float | Sequence[float], name: str = "value") -> tuple[float, float, float]:
    """Return ``value`` as a 3-tuple of floats (a scalar is repeated on every axis)."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (float(value),) * 3
    t = tuple(float(v) for v in value)
    if len(t) != 3:
        raise ValueError(f"{name} must have 3 values (z, y, x), got {value!r}")
    return t  # type: ignore[return-value]


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``shape`` (Z, Y, X) and ``spacing_a`` (Angstrom per voxel along z, y, x).

    Example:
        >>> g = Grid((300, 960, 928), 13.1)
        >>> r = g.resampled(16.0)           # the grid a model at 16 A sees
        >>> h = r.strided(16)               # its heatmap at stride 16
        >>> h.map_to(g, [[3, 10, 12]])      # heatmap cell -> original voxels
    """

    shape: tuple[int, int, int]
    spacing_a: tuple[float, float, float]

    def __init__(self, shape: Sequence[int], spacing_a: float | Sequence[float]):
        shape_t = tuple(int(s) for s in shape)
        if len(shape_t) != 3 or min(shape_t) < 1:
            raise ValueError(f"grid shape must be 3 positive sizes, got {shape!r}")
        spacing_t = as_triple(spacing_a, "spacing_a")
        if min(spacing_t) <= 0 or not all(math.isfinite(s) for s in spacing_t):
            raise ValueError(f"grid spacing must be positive and finite, got {spacing_a!r}")
        object.__setattr__(self, "shape", shape_t)
        object.__setattr__(self, "spacing_a", spacing_t)

    @property
    def extent_a(self) -> tuple[float, float, float]:
        """Physical size of the grid along (z, y, x) in Angstrom."""
        return tuple(n * s for n, s in zip(self.shape, self.spacing_a))  # type: ignore[return-value]

    def resampled(self, target_spacing_a: float | Sequence[float]) -> Grid:
        """The grid of this volume resampled to (about) ``target_spacing_a``.

        The shape is ``round(n * spacing / target)`` (at least 1); the returned spacing is the exact
        one, ``extent / new_shape``, so coordinate maps stay exact despite the rounding.
        """
        target = as_triple(target_spacing_a, "target_spacing_a")
        shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(self.shape, self.spacing_a, target))
        return self.with_shape(shape)

    def with_shape(self, shape: Sequence[int]) -> Grid:
        """The grid covering the same extent with ``shape`` voxels (what ``F.interpolate(size=shape)`` gives)."""
        shape_t = tuple(int(n) for n in shape)
        return Grid(shape_t, tuple(e / n for e, n in zip(self.extent_a, shape_t)))

    def strided(self, stride: int | Sequence[int]) -> Grid:
        """The heatmap grid at ``stride`` (per axis): cell ``k`` covers voxels ``[k*s, (k+1)*s)``.

        The shape is ``ceil(n / s)`` (inputs are padded up to a multiple of ``s``).
        """
        st = tuple(int(v) for v in as_triple(stride, "stride"))
        shape = tuple(-(-n // s) for n, s in zip(self.shape, st))
        return Grid(shape, tuple(sp * s for sp, s in zip(self.spacing_a, st)))

    def map_to(self, other: Grid, coords: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Map voxel coordinates ``(n, 3)`` (z, y, x) on this grid to voxel coordinates on ``other``.

        Both grids must describe the same physical volume (same origin corner).
        """
        c = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
        ratio = np.asarray(self.spacing_a) / np.asarray(other.spacing_a)
        return (c + 0.5) * ratio - 0.5

    def to_physical(self, coords: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Voxel coordinates ``(n, 3)`` -> physical position of the voxel centres in Angstrom."""
        c = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
        return (c + 0.5) * np.asarray(self.spacing_a)

    def clip(self, coords: np.ndarray) -> np.ndarray:
        """Clip voxel coordinates ``(n, 3)`` into ``[0, n - 1]`` on each axis."""
        c = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
        return np.clip(c, 0, np.asarray(self.shape) - 1)


def _axis_weights(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """Dense (n_out, n_in) weights that reproduce ``F.interpolate`` along one axis (align_corners=False)."""
    w = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    if mode == "trilinear":
        src = (np.arange(n_out) + 0.5) * scale - 0.5
        src = np.clip(src, 0, None)  # PyTorch clamps negative sources to 0
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        frac = src - i0
        rows = np.arange(n_out)
        np.add.at(w, (rows, i0), 1 - frac)
        np.add.at(w, (rows, i1), frac)
    elif mode == "nearest":
        src = np.minimum(np.floor(np.arange(n_out) * scale).astype(np.int64), n_in - 1)
        w[np.arange(n_out), src] = 1.0
    elif mode == "area":  # adaptive average pooling bins
        for o in range(n_out):
            a = (o * n_in) // n_out
            b = -((-(o + 1) * n_in) // n_out)
            w[o, a:b] = 1.0 / (b - a)
    else:
        raise ValueError(f"unknown interpolation mode {mode!r}; choose from {INTERP_MODES}")
    return w


def _denoise_chunk(chunk: np.ndarray, mode: str | None, size: int, sigma: float) -> np.ndarray:
    from scipy import ndimage

    if mode is None:
        return chunk
    if mode == "median":
        return ndimage.median_filter(chunk, size=size, mode="nearest")
    if mode == "gaussian":
        return ndimage.gaussian_filter(chunk.astype(np.float32), sigma=sigma, mode="nearest")
    raise ValueError(f"unknown denoise mode {mode!r}; choose from {DENOISE_MODES}")


def resample_volume(
    volume: np.ndarray,
    out_shape: Sequence[int],
    mode: str = "trilinear",
    denoise: str | None = None,
    denoise_size: int = 3,
    denoise_sigma: float = 1.0,
    chunk_slices: int = 16,
    cast: str = "round",
) -> np.ndarray:
    """Resample a uint8 volume ``(Z, Y, X)`` to ``out_shape`` without a float32 copy of the whole volume.

    Matches ``F.interpolate(volume[None, None].float(), size=out_shape, mode=mode, align_corners=False)``
    rounded back to uint8 (to within 1 grey level), but works on ``chunk_slices`` output z-slices at a time:
    the in-plane resize runs on the input slices each chunk needs, then the z weights combine them.

    Args:
        volume: uint8 array ``(Z, Y, X)``.
        out_shape: output ``(Z', Y', X')``.
        mode: ``"trilinear"``, ``"area"`` or ``"nearest"``.
        denoise: ``None``, ``"median"`` (cube of ``denoise_size``) or ``"gaussian"`` (``denoise_sigma`` voxels),
            applied on the input grid before the resize, with a halo so chunk borders do not show.
        chunk_slices: output slices per chunk (memory ~ input slices needed x Y x X x 4 bytes).
        cast: float -> uint8, ``"round"`` or ``"floor"`` (the seed's inference: truncation).

    Returns:
        uint8 array of shape ``out_shape``.
    """
    if volume.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) volume, got shape {volume.shape}")
    if mode not in INTERP_MODES:
        raise ValueError(f"unknown interpolation mode {mode!r}; choose from {INTERP_MODES}")
    if denoise not in DENOISE_MODES:
        raise ValueError(f"unknown denoise mode {denoise!r}; choose from {DENOISE_MODES}")
    _check_cast(cast)
    zo, yo, xo = (int(v) for v in out_shape)
    zi = volume.shape[0]
    if (zo, yo, xo) == tuple(volume.shape) and denoise is None:
        return np.ascontiguousarray(volume, dtype=np.uint8)
    wz = _axis_weights(zi, zo, mode)
    mode2d = {"trilinear": "bilinear", "area": "area", "nearest": "nearest"}[mode]
    halo = (
        0
        if denoise is None
        else (denoise_size // 2 if denoise == "median" else int(math.ceil(4 * denoise_sigma)))
    )
    out = np.empty((zo, yo, xo), dtype=np.uint8)
    for o0 in range(0, zo, chunk_slices):
        o1 = min(zo, o0 + chunk_slices)
        cols = np.nonzero(wz[o0:o1].any(axis=0))[0]
        a, b = int(cols[0]), int(cols[-1]) + 1
        ha, hb = max(0, a - halo), min(zi, b + halo)
        src = volume[ha:hb]
        if denoise is not None:
            src = _denoise_chunk(src, denoise, denoise_size, denoise_sigma)
        src = src[a - ha : a - ha + (b - a)]
        # a new float32 array (writable even when ``volume`` is a read-only memmap)
        t = torch.from_numpy(np.array(src, dtype=np.float32))[:, None]  # (n, 1, Y, X)
        if (yo, xo) != tuple(volume.shape[1:]):
            t = F.interpolate(
                t, size=(yo, xo), mode=mode2d, **({} if mode2d != "bilinear" else {"align_corners": False})
            )
        w = torch.from_numpy(wz[o0:o1, a:b]).float()  # (o, n)
        res = torch.einsum("on,nyx->oyx", w, t[:, 0])
        out[o0:o1] = _to_grey(res, cast).numpy()
    return out


def resample_to_spacing(
    volume: np.ndarray,
    spacing_a: float | Sequence[float],
    target_spacing_a: float | Sequence[float],
    mode: str = "trilinear",
    denoise: str | None = None,
) -> tuple[np.ndarray, Grid, Grid]:
    """Resample a uint8 volume from ``spacing_a`` to ``target_spacing_a``.

    Returns:
        ``(resampled uint8 volume, source grid, target grid)``; map coordinates with
        ``source.map_to(target, coords)`` and back with ``target.map_to(source, coords)``.
    """
    src = Grid(volume.shape, spacing_a)
    dst = src.resampled(target_spacing_a)
    return resample_volume(volume, dst.shape, mode=mode, denoise=denoise), src, dst


def resample_tensor(
    volume: torch.Tensor,
    out_shape: Sequence[int],
    mode: str = "trilinear",
    dtype: torch.dtype | None = None,
    chunk_slices: int | None = None,
    cast: str = "round",
) -> torch.Tensor:
    """:func:`resample_volume` on a uint8 tensor, on the tensor's own device (e.g. the GPU the model runs on).

    The same grid contract and the same separable weights as the host path (in-plane ``F.interpolate``, then
    the z weights of :func:`_axis_weights`), so the output voxels sit at the same coordinates; only the
    arithmetic precision may differ (``dtype``), by at most 1 grey level after rounding.

    Args:
        volume: uint8 tensor ``(Z, Y, X)`` on any device.
        out_shape: output ``(Z', Y', X')`` in voxels.
        mode: ``"trilinear"``, ``"area"`` or ``"nearest"``.
        dtype: precision of the in-plane resize; ``None``: float16 on CUDA, float32 elsewhere. The z weights
            are always combined in float32.
        chunk_slices: output z-slices per chunk (device memory ~ input slices needed x Y' x X' x 4 bytes);
            ``None``: 32 on CUDA, 8 elsewhere (a CPU's caches favour small chunks).
        cast: float -> uint8, ``"round"`` or ``"floor"``.

    Returns:
        uint8 tensor of shape ``out_shape`` on the device of ``volume`` (``volume`` itself when the shape
        does not change).
    """
    if volume.ndim != 3 or volume.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 (Z, Y, X) tensor, got {volume.dtype} {tuple(volume.shape)}")
    if mode not in INTERP_MODES:
        raise ValueError(f"unknown interpolation mode {mode!r}; choose from {INTERP_MODES}")
    _check_cast(cast)
    zo, yo, xo = (int(v) for v in out_shape)
    if (zo, yo, xo) == tuple(volume.shape):
        return volume
    dtype = dtype or (torch.float16 if volume.is_cuda else torch.float32)
    chunk_slices = chunk_slices or (32 if volume.is_cuda else 8)
    wz = _axis_weights(volume.shape[0], zo, mode)
    mode2d = {"trilinear": "bilinear", "area": "area", "nearest": "nearest"}[mode]
    extra = {"align_corners": False} if mode2d == "bilinear" else {}
    out = torch.empty((zo, yo, xo), dtype=torch.uint8, device=volume.device)
    for o0 in range(0, zo, chunk_slices):
        o1 = min(zo, o0 + chunk_slices)
        cols = np.nonzero(wz[o0:o1].any(axis=0))[0]
        a, b = int(cols[0]), int(cols[-1]) + 1
        t = volume[a:b].to(dtype)[:, None]  # (n, 1, Y, X)
        if (yo, xo) != tuple(volume.shape[1:]):
            t = F.interpolate(t, size=(yo, xo), mode=mode2d, **extra)
        w = torch.from_numpy(wz[o0:o1, a:b]).to(device=volume.device, dtype=torch.float32)
        res = torch.einsum("on,nyx->oyx", w, t[:, 0].float())
        out[o0:o1] = _to_grey(res, cast)
    return out
