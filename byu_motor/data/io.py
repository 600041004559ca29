"""Tomogram I/O: JPEG slice folders <-> uint8 (Z, Y, X) arrays, and the wraparound repair."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

SLICE_PATTERN = re.compile(r"^slice_(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)
REDUCE_FACTORS = (1, 2, 4)


class TomogramReadError(ValueError):
    """A tomogram folder that cannot be read as one volume (the message names the file or folder)."""


def write_tomogram(volume: np.ndarray, folder: str | Path, quality: int = 95) -> None:
    """Write a uint8 volume ``(Z, Y, X)`` as ``folder/slice_0000.jpg`` ... (competition layout).

    Args:
        volume: uint8 array ``(Z, Y, X)``.
        folder: output folder, created if needed.
        quality: JPEG quality (1-100).
    """
    if volume.dtype != np.uint8 or volume.ndim != 3:
        raise ValueError(
            f"write_tomogram expects a uint8 (Z, Y, X) volume, got {volume.dtype} {volume.shape}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for z in range(volume.shape[0]):
        Image.fromarray(volume[z]).save(folder / f"slice_{z:04d}.jpg", quality=quality)


def list_slices(folder: str | Path) -> list[Path]:
    """The slice files of a tomogram folder ordered by their integer index (``slice_9`` before ``slice_10``).

    Files not named ``slice_<int>.(jpg|jpeg|png)`` are ignored.

    Raises:
        TomogramReadError: missing folder, no slices, a repeated index or a gap in ``0 .. Z-1``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TomogramReadError(f"tomogram folder {folder} does not exist or is not a directory")
    by_index: dict[int, Path] = {}
    for path in folder.iterdir():
        match = SLICE_PATTERN.match(path.name)
        if match is None or not path.is_file():
            continue
        index = int(match.group(1))
        if index in by_index:
            raise TomogramReadError(
                f"{folder}: slice index {index} appears twice ({by_index[index].name}, {path.name})"
            )
        by_index[index] = path
    if not by_index:
        raise TomogramReadError(f"{folder}: no slice_<index>.jpg/.png files")
    missing = sorted(set(range(len(by_index))) - set(by_index))
    if missing:
        raise TomogramReadError(
            f"{folder}: slice index {missing[0]} is missing ({len(missing)} gap(s) in 0..{max(by_index)})"
        )
    return [by_index[i] for i in range(len(by_index))]


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def _zero_copy_works() -> bool:
    """Whether Pillow can paste into an image that shares memory with a numpy array (checked once)."""
    try:
        dst = np.zeros((2, 3), dtype=np.uint8)
        _paste_into(dst, Image.fromarray(np.arange(6, dtype=np.uint8).reshape(2, 3)))
        return dst.tolist() == [[0, 1, 2], [3, 4, 5]]
    except Exception:
        return False


def _paste_into(dst: np.ndarray, im: Image.Image) -> None:
    # Pillow's paste copies without the GIL and without the temporary that np.asarray(im) makes
    # (tobytes under the GIL): ~0.3 ms instead of ~0.9 ms per full-size slice, measured, which matters
    # when two threads share the GIL. frombuffer marks the image read-only; the memory is our writable array.
    target = Image.frombuffer("L", im.size, dst, "raw", "L", 0, 1)
    target.readonly = 0
    target.paste(im)


