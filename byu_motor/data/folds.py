"""Cross-validation folds by tomogram, stratified by motor presence and voxel spacing; CSV read/write."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _strata(records: Any) -> dict[str, tuple[bool, int]]:
    """``tomo_id -> (has motor, spacing rounded to 1 A)`` from records or a competition label frame."""
    if hasattr(records, "columns"):  # a pandas DataFrame in the competition label format
        out: dict[str, tuple[bool, int]] = {}
        for tomo_id, group in records.groupby("tomo_id", sort=False):
            has = bool((group["Motor axis 0"] >= 0).any())
            out[str(tomo_id)] = (has, int(round(float(group["Voxel spacing"].iloc[0]))))
        return out
    if not isinstance(records, Mapping):
        records = {r.tomo_id: r for r in records}
    return {
        str(tid): (len(np.asarray(r.motors).reshape(-1, 3)) > 0, int(round(float(r.spacing_a))))
        for tid, r in records.items()
    }


def make_folds(records: Any, n_folds: int = 5, seed: int = 0) -> dict[str, int]:
    """Assign every tomogram to one of ``n_folds`` folds, deterministically.

    Tomograms are grouped by (motor present, spacing rounded to 1 Angstrom), each group shuffled with
    ``seed``, and dealt round-robin with the dealing position carried over from one group to the next, so
    fold sizes differ by at most 1 and every group is spread evenly.

    Args:
        records: ``dict[tomo_id, TomoRecord]`` (or any records with ``tomo_id``, ``motors``, ``spacing_a``),
            or a label DataFrame with the competition columns.
        n_folds: number of folds (>= 2).
        seed: shuffle seed.

    Returns:
        ``{tomo_id: fold}`` in the input order, folds ``0 .. n_folds - 1``.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    strata = _strata(records)
    groups: dict[tuple[bool, int], list[str]] = defaultdict(list)
    for tid, key in strata.items():
        groups[key].append(tid)
    rng = np.random.default_rng(seed)
    assigned: dict[str, int] = {}
    position = 0
    # large groups first (the positive/negative split matters most), ties in a fixed order
    for key in sorted(groups, key=lambda k: (-len(groups[k]), not k[0], k[1])):
        ids = sorted(groups[key])
        for j in rng.permutation(len(ids)):
            assigned[ids[j]] = position % n_folds
            position += 1
    return {tid: assigned[tid] for tid in strata}


def write_folds(path: str | Path, folds: Mapping[str, int]) -> None:
    """Write ``tomo_id,fold`` rows (with that header) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tomo_id", "fold"])
        for tid, fold in folds.items():
            writer.writerow([tid, int(fold)])


def read_folds(path: str | Path, known_ids: Iterable[str] | None = None) -> dict[str, int]:
    """Read a ``tomo_id,fold`` CSV.

    Args:
        path: CSV written by :func:`write_folds`.
        known_ids: when given, every ``tomo_id`` in the file must be one of these.

    Raises:
        ValueError: naming the file and row for a bad header, a bad fold, a repeated or unknown tomo_id.
    """
    path = Path(path)
    known = None if known_ids is None else set(known_ids)
    folds: dict[str, int] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["tomo_id", "fold"]:
            raise ValueError(f"{path}: expected header 'tomo_id,fold', got {header!r}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise ValueError(f"{path} line {line}: expected 2 columns, got {row!r}")
            tid, raw = row[0].strip(), row[1].strip()
            try:
                fold = int(raw)
            except ValueError:
                raise ValueError(f"{path} line {line}: fold {raw!r} of {tid} is not an integer") from None
            if fold < 0:
                raise ValueError(f"{path} line {line}: fold {fold} of {tid} is negative")
            if tid in folds:
                raise ValueError(f"{path} line {line}: tomo_id {tid} appears twice")
            if known is not None and tid not in known:
                raise ValueError(f"{path} line {line}: unknown tomo_id {tid}")
            folds[tid] = fold
    if not folds:
        raise ValueError(f"{path}: no folds")
    return folds


def split_records(records: Mapping[str, Any], folds: Mapping[str, int], fold: int) -> tuple[dict, dict]:
    """``(train records, validation records)`` for ``fold``; a tomogram missing from ``folds`` raises, naming it."""
    missing = [tid for tid in records if tid not in folds]
    if missing:
        raise ValueError(f"tomogram {missing[0]} has no fold ({len(missing)} missing)")
    train = {tid: r for tid, r in records.items() if folds[tid] != fold}
    val = {tid: r for tid, r in records.items() if folds[tid] == fold}
    return train, val


def held_out_ids(path: str | Path, fold: int) -> set[str]:
    """The tomo_ids of validation fold ``fold`` in a split file.

    Two formats: a ``tomo_id,fold`` CSV (:func:`read_folds`), or the seed's cv JSON (``cv/v3/skf4_rd42.json``:
    ``{"num_folds": K, "folds": [{"train": [...], "val": [...]}, ...]}``). Tomograms the file does not list
    (e.g. external data) are not held out.

    Raises:
        ValueError: naming the file for a missing file, unreadable JSON, a wrong layout or ``fold`` outside it.
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: train.folds_file does not exist")
    if path.suffix.lower() != ".json":
        folds = read_folds(path)
        if fold not in set(folds.values()):
            raise ValueError(f"{path}: no tomogram is in fold {fold}")
        return {tid for tid, k in folds.items() if k == fold}
    try:
        data = json.loads(path.read_text())
        entries = data["folds"]
        val = entries[fold]["val"] if 0 <= fold < len(entries) else None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a cv split file ({exc})") from None
    if val is None:
        raise ValueError(f"{path}: fold {fold} is outside 0..{len(entries) - 1}")
    return {str(tid) for tid in val}
