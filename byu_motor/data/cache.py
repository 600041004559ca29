"""Disk cache of training tomograms decoded once, resampled to the target spacing and memory-mapped as .npy."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from byu_motor.atomic import atomic_write
from byu_motor.data.grid import Grid, as_triple, resample_volume
from byu_motor.data.normalize import Normalizer

# Bump when the content of a cache entry changes meaning (resampling, wraparound rule, sidecar fields).
CACHE_VERSION = 2  # 2: wrapped tomograms also get their JPEG seam mended (data.io.fix_wraparound)


def source_signature(folder: str | Path) -> dict[str, Any]:
    """Cheap fingerprint of a tomogram source: absolute path, file count, total bytes and newest mtime.

    Works for a slice folder (its regular files, not recursive) and for a single-file volume.

    Raises:
        FileNotFoundError: naming ``folder`` when it does not exist.
    """
    path = Path(folder).resolve()
    if path.is_file():
        st = path.stat()
        return {"path": str(path), "n_files": 1, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    if not path.is_dir():
        raise FileNotFoundError(f"tomogram source {path} does not exist")
    n, total, newest = 0, 0, 0
    with os.scandir(path) as it:
        for entry in it:
            if entry.is_file():
                st = entry.stat()
                n += 1
                total += st.st_size
                newest = max(newest, st.st_mtime_ns)
    return {"path": str(path), "n_files": n, "bytes": total, "mtime_ns": newest}


@dataclass
class CachedVolume:
    """One training tomogram on the target grid.

    Args:
        tomo_id: tomogram name.
        volume: uint8 ``(Z', Y', X')`` read-only memmap on the target grid.
        src_grid: grid of the original tomogram.
        grid: grid of ``volume`` (spacing close to ``data_cfg.spacing_a``).
        motors: float64 ``(n, 3)`` motors in ``grid`` voxels (``(0, 3)`` when none).
        normalizer: fitted normaliser for this tomogram.
        mean_grey: mean grey value (0..255) of the volume, used to pad patches.
        wraparound_fixed: whether the wraparound repair was applied.
        path: the ``.npy`` file (reopened by path when the object is pickled to a worker process).
    """

    tomo_id: str
    volume: np.ndarray
    src_grid: Grid
    grid: Grid
    motors: np.ndarray
    normalizer: Normalizer
    mean_grey: float = 127.0
    wraparound_fixed: bool = False
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        # pickling a memmap would copy the whole volume into the pickle (spawned DataLoader workers, DDP):
        # send the path and reopen it on the other side instead
        state = dict(self.__dict__)
        if self.path is not None:
            state["volume"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.volume is None and self.path is not None:
            self.volume = np.load(self.path, mmap_mode="r")


class VolumeCache:
    """Resampled uint8 tomograms stored as ``<cache_dir>/<tomo_id>_<key>.npy`` plus a JSON sidecar.

    The entry name hashes what changes the voxels: target spacing, interpolation, denoising, wraparound
    repair, source spacing and :data:`CACHE_VERSION` (so another spacing is another entry). The sidecar
    also stores the source signature (path, file count, bytes, newest mtime); an entry whose source changed
    is rebuilt in place. Writes go to a temporary file and are renamed, so a crash or a concurrent writer
    never leaves a half-written entry.

    Args:
        cache_dir: folder of the cache (created if needed).
        data_cfg: :class:`byu_motor.config.DataConfig` (``spacing_a``, ``interp``, ``denoise``,
            ``fix_wraparound``, normalisation fields).
        reader: ``folder -> uint8 (Z, Y, X)``; default :func:`byu_motor.data.io.read_tomogram`.
        native: keep each tomogram at its own spacing (wraparound repair and denoising still applied), for
            samplers that resample every window from the original voxels (``train.resample_once``).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        data_cfg: Any,
        reader: Callable[[Path], np.ndarray] | None = None,
        native: bool = False,
    ):
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.data_cfg = data_cfg
        self.reader = reader
        self.native = bool(native)

    def _params(self, record: Any) -> dict[str, Any]:
        cfg = self.data_cfg
        return {
            "version": CACHE_VERSION,
            "src_spacing_a": as_triple(record.spacing_a, "spacing_a"),
            "spacing_a": "native" if self.native else as_triple(cfg.spacing_a, "data.spacing_a"),
            "interp": None if self.native else cfg.interp,
            "denoise": cfg.denoise,
            "fix_wraparound": bool(cfg.fix_wraparound),
        }

    def entry_paths(self, record: Any) -> tuple[Path, Path]:
        """``(npy path, json path)`` of ``record``'s entry under the current settings."""
        key = hashlib.sha1(json.dumps(self._params(record), sort_keys=True).encode()).hexdigest()[:16]
        stem = self.cache_dir / f"{record.tomo_id}_{key}"
        return stem.with_suffix(".npy"), stem.with_suffix(".json")

    def get(self, folder: str | Path, record: Any) -> CachedVolume:
        """The cached volume of ``record`` (built from ``folder`` when missing or stale).

        Args:
            folder: tomogram source (slice folder, or whatever ``reader`` accepts).
            record: :class:`byu_motor.data.layout.TomoRecord` (``tomo_id``, ``spacing_a``, ``motors``).

        Returns:
            :class:`CachedVolume`; motors come from ``record`` each time (labels can change without the
            volume changing).
        """
        npy, meta_path = self.entry_paths(record)
        signature = source_signature(folder)
        meta = None
        if meta_path.exists() and npy.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError):
                meta = None
            if meta is not None and (
                meta.get("source") != signature or meta.get("params") != self._json(record)
            ):
                meta = None
        if meta is None:
            meta = self._build(folder, record, npy, meta_path, signature)
        return self._open(record, npy, meta)

    def _json(self, record: Any) -> dict[str, Any]:
        return json.loads(json.dumps(self._params(record)))  # tuples -> lists, as read back from the sidecar

    def _build(self, folder: str | Path, record: Any, npy: Path, meta_path: Path, signature: dict) -> dict:
        from byu_motor.data import io

        cfg = self.data_cfg
        reader = self.reader or io.read_tomogram
        volume = reader(Path(folder))
        if volume.dtype != np.uint8 or volume.ndim != 3:
            raise ValueError(
                f"{folder}: reader returned {volume.dtype} {volume.shape}, expected uint8 (Z, Y, X)"
            )
        fixed = False
        if cfg.fix_wraparound and io.detect_wraparound(volume):
            volume = io.fix_wraparound(
                volume, inplace=True
            )  # before resampling: blending wrapped values is wrong
            fixed = True
        src = Grid(volume.shape, record.spacing_a)
        dst = src if self.native else src.resampled(cfg.spacing_a)
        out = resample_volume(volume, dst.shape, mode=cfg.interp, denoise=cfg.denoise)
        del volume
        step = max(1, int(round((out.size / 2_000_000) ** (1 / 3))))
        sample = out[::step, ::step, ::step].astype(np.float32) / 255.0
        meta = {
            "tomo_id": record.tomo_id,
            "params": self._json(record),
            "source": signature,
            "src_shape": list(src.shape),
            "shape": list(dst.shape),
            "wraparound_fixed": fixed,
            "mean": float(sample.mean()),
            "std": float(sample.std()),
        }
        _atomic_save_npy(npy, out)
        _atomic_write_text(meta_path, json.dumps(meta, indent=1))
        return meta

    def _open(self, record: Any, npy: Path, meta: dict) -> CachedVolume:
        volume = np.load(npy, mmap_mode="r")
        src = Grid(meta["src_shape"], record.spacing_a)
        dst = src.with_shape(meta["shape"])
        if tuple(volume.shape) != dst.shape:
            raise ValueError(f"cache entry {npy} has shape {volume.shape}, sidecar says {dst.shape}")
        base = Normalizer.from_data_config(self.data_cfg)
        if base.mode == "tomogram":
            std = meta["std"] if meta["std"] > 1e-6 else 1.0
            normalizer = Normalizer("tomogram", meta["mean"], std)
        else:
            normalizer = base
        motors = np.asarray(record.motors, dtype=np.float64).reshape(-1, 3)
        return CachedVolume(
            tomo_id=record.tomo_id,
            volume=volume,
            src_grid=src,
            grid=dst,
            motors=src.map_to(dst, motors) if len(motors) else np.zeros((0, 3)),
            normalizer=normalizer,
            mean_grey=meta["mean"] * 255.0,
            wraparound_fixed=bool(meta["wraparound_fixed"]),
            path=npy,
        )

    def prepare(
        self, items: Iterable[tuple[str | Path, Any]], workers: int = 1, progress: bool = True
    ) -> list[CachedVolume]:
        """Fill the cache for ``(folder, record)`` pairs with ``workers`` threads (decoding and resampling
        release the GIL); returns the volumes in input order, with a tqdm bar when ``progress``.
        """
        items = list(items)
        bar = None
        if progress:
            from byu_motor import progress as progress_module

            what = "cache (read, own spacing)" if self.native else "cache (read, resample)"
            bar = progress_module.bar(len(items), what, unit="tomo")
        results: list[CachedVolume | None] = [None] * len(items)

        def one(i: int) -> None:
            folder, record = items[i]
            results[i] = self.get(folder, record)
            if bar is not None:
                bar.update(1)

        try:
            if workers <= 1:
                for i in range(len(items)):
                    one(i)
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(one, range(len(items))))
        finally:
            if bar is not None:
                bar.close()
        return results  # type: ignore[return-value]


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, array))


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text), text=True)


def volumes_for(
    cache: VolumeCache, data_dir: str | Path, records: Sequence[Any], split: str = "train", workers: int = 1
) -> list[CachedVolume]:
    """Convenience: cached volumes for ``records`` found in ``<data_dir>/<split>/<tomo_id>``."""
    root = Path(data_dir) / split
    return cache.prepare([(root / r.tomo_id, r) for r in records], workers=workers)
