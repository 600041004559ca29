"""External tomograms (MRC, OME-Zarr) read with their voxel spacing and stretched to uint8."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MRC_SUFFIXES = (".mrc", ".rec", ".map", ".st", ".ali", ".mrc.gz", ".mrc.bz2")
ZARR_SUFFIXES = (".zarr",)
# OME-NGFF unit names (and a few common spellings) -> Angstrom.
UNIT_TO_A = {
    "angstrom": 1.0,
    "a": 1.0,
    "nanometer": 10.0,
    "nm": 10.0,
    "micrometer": 1e4,
    "micron": 1e4,
    "um": 1e4,
    "picometer": 0.01,
    "pm": 0.01,
}


class ExternalVolumeError(ValueError):
    """An external volume that cannot be read or converted (the message names the file)."""


def _require(module: str, extra: str) -> Any:
    """Import an optional dependency, or fail saying which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"reading this format needs the optional package {module!r}: pip install byu_motor[{extra}]"
        ) from err


@dataclass
class ExternalVolume:
    """A volume read from an external file, not yet converted.

    Args:
        data: array-like ``(Z, Y, X)`` in the file's dtype: a numpy array (MRC) or a lazy view whose
            ``data[z0:z1]`` reads a slab as numpy (OME-Zarr); ``.shape``, ``.dtype`` and ``.ndim`` work.
        spacing_a: voxel spacing ``(z, y, x)`` in Angstrom, or ``None`` when the file does not say.
        source: the file or folder it came from.
    """

    data: Any
    spacing_a: tuple[float, float, float] | None
    source: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)`` in voxels."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]


class _ZarrView:
    """Drop leading singleton axes (channel, time) of a zarr array and read z slabs as numpy."""

    def __init__(self, array: Any, lead: tuple[int, ...]):
        self._array = array
        self._lead = lead
        self.shape = tuple(int(s) for s in array.shape[len(lead) :])
        self.dtype = np.dtype(array.dtype)
        self.ndim = 3

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        return np.asarray(self._array[self._lead + key])


def source_stem(path: str | Path) -> str:
    """File name without its volume suffixes: ``a/b/TS_01.ome.zarr`` -> ``TS_01``, ``x.mrc.gz`` -> ``x``."""
    name = Path(path).name.rstrip("/")
    for suffix in (".gz", ".bz2", ".zarr", ".ome", *MRC_SUFFIXES):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def read_mrc(path: str | Path) -> ExternalVolume:
    """Read an MRC volume (``.mrc``, ``.rec``, ``.map``, gzip/bzip2 too) with its voxel spacing.

    The MRC header gives the voxel size in Angstrom (``x, y, z``); a zero size means unknown (``None``).

    Raises:
        ImportError: ``mrcfile`` is missing (``pip install byu_motor[mrc]``).
        ExternalVolumeError: unreadable file or not a 3D volume.
    """
    mrcfile = _require("mrcfile", "mrc")
    path = Path(path)
    try:
        with mrcfile.open(path, mode="r", permissive=True) as mrc:
            data = mrc.data
            voxel = mrc.voxel_size
            spacing = (float(voxel.z), float(voxel.y), float(voxel.x))
    except (OSError, ValueError) as err:
        raise ExternalVolumeError(f"{path}: cannot read MRC ({err})") from err
    if data is None or data.ndim != 3:
        raise ExternalVolumeError(
            f"{path}: expected a 3D volume, got shape {None if data is None else data.shape}"
        )
    if not all(s > 0 and math.isfinite(s) for s in spacing):
        spacing = None  # type: ignore[assignment]
    return ExternalVolume(data=data, spacing_a=spacing, source=path)  # type: ignore[arg-type]


def _ome_multiscales(attrs: dict[str, Any], path: Path) -> dict[str, Any]:
    # OME-NGFF <= 0.4 keeps "multiscales" at the top level; 0.5 (zarr v3) nests it under "ome".
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        raise ExternalVolumeError(f"{path}: no OME-Zarr 'multiscales' metadata")
    return multiscales[0]


def _scale_of(transforms: Sequence[dict[str, Any]] | None, n_axes: int) -> np.ndarray:
    scale = np.ones(n_axes)
    for t in transforms or []:
        if t.get("type") == "scale" and "scale" in t:
            scale = scale * np.asarray(t["scale"], dtype=np.float64)
    return scale


