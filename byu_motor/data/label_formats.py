"""Label files in every shape we meet: the official long format, the seed's wide tables and external lists."""

from __future__ import annotations

import ast
import csv
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from byu_motor.data.layout import (
    LABEL_COLUMNS,
    LabelError,
    TomoRecord,
    _check_text_csv,
    _rows,
    read_labels,
)

# The seed's one-row-per-tomogram tables (gt*.csv, all_gt*.csv, external_gt.csv).
WIDE_COLUMNS = ("tomo_id", "Z", "Y", "X", "voxel_spacing", "num_motors", "motor_zyx")
# A public external list (brendanartley): motors in a fixed 128 x 512 x 512 (z, y, x) grid, one per row.
GRID_LIST_COLUMNS = ("z", "y", "x", "tomo_id")
EXTERNAL_LIST_GRID = (128, 512, 512)
Z_LIST_COLUMNS = ("tomo_id", "z")

FORMATS = ("official", "wide", "grid_list")


def _header(path: Path) -> tuple[list[str], int]:
    """The stripped header names and the 1-based line they are on (leading blank lines are skipped)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                return [c.strip() for c in next(csv.reader([line]))], number
    raise LabelError(f"{path}: empty file, no header")


def detect_format(path: str | Path) -> str:
    """Which label format ``path`` holds: one of :data:`FORMATS`.

    ``official``: ``train_labels.csv`` columns (extra ones such as ``source``, ``conf`` allowed);
    ``wide``: the seed's tables with a ``motor_zyx`` list; ``grid_list``: ``z, y, x, tomo_id`` rows in the
    :data:`EXTERNAL_LIST_GRID` grid.

    Raises:
        LabelError: not a CSV table, a ``tomo_id, z`` list (z only: see :func:`read_z_list`) or an
            unknown header, naming the file.
    """
    path = Path(path)
    _check_text_csv(path)
    header, _ = _header(path)
    names = set(header)
    if set(LABEL_COLUMNS) <= names:
        return "official"
    if set(WIDE_COLUMNS) <= names:
        return "wide"
    if set(GRID_LIST_COLUMNS) <= names:
        return "grid_list"
    if set(Z_LIST_COLUMNS) <= names:
        raise LabelError(f"{path}: a (tomo_id, z) list gives no y, x; read it with read_z_list")
    raise LabelError(f"{path}: unknown label format; header is {header}")


def _dict_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV whose header may follow blank lines; blank rows are skipped."""
    _, header_line = _header(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for _ in range(header_line - 1):
            fh.readline()
        reader = csv.DictReader(fh)
        reader.fieldnames = [c.strip() for c in reader.fieldnames or []]
        for row in _rows(reader, path):
            if None in row or None in row.values():
                raise LabelError(f"{path}:{reader.line_num + header_line - 1}: wrong number of fields")
            yield reader.line_num + header_line - 1, row


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise LabelError(f"{where}: column {column!r} holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise LabelError(f"{where}: column {column!r} holds {text!r}, not a finite number")
    return value


def _motor_list(text: str, where: str) -> np.ndarray:
    """``"[[z, y, x], ...]"`` -> float64 ``(n, 3)``."""
    try:
        value = ast.literal_eval(text.strip() or "[]")
        motors = np.asarray(value, dtype=np.float64).reshape(-1, 3)
    except (ValueError, SyntaxError, TypeError):
        raise LabelError(f"{where}: motor_zyx {text!r} is not a list of [z, y, x] triples") from None
    if len(value) != len(motors) or not np.isfinite(motors).all():
        raise LabelError(f"{where}: motor_zyx {text!r} is not a list of finite [z, y, x] triples")
    return motors


def _check_inside(motors: np.ndarray, shape: tuple[int, int, int], where: str) -> None:
    outside = (motors < 0) | (motors > np.asarray(shape) - 1)
    if outside.any():
        bad = motors[outside.any(axis=1)][0].tolist()
        raise LabelError(f"{where}: motor {bad} (z, y, x) lies outside the array shape {shape}")


def read_wide_labels(path: str | Path) -> dict[str, TomoRecord]:
    """Read one of the seed's one-row-per-tomogram tables (``gt_v3.csv``, ``external_gt.csv``, ...).

    Columns used: ``tomo_id, Z, Y, X`` (array shape in voxels), ``voxel_spacing`` (A), ``num_motors``
    (must equal the length of ``motor_zyx``), ``motor_zyx`` (a list of ``[z, y, x]`` in voxels of that
    array) and, when present, ``ori_num_motors`` (the official count, kept as ``n_motors_column``).

    Returns:
        ``{tomo_id: TomoRecord}`` in file order.

    Raises:
        LabelError: an unparseable row, as ``file:line: reason``.
    """
    path = Path(path)
    records: dict[str, TomoRecord] = {}
    seen: dict[str, int] = {}
    for line, row in _dict_rows(path):
        where = f"{path}:{line}"
        tomo_id = row["tomo_id"].strip()
        if not tomo_id:
            raise LabelError(f"{where}: empty tomo_id")
        if tomo_id in seen:
            raise LabelError(f"{where}: {tomo_id} appears again (first at line {seen[tomo_id]})")
        shape = tuple(_number(row[c], c, where) for c in ("Z", "Y", "X"))
        if any(s < 1 or s != int(s) for s in shape):
            raise LabelError(f"{where}: array shape {shape} is not three positive integers")
        spacing_a = _number(row["voxel_spacing"], "voxel_spacing", where)
        if spacing_a <= 0:
            raise LabelError(f"{where}: voxel_spacing must be positive, got {spacing_a}")
        motors = _motor_list(row["motor_zyx"], where)
        count = _number(row["num_motors"], "num_motors", where)
        if count != len(motors):
            raise LabelError(f"{where}: num_motors is {row['num_motors']} but motor_zyx lists {len(motors)}")
        shape_i = tuple(int(s) for s in shape)
        _check_inside(motors, shape_i, where)  # type: ignore[arg-type]
        official = row.get("ori_num_motors")
        n_column = int(_number(official, "ori_num_motors", where)) if official else len(motors)
        seen[tomo_id] = line
        records[tomo_id] = TomoRecord(tomo_id, shape_i, spacing_a, motors, n_column)  # type: ignore[arg-type]
    return records


def read_grid_list(
    path: str | Path, grid: tuple[int, int, int] = EXTERNAL_LIST_GRID
) -> dict[str, np.ndarray]:
    """Read an external ``z, y, x, tomo_id`` list whose coordinates are voxels of a fixed ``grid``.

    Args:
        path: the list (e.g. ``brendanartley_external_labels.csv``: one row per motor, extra columns such
            as ``dataset_id`` ignored).
        grid: the ``(Z, Y, X)`` shape its coordinates refer to (default 128 x 512 x 512).

    Returns:
        ``{tomo_id: float64 (n, 3)}`` motors ``(z, y, x)`` in ``grid`` voxels; map them onto a real volume
        with :func:`rescale_motors`.

    Raises:
        LabelError: an unparseable row or a motor outside ``grid``, as ``file:line: reason``.
    """
    path = Path(path)
    motors: dict[str, list[list[float]]] = {}
    for line, row in _dict_rows(path):
        where = f"{path}:{line}"
        tomo_id = row["tomo_id"].strip()
        if not tomo_id:
            raise LabelError(f"{where}: empty tomo_id")
        zyx = np.array([_number(row[c], c, where) for c in ("z", "y", "x")])
        _check_inside(zyx[None], grid, where)
        motors.setdefault(tomo_id, []).append(zyx.tolist())
    return {tid: np.asarray(m, dtype=np.float64).reshape(-1, 3) for tid, m in motors.items()}


def read_z_list(path: str | Path) -> dict[str, list[float]]:
    """Read a ``tomo_id, z`` list (the tatamikenn file: z of a motor in the 128-slice grid, no y, x).

    Returns:
        ``{tomo_id: [z, ...]}`` in file order.

    Raises:
        LabelError: a missing column or a non-numeric z, as ``file:line: reason``.
    """
    path = Path(path)
    _check_text_csv(path)
    header, _ = _header(path)
    if not set(Z_LIST_COLUMNS) <= set(header):
        raise LabelError(f"{path}: missing column(s) {sorted(set(Z_LIST_COLUMNS) - set(header))}")
    out: dict[str, list[float]] = {}
    for line, row in _dict_rows(path):
        out.setdefault(row["tomo_id"].strip(), []).append(_number(row["z"], "z", f"{path}:{line}"))
    return out


def rescale_motors(
    motors: np.ndarray, from_shape: tuple[int, int, int], to_shape: tuple[int, int, int]
) -> np.ndarray:
    """Map voxel coordinates between two grids covering the same volume (corner-aligned, as a resize).

    Args:
        motors: float ``(n, 3)`` ``(z, y, x)`` in voxels of ``from_shape``.
        from_shape, to_shape: ``(Z, Y, X)`` sizes of the two grids.

    Returns:
        float64 ``(n, 3)`` in voxels of ``to_shape``: ``(c + 0.5) * to / from - 0.5`` per axis.
    """
    factor = np.asarray(to_shape, dtype=np.float64) / np.asarray(from_shape, dtype=np.float64)
    return (np.asarray(motors, dtype=np.float64).reshape(-1, 3) + 0.5) * factor - 0.5


def grid_list_to_volume(
    motors: np.ndarray, shape: tuple[int, int, int], grid: tuple[int, int, int] = EXTERNAL_LIST_GRID
) -> np.ndarray:
    """Map grid-list motors onto the volume they were marked in, the seed's way (SEED_RECIPE.md 7.2).

    The list's z is an index into ``linspace(0, Z - 1, grid_z)`` cast to int (the slices its author kept);
    y and x are scaled as a resize: ``(c + 0.5) * Y / grid_y - 0.5``.

    Args:
        motors: float ``(n, 3)`` ``(z, y, x)`` in ``grid`` voxels (as :func:`read_grid_list` returns them).
        shape: ``(Z, Y, X)`` of the volume, in its own voxels.
        grid: the list's grid.

    Returns:
        float64 ``(n, 3)`` in voxels of ``shape``.
    """
    motors = np.asarray(motors, dtype=np.float64).reshape(-1, 3)
    z_index = np.linspace(0, shape[0] - 1, grid[0]).astype(int)
    z = z_index[np.clip(np.rint(motors[:, 0]).astype(int), 0, grid[0] - 1)]
    yx = (motors[:, 1:] + 0.5) * np.asarray(shape[1:], dtype=np.float64) / np.asarray(grid[1:]) - 0.5
    return np.column_stack([z, yx])


def read_label_file(
    path: str | Path, shapes: Mapping[str, tuple[tuple[int, int, int], float]] | None = None
) -> dict[str, TomoRecord]:
    """Read any label file we know, detecting its format (:func:`detect_format`).

    Args:
        path: an official long-format file (``train_labels.csv``, the seed's ``train_labels_v2.csv``), a
            seed wide table (``gt_v3.csv``, ``external_gt.csv``, ...) or an external grid list.
        shapes: for a grid list only: ``{tomo_id: ((Z, Y, X), spacing_a)}`` of the volumes its motors belong
            to, in the voxels the list was marked on (the portal volume); the motors are mapped onto them by
            :func:`grid_list_to_volume`. Without it
            the records keep the list's grid as ``shape`` and ``spacing_a`` is NaN (unknown).

    Returns:
        ``{tomo_id: TomoRecord}`` with motors ``(z, y, x)`` in voxels of ``shape``.

    Raises:
        LabelError: an unknown format or an unparseable row (``file:line: reason``); for a grid list, a
            tomo_id missing from ``shapes``.
    """
    path = Path(path)
    kind = detect_format(path)
    if kind == "official":
        return read_labels(path)
    if kind == "wide":
        return read_wide_labels(path)
    records = {}
    for tomo_id, motors in read_grid_list(path).items():
        if shapes is None:
            records[tomo_id] = TomoRecord(tomo_id, EXTERNAL_LIST_GRID, math.nan, motors, len(motors))
            continue
        if tomo_id not in shapes:
            raise LabelError(f"{path}: {tomo_id} has no shape in the given volumes")
        shape, spacing_a = shapes[tomo_id]
        native = grid_list_to_volume(motors, shape)
        records[tomo_id] = TomoRecord(tomo_id, shape, spacing_a, native, len(native))
    return records