def _decode_slice(
    path: Path, size_xy: tuple[int, int], reduce: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Decode one slice as a uint8 ``(ceil(Y/reduce), ceil(X/reduce))`` array; checks its full-size shape.

    With ``out`` (a C-contiguous uint8 array of that shape) the pixels are written there and ``out`` is
    returned.
    """
    try:
        with Image.open(path) as im:
            if im.size != size_xy:
                raise TomogramReadError(
                    f"{path}: slice is {im.size[1]}x{im.size[0]} (Y x X) but the first slice is "
                    f"{size_xy[1]}x{size_xy[0]}"
                )
            target = (-(-size_xy[0] // reduce), -(-size_xy[1] // reduce))
            if reduce > 1 and im.format == "JPEG":
                # DCT scaling: libjpeg decodes directly at 1/reduce size (ceil), several times faster than
                # decoding in full and averaging. Requesting floor(n / reduce) makes Pillow pick exactly
                # scale `reduce` for any n >= reduce.
                im.draft("L", (max(1, size_xy[0] // reduce), max(1, size_xy[1] // reduce)))
            im.load()
            if im.mode != "L":
                im = im.convert("L")
            if im.size != target:
                # Non-JPEG, or a tiny JPEG where draft scaled less: box-average the remaining factor.
                # ceil(ceil(n / a) / b) == ceil(n / (a * b)), so chained reductions land on `target`.
                done = next((f for f in REDUCE_FACTORS if -(-size_xy[0] // f) == im.size[0]), None)
                if done is not None and reduce % done == 0 and done < reduce:
                    im = im.reduce(reduce // done)
                if im.size != target:
                    im = im.resize(target, Image.Resampling.BOX)
            if out is None:
                return np.asarray(im, dtype=np.uint8)
            if _zero_copy_works():
                _paste_into(out, im)
            else:
                out[...] = np.asarray(im, dtype=np.uint8)
            return out
    except TomogramReadError:
        raise
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        raise TomogramReadError(f"{path}: cannot decode slice ({type(err).__name__}: {err})") from err


def _check_out(out: object, shape: tuple[int, int, int], folder: str | Path) -> np.ndarray:
    """``out`` when it is a writable C-contiguous uint8 array of ``shape``; else one ValueError naming ``folder``."""
    if (
        not isinstance(out, np.ndarray)
        or out.dtype != np.uint8
        or out.shape != shape
        or not out.flags.c_contiguous
        or not out.flags.writeable
    ):
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(
            f"{folder}: out= must be a writable C-contiguous uint8 array of shape {shape}, got {got}"
        )
    return out


def _new_volume(shape: tuple[int, int, int]) -> np.ndarray:
    return np.empty(shape, dtype=np.uint8)


def read_tomogram(
    folder: str | Path,
    reduce: int = 1,
    num_threads: int | None = None,
    out: np.ndarray | None = None,
    alloc: Callable[[tuple[int, int, int]], np.ndarray] | None = None,
) -> np.ndarray:
    """Read a folder of slices into one uint8 volume ``(Z, Y, X)``, decoding with threads.

    Slices are ordered by the integer in ``slice_<int>.(jpg|jpeg|png)``; other files are ignored. Pillow
    releases the GIL while decoding, so threads scale with cores; each thread writes its slices straight
    into one preallocated array. Colour slices are converted to grayscale (``L``).

    With ``reduce = r`` (1, 2 or 4) the volume is reduced while decoding: in-plane by JPEG DCT scaling
    (box-average for PNG), along z by averaging groups of ``r`` consecutive slices (the last group may be
    shorter; values rounded half up). The result has shape ``(ceil(Z/r), ceil(Y/r), ceil(X/r))`` and voxel
    ``k`` covers original voxels ``[k*r, (k+1)*r)`` on each axis, i.e. its centre is the original
    coordinate ``k*r + (r-1)/2``. The matching grid is the stride-``r`` grid of the original one::

        grid = Grid(record.shape, record.spacing_a).strided(reduce)   # or Grid(vol.shape, spacing_a * reduce)
        original_zyx = grid.map_to(Grid(record.shape, record.spacing_a), reduced_zyx)

    (both forms give the same coordinate map: ``c_orig = (c + 0.5) * r - 0.5``).

    Args:
        folder: tomogram folder (``<root>/train/<tomo_id>``).
        reduce: reduction factor 1, 2 or 4 on every axis.
        num_threads: decoding threads; ``None`` = the CPUs available to this process.
        out: optional buffer the slices are decoded into (e.g. the numpy view of a pinned host tensor),
            a writable C-contiguous uint8 array of the result's shape; ``None`` allocates one.
        alloc: ``alloc(shape) -> out`` when ``out`` is ``None``, called once the shape is known (e.g. a
            :class:`byu_motor.infer.pinned.PinnedPool`); ``None``: ``np.empty``.

    Returns:
        uint8 array ``(ceil(Z/r), ceil(Y/r), ceil(X/r))``: ``out`` itself when given.

    Raises:
        ValueError: ``out`` of another shape or dtype (or not writable / C-contiguous).
        TomogramReadError: missing/empty folder, a gap in the slice indices, a corrupt or unreadable file,
            or a slice whose size differs from the first one (the message names the file or folder).
    """
    if reduce not in REDUCE_FACTORS:
        raise ValueError(f"reduce must be one of {REDUCE_FACTORS}, got {reduce!r}")
    paths = list_slices(folder)
    try:
        with Image.open(paths[0]) as first:
            size_xy = first.size
    except Exception as err:
        raise TomogramReadError(f"{paths[0]}: cannot open slice ({type(err).__name__}: {err})") from err
    n_out = -(-len(paths) // reduce)
    shape = (n_out, -(-size_xy[1] // reduce), -(-size_xy[0] // reduce))
    out = _check_out(out if out is not None else (alloc or _new_volume)(shape), shape, folder)

    def fill(k: int) -> None:
        group = paths[k * reduce : (k + 1) * reduce]
        if len(group) == 1:
            _decode_slice(group[0], size_xy, reduce, out=out[k])
            return
        # One group per task: no two threads ever write the same output slice.
        acc = np.zeros(out.shape[1:], dtype=np.uint16)
        for path in group:
            acc += _decode_slice(path, size_xy, reduce)
        acc += len(group) // 2
        np.floor_divide(acc, len(group), out=acc)
        out[k] = acc

    threads = max(1, min(num_threads or _default_threads(), n_out))
    if threads == 1:
        for k in range(n_out):
            fill(k)
        return out
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="read_tomogram")
    try:
        for _ in pool.map(fill, range(n_out)):
            pass
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # stop decoding the rest of a broken tomogram
        raise
    pool.shutdown(wait=True)
    return out


def _outer_fractions(volume: np.ndarray, max_samples: int = 4_000_000) -> tuple[float, float, float]:
    """Fractions of voxels in ``[0, 64)``, ``[64, 192)`` and ``[192, 256)`` from a strided sample."""
    step = max(1, int(np.ceil((volume.size / max_samples) ** (1 / 3))))
    sample = volume[::step, ::step, ::step] if volume.ndim == 3 else volume.reshape(-1)[:: step**3]
    hist = np.bincount(np.ascontiguousarray(sample).reshape(-1), minlength=256).astype(np.float64)
    hist /= max(hist.sum(), 1.0)
    return float(hist[:64].sum()), float(hist[64:192].sum()), float(hist[192:].sum())


def detect_wraparound(volume: np.ndarray) -> bool:
    """Whether a uint8 tomogram looks wrongly quantised by a signed/unsigned wraparound.

    A correct tomogram is a per-tomogram stretch with a unimodal histogram centred near 118 (or 137 when
    contrast is inverted), so most voxels sit in the middle half ``[64, 192)``. Wraparound moves the centre
    to both ends and leaves a hole in the middle. The test: more than 60% of voxels in the outer half and at
    least 10% at each end (a merely dark or bright tomogram fills only one end).

    Args:
        volume: uint8 array of any shape (usually ``(Z, Y, X)``); a strided sample of ~4M voxels is used.

    Returns:
        ``True`` when :func:`fix_wraparound` should be applied.
    """
    if volume.dtype != np.uint8:
        raise ValueError(f"detect_wraparound expects uint8, got {volume.dtype}")
    if volume.size == 0:
        return False
    low, middle, high = _outer_fractions(volume)
    return (low + high) > 0.6 and min(low, high) >= 0.1 and middle < 0.4


def fix_wraparound(volume: np.ndarray, inplace: bool = False, seam_tolerance: int | None = 96) -> np.ndarray:
    """Repair a wrapped tomogram: add 127 modulo 256 (uint8 arithmetic wraps by itself), then mend the seams.

    The arithmetic alone is exact only for the values as quantised. The slices were JPEG-compressed after the
    wraparound, and where the true grey value is near 127 the stored one jumps between ~0 and ~255 from
    voxel to voxel; compression blurs those jumps into mid-grey values, which the +127 turns into isolated
    black or white voxels (about 1 % of a synthetic wrapped tomogram's voxels, scattered through the
    cytoplasm and the medium). A second seam lies between true black and true white (stored 129 and 128):
    saturated dark voxels, such as a motor's core, turn white where compression moved them by one level.
    A detector that has seen few wrapped tomograms misses motors there.
    With ``seam_tolerance``, :func:`mend_isolated_extremes` mends both seams in each slice (the slices were
    compressed one by one).

    Args:
        volume: uint8 array; ``(Z, Y, X)`` for the seam repair (any shape with ``seam_tolerance=None``).
        inplace: modify ``volume`` instead of returning a new array (no extra memory but the seam's).
        seam_tolerance: grey levels (1-255); ``None`` for the arithmetic only.

    Returns:
        The repaired uint8 array (``volume`` itself when ``inplace``).
    """
    if volume.dtype != np.uint8:
        raise ValueError(f"fix_wraparound expects uint8, got {volume.dtype}")
    out = np.add(volume, np.uint8(127), out=volume if inplace else None)
    if seam_tolerance is not None:
        mend_isolated_extremes(out, seam_tolerance)
    return out


def mend_isolated_extremes(
    volume: np.ndarray,
    tolerance: int = 96,
    extreme: int = 32,
    half_window: int = 2,
    context_half_window: int = 5,
    num_threads: int | None = None,
) -> int:
    """Mend the near-black and near-white voxels of a wrapped tomogram's JPEG seams, slice by slice (in place).

    Each voxel below ``extreme`` or above ``255 - extreme`` is examined. Its side is the mean of the other
    voxels (not near black or white) within ``context_half_window`` in the slice: below 128 dark, else
    bright; where there are none, the side most of the window's voxels lie on. On the dark side near-white
    values are read as just below black (``v - 256``), on the bright side near-black ones as just above white
    (``v + 256``): the seam between true black and true white. The voxel's value read so is clipped to
    [0, 255], or replaced by the median of its ``(2 * half_window + 1)`` square neighbourhood (read the same
    way) when it lies farther than ``tolerance`` from it: the seam at mid-grey, where compression blurred
    stored black and white into grey.

    Args:
        volume: uint8 ``(Z, Y, X)``, modified in place.
        tolerance: grey levels, 1-255.
        extreme: only voxels within ``extreme`` of black or white are examined (the JPEG seams of a wrapped
            tomogram map there after the +127).
        half_window: neighbourhood of the median.
        context_half_window: neighbourhood that decides the side.
        num_threads: slices mended at once (default: the CPUs this process may use); the work is per slice,
            so it scales with the threads.

    Returns:
        The number of voxels changed.
    """
    from scipy import ndimage as ndi

    if volume.dtype != np.uint8 or volume.ndim != 3:
        raise ValueError(f"expected a uint8 (Z, Y, X) volume, got {volume.dtype} {volume.shape}")
    if not 1 <= tolerance <= 255 or not 1 <= extreme <= 128 or min(half_window, context_half_window) < 1:
        raise ValueError(
            f"need tolerance in [1, 255], extreme in [1, 128] and windows >= 1, got {tolerance}, {extreme}, "
            f"{half_window}, {context_half_window}"
        )
    r, side, size = half_window, 2 * half_window + 1, 2 * context_half_window + 1

    def mend(plane: np.ndarray) -> int:
        dark_end, bright_end = plane < extreme, plane > 255 - extreme
        yy, xx = np.nonzero(dark_end | bright_end)
        if yy.size == 0:
            return 0
        calm = ~(dark_end | bright_end)
        total = ndi.uniform_filter(np.where(calm, plane, 0).astype(np.float32), size, mode="nearest")
        count = ndi.uniform_filter(calm.astype(np.float32), size, mode="nearest")
        brightish = ndi.uniform_filter((plane >= 128).astype(np.float32), size, mode="nearest")
        no_calm = count <= 0.5 / size**2
        dark_side = np.where(no_calm, brightish < 0.5, total < 128.0 * count)
        padded = np.pad(plane, r, mode="edge").astype(np.int16)
        neigh = np.stack([padded[yy + dy, xx + dx] for dy in range(side) for dx in range(side)], axis=1)
        dark = dark_side[yy, xx][:, None]
        neigh = np.where(dark & (neigh > 255 - extreme), neigh - 256, neigh)
        neigh = np.where(~dark & (neigh < extreme), neigh + 256, neigh)
        med = np.median(neigh, axis=1)
        own = neigh[:, (side * side) // 2].astype(np.float64)
        new = np.clip(np.rint(np.where(np.abs(own - med) > tolerance, med, own)), 0, 255).astype(np.uint8)
        moved = new != plane[yy, xx]
        plane[yy[moved], xx[moved]] = new[moved]
        return int(moved.sum())

    threads = max(1, min(num_threads or _default_threads(), len(volume)))
    if threads == 1:
        return sum(mend(plane) for plane in volume)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mend_seams") as pool:
        return sum(pool.map(mend, volume))