def read_ome_zarr(path: str | Path) -> ExternalVolume:
    """Read the full-resolution level of an OME-Zarr volume with its voxel spacing in Angstrom.

    Reads ``multiscales[0].datasets[0]``; its ``coordinateTransformations`` scale (times the optional
    multiscale-wide scale) gives the spacing, in the unit of each spatial axis (nanometer -> x10). Leading
    non-spatial axes (channel, time) must have size 1. The spatial axes must be ``z, y, x`` in that order.
    An axis without unit is taken as Angstrom (the CryoET Data Portal's unit).

    Raises:
        ImportError: ``zarr`` is missing (``pip install byu_motor[zarr]``).
        ExternalVolumeError: missing metadata, unknown unit, non-singleton extra axes or axis order.
    """
    zarr = _require("zarr", "zarr")
    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
        meta = _ome_multiscales(dict(group.attrs), path)
        dataset = meta["datasets"][0]
        array = group[dataset["path"]]
    except ExternalVolumeError:
        raise
    except Exception as err:  # zarr raises many kinds for a folder that is not a zarr group
        raise ExternalVolumeError(f"{path}: cannot read OME-Zarr ({type(err).__name__}: {err})") from err
    n_axes = len(array.shape)
    axes = meta.get("axes") or ["z", "y", "x"][-n_axes:]
    axes = [a if isinstance(a, dict) else {"name": a} for a in axes]  # v0.3 lists plain names
    if len(axes) != n_axes or n_axes < 3:
        raise ExternalVolumeError(f"{path}: {len(axes)} axes in metadata for an array of shape {array.shape}")
    names = [str(a.get("name", "")).lower() for a in axes]
    if names[-3:] != ["z", "y", "x"]:
        raise ExternalVolumeError(f"{path}: the last three axes must be z, y, x; got {names}")
    lead = tuple(range(n_axes - 3))
    if any(array.shape[i] != 1 for i in lead):
        raise ExternalVolumeError(f"{path}: extra axes {names[:-3]} must have size 1, shape is {array.shape}")
    scale = _scale_of(dataset.get("coordinateTransformations"), n_axes) * _scale_of(
        meta.get("coordinateTransformations"), n_axes
    )
    spacing = []
    for axis, s in zip(axes[-3:], scale[-3:]):
        unit = str(axis.get("unit") or "angstrom").lower()
        if unit not in UNIT_TO_A:
            raise ExternalVolumeError(f"{path}: unknown unit {unit!r} on axis {axis.get('name')}")
        spacing.append(float(s) * UNIT_TO_A[unit])
    spacing_a = tuple(spacing) if all(s > 0 and math.isfinite(s) for s in spacing) else None
    view = _ZarrView(array, tuple(0 for _ in lead))
    return ExternalVolume(data=view, spacing_a=spacing_a, source=path)  # type: ignore[arg-type]


def read_volume(path: str | Path) -> ExternalVolume:
    """Read an MRC file or an OME-Zarr folder, chosen by its suffix (a folder is taken as OME-Zarr)."""
    path = Path(path)
    if not path.exists():
        raise ExternalVolumeError(f"{path}: no such file or folder")
    name = path.name.lower()
    if path.is_dir() or name.endswith(ZARR_SUFFIXES):
        return read_ome_zarr(path)
    if name.endswith(MRC_SUFFIXES):
        return read_mrc(path)
    raise ExternalVolumeError(
        f"{path}: unknown volume format (expected {MRC_SUFFIXES} or an OME-Zarr folder)"
    )


def percentile_range(
    data: Any,
    low_pct: float = 0.5,
    high_pct: float = 99.5,
    max_samples: int = 16_000_000,
    chunk_slices: int = 32,
) -> tuple[float, float]:
    """Low and high percentiles of a volume, read in z slabs.

    Exact when the volume has at most ``max_samples`` voxels; otherwise computed on a regular strided
    sample of about ``max_samples`` voxels (enough for 0.5/99.5 percentiles to a fraction of a grey level).

    Args:
        data: array-like ``(Z, Y, X)`` supporting ``data[z0:z1]``.
        low_pct, high_pct: percentiles in ``[0, 100]``.

    Returns:
        ``(low, high)`` in the data's units (NaNs ignored).
    """
    size = math.prod(data.shape)
    step = max(1, math.ceil((size / max_samples) ** (1 / 3)))
    parts = []
    for z0 in range(0, data.shape[0], chunk_slices * step):
        slab = np.asarray(
            data[z0 : min(z0 + chunk_slices * step, data.shape[0]) : step]
        )  # sampled slices only
        parts.append(np.array(slab[:, ::step, ::step], dtype=np.float32).reshape(-1))
    sample = np.concatenate(parts)
    if not np.isfinite(sample).any():
        raise ExternalVolumeError("volume has no finite value")
    low, high = np.nanpercentile(sample, [low_pct, high_pct])
    return float(low), float(high)


