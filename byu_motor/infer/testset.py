"""The test set as prediction sees it: which tomograms, in which order, and the reader that loads each one."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from byu_motor.config import InferConfig
from byu_motor.data.io import read_tomogram
from byu_motor.infer.budget import DEFAULT_VOXELS

log = logging.getLogger(__name__)


def read_repaired(folder: str | os.PathLike, base_reader: Callable[[Any], Any] = read_tomogram) -> Any:
    """Read a tomogram and repair it when it is wrongly quantised (the +127 wraparound), as training did.

    Args:
        folder: the tomogram's folder of slices.
        base_reader: ``reader(folder) -> uint8 (Z, Y, X)``.

    Returns:
        The uint8 ``(Z, Y, X)`` volume, repaired in place when the wraparound is detected (logged).
    """
    from byu_motor.data.io import detect_wraparound, fix_wraparound

    volume = base_reader(folder)
    if detect_wraparound(volume):
        path = Path(folder)  # say which split: a test tomogram, or a training one read for validation
        log.info(
            "%s tomogram %s: grey values stored shifted by 127 (wraparound); restored before prediction",
            path.parent.name,
            path.name,
        )
        volume = fix_wraparound(volume, inplace=True)
    return volume


def compose_reader(
    base_reader: Callable[[Any], Any] = read_tomogram, fix_wraparound: bool = True
) -> Callable[[Any], Any]:
    """``reader(folder) -> volume`` as prediction sees a tomogram: ``base_reader``, then the wraparound repair
    when asked (:func:`read_repaired`).

    The runner, validation and the bench read through it, so all predict the same volume.
    """
    reader = base_reader
    if fix_wraparound:
        reader = functools.partial(read_repaired, base_reader=reader)
    return reader


def prediction_reader(
    reader: Callable[[Any], Any],
    config: InferConfig,
    fix_wraparound: bool,
    alloc: Callable[[tuple[int, int, int]], Any] | None = None,
) -> Callable[[Any], Any]:
    """The reader a run uses: ``reader`` (when it is the default :func:`read_tomogram`: with
    ``config.read_threads`` decoding threads, into buffers from ``alloc``), then the wraparound repair (in
    place) when a checkpoint was trained on repaired tomograms.

    Args:
        reader: ``reader(folder) -> uint8 (Z, Y, X)``.
        config: inference settings (``read_threads``).
        fix_wraparound: repair wrongly quantised tomograms (:func:`read_repaired`).
        alloc: ``alloc(shape) -> uint8 array`` the default reader decodes into, e.g. a
            :class:`~byu_motor.infer.pinned.PinnedPool`; ``None``: fresh pageable arrays.
    """
    if reader is read_tomogram:
        options: dict[str, Any] = {} if alloc is None else {"alloc": alloc}
        if config.read_threads is not None:
            options["num_threads"] = config.read_threads
        reader = functools.partial(read_tomogram, **options) if options else reader
    return compose_reader(reader, fix_wraparound)


def list_test_tomograms(data_dir: Path) -> tuple[list[str], dict[str, Path]]:
    """Expected tomo_ids in output order, and the folders present.

    ``sample_submission.csv``, when present, fixes the set and order of rows (folders not in it are ignored,
    with a warning; ids without a folder are kept and get -1 rows); else the folders of ``test/``, sorted.

    Args:
        data_dir: competition folder holding ``test/`` and/or ``sample_submission.csv``.

    Returns:
        ``(tomo_ids, {tomo_id: folder})``; the dict holds only ids that are expected and have a folder.

    Raises:
        FileNotFoundError: ``data_dir`` has neither.
    """
    from byu_motor.data.layout import list_tomograms, read_sample_submission

    test_dir = data_dir / "test"
    sample_path = data_dir / "sample_submission.csv"
    folders = {tid: test_dir / tid for tid in list_tomograms(test_dir)} if test_dir.is_dir() else {}
    if not test_dir.is_dir() and not sample_path.exists():
        raise FileNotFoundError(f"{data_dir}: neither a test/ folder nor sample_submission.csv")
    if not sample_path.exists():
        return sorted(folders), folders
    ids = [str(t) for t in read_sample_submission(sample_path)["tomo_id"]]
    extra = sorted(set(folders) - set(ids))
    if extra:
        log.warning(
            "%d tomogram folder(s) in %s are not in sample_submission.csv and are ignored: %s",
            len(extra),
            test_dir,
            ", ".join(extra[:10]),
        )
    missing = [t for t in ids if t not in folders]
    if missing:
        log.warning(
            "%d tomogram(s) of sample_submission.csv have no folder in %s and get -1: %s",
            len(missing),
            test_dir,
            ", ".join(missing[:10]),
        )
    return ids, {t: folders[t] for t in ids if t in folders}


def tomogram_shape(folder: Any) -> tuple[int, int, int] | None:
    """``(Z, Y, X)`` of a tomogram folder without decoding it: the slice count and the first slice's header.

    Pillow reads only the image header on open, so this costs a directory listing and a few bytes per
    tomogram; the time budget plans from it before any tomogram is read.

    Args:
        folder: a tomogram folder of ``slice_<index>.jpg`` files.

    Returns:
        The shape in voxels, or ``None`` when the folder or its first slice cannot be read (the caller
        assumes a pessimistic size).
    """
    from PIL import Image

    from byu_motor.data.io import list_slices

    try:
        slices = list_slices(folder)
        with Image.open(slices[0]) as im:
            width, height = im.size
    except Exception as err:  # any unreadable folder: unknown size, never fatal here
        log.debug("%s: size unknown (%s)", folder, err)
        return None
    return len(slices), int(height), int(width)


def listed_sizes(folders: Sequence[Any]) -> list[float]:
    """Voxels of each tomogram from its folder listing and first slice header (:func:`tomogram_shape`).

    A tomogram of unknown size (unreadable folder or header, or not a folder) counts as the largest known
    one, or :data:`~byu_motor.infer.budget.DEFAULT_VOXELS` when none is known: the plan errs on the slow side.
    """
    shapes = [tomogram_shape(folder) for folder in folders]
    known = [float(z * y * x) for z, y, x in (s for s in shapes if s is not None)]
    fallback = max(known, default=float(DEFAULT_VOXELS))
    return [fallback if s is None else float(s[0] * s[1] * s[2]) for s in shapes]
