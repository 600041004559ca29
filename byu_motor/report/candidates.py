"""The candidates CSV (``tomo_id,z,y,x,score``: one row per candidate, original voxels, best first per tomogram)
and the labels a report or review compares it with."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

CANDIDATE_COLUMNS = ("tomo_id", "z", "y", "x", "score")


def write_candidates_csv(path: str | Path, candidates: Mapping[str, Sequence[Sequence[float]]]) -> Path:
    """Write ``{tomo_id: [(z, y, x, score), ...]}`` (original voxels) as the candidates CSV; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CANDIDATE_COLUMNS)
        for tomo_id, cands in candidates.items():
            for z, y, x, s in (c[:4] for c in cands):
                writer.writerow([tomo_id, f"{z:.2f}", f"{y:.2f}", f"{x:.2f}", f"{s:.6f}"])
    return path


def read_candidates_csv(path: str | Path) -> dict[str, list[list[float]]]:
    """Read a candidates CSV into ``{tomo_id: [[z, y, x, score], ...]}``, best score first per tomogram.

    Raises:
        ValueError: a missing column or a non-numeric value (naming the file and line).
        OSError: the file cannot be read.
    """
    path = Path(path)
    out: dict[str, list[list[float]]] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in CANDIDATE_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {header}")
        reader.fieldnames = header
        for row in reader:
            try:
                values = [float(row[c]) for c in CANDIDATE_COLUMNS[1:]]
            except (TypeError, ValueError):
                raise ValueError(
                    f"{path}: line {reader.line_num}: z, y, x and score must be numbers"
                ) from None
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{path}: line {reader.line_num}: z, y, x and score must be finite")
            out.setdefault(row["tomo_id"].strip(), []).append(values)
    return {t: sorted(c, key=lambda v: -v[3]) for t, c in out.items()}


def read_truth(labels_csv: str | Path) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Motors and spacing per tomogram from ``train_labels.csv`` or a solution CSV with ``Voxel spacing``.

    Returns:
        ``({tomo_id: (n, 3) motors in original voxels}, {tomo_id: spacing in A})``.

    Raises:
        ValueError: a bad label file, or a solution CSV without ``Voxel spacing`` (naming the file).
    """
    from byu_motor.data.layout import read_labels, read_motor_table

    truth = read_motor_table(labels_csv)
    header = pd.read_csv(labels_csv, nrows=0).columns.str.strip()
    if "Voxel spacing" in header and "Number of motors" not in header:
        frame = pd.read_csv(labels_csv)
        frame.columns = frame.columns.str.strip()
        return truth, {str(t): float(s) for t, s in zip(frame["tomo_id"], frame["Voxel spacing"])}
    if "Number of motors" not in header:
        raise ValueError(
            f"{labels_csv}: a solution CSV needs a 'Voxel spacing' column; header is {list(header)}"
        )
    return truth, {t: rec.spacing_a for t, rec in read_labels(labels_csv).items()}