def to_uint8(
    data: Any,
    low_pct: float = 0.5,
    high_pct: float = 99.5,
    chunk_slices: int = 32,
    stretch_uint8: bool = False,
) -> np.ndarray:
    """Stretch a volume to uint8: the ``low_pct`` percentile maps to 0, ``high_pct`` to 255, clipped.

    Works slab by slab along z, so besides the uint8 output it holds only a float32 copy of
    ``chunk_slices`` slices (and a bounded sample for the percentiles). NaNs become 0. A constant volume
    becomes all zeros. A uint8 volume is returned unchanged (already a stretched tomogram) unless
    ``stretch_uint8``.

    Args:
        data: array-like ``(Z, Y, X)`` of any real dtype supporting ``data[z0:z1]``.
        low_pct, high_pct: stretch percentiles in ``[0, 100]``, ``low_pct < high_pct``.
        chunk_slices: slices converted at a time.

    Returns:
        uint8 array ``(Z, Y, X)``.
    """
    if not 0 <= low_pct < high_pct <= 100:
        raise ValueError(f"need 0 <= low_pct < high_pct <= 100, got {low_pct}, {high_pct}")
    if len(data.shape) != 3:
        raise ValueError(f"expected a (Z, Y, X) volume, got shape {data.shape}")
    if np.dtype(data.dtype) == np.uint8 and not stretch_uint8:
        return np.array(data[0 : data.shape[0]], dtype=np.uint8)
    low, high = percentile_range(data, low_pct, high_pct, chunk_slices=chunk_slices)
    gain = 255.0 / (high - low) if high > low else 0.0
    out = np.empty(tuple(data.shape), dtype=np.uint8)
    for z0 in range(0, data.shape[0], chunk_slices):
        slab = np.array(data[z0 : z0 + chunk_slices], dtype=np.float32)
        slab -= np.float32(low)
        slab *= np.float32(gain)
        np.nan_to_num(slab, copy=False, nan=0.0)
        np.clip(slab, 0, 255, out=slab)
        np.rint(slab, out=slab)
        out[z0 : z0 + chunk_slices] = slab
    return out


# The seed's processing of CryoET Data Portal volumes (SEED_RECIPE.md 7.2).
SEED_LOW_PCT, SEED_HIGH_PCT, SEED_MIN_SPACING_A = 0.879, 99.064, 16.0
# A converted volume smaller than this on an axis is implausible for a tomogram (portal datasets
# 10210/10211 end at about 100 voxels a side once resampled: their header spacing is suspect).
SMALL_AXIS_VOX = 128


def stretch_and_resample(
    data: Any,
    spacing_a: float,
    low_pct: float = SEED_LOW_PCT,
    high_pct: float = SEED_HIGH_PCT,
    min_spacing_a: float | None = SEED_MIN_SPACING_A,
    stretch_uint8: bool = True,
) -> tuple[np.ndarray, float]:
    """Percentile-stretch a volume to uint8 and resample it to ``max(min_spacing_a, spacing_a)``.

    The seed clipped to the percentiles, scaled to [0, 1], resampled trilinearly and multiplied by 255;
    stretching to uint8 first and resampling the uint8 volume gives the same grey levels to about one level
    while never holding a float copy of the whole volume.

    Args:
        data: array-like ``(Z, Y, X)``.
        spacing_a: its isotropic voxel spacing in Angstrom.
        low_pct, high_pct: clip percentiles, mapped to 0 and 255.
        min_spacing_a: finest spacing kept (coarser volumes are not resampled); ``None``: never resample.
        stretch_uint8: stretch a uint8 volume too (``False``: keep it as it is, see :func:`to_uint8`).

    Returns:
        ``(uint8 (Z', Y', X'), spacing of the result in A)``; map source voxels onto it with
        ``Grid(data.shape, spacing_a).map_to(Grid(result.shape, new_spacing), coords)``.
    """
    from byu_motor.data.grid import resample_to_spacing

    volume = to_uint8(data, low_pct, high_pct, stretch_uint8=stretch_uint8)
    target = spacing_a if min_spacing_a is None else max(float(min_spacing_a), spacing_a)
    if target == spacing_a:
        return volume, spacing_a
    resampled, _, _ = resample_to_spacing(volume, spacing_a, target)
    return resampled, target
