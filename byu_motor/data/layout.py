"""Competition data layout: the label file, the tomogram folders and the sample submission."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

MOTOR_COLUMNS = ("Motor axis 0", "Motor axis 1", "Motor axis 2")
SHAPE_COLUMNS = ("Array shape (axis 0)", "Array shape (axis 1)", "Array shape (axis 2)")
SPACING_COLUMN = "Voxel spacing"
COUNT_COLUMN = "Number of motors"
LABEL_COLUMNS = ("row_id", "tomo_id", *MOTOR_COLUMNS, *SHAPE_COLUMNS, SPACING_COLUMN, COUNT_COLUMN)
SUBMISSION_COLUMNS = ("tomo_id", *MOTOR_COLUMNS)
SOLUTION_COLUMNS = ("tomo_id", *MOTOR_COLUMNS, SPACING_COLUMN)


class LabelError(ValueError):
    """A label or submission file that does not follow the competition format (the message names the row)."""


@dataclass(frozen=True)
class TomoRecord:
    """Labels of one tomogram.

    Args:
        tomo_id: folder name of the tomogram (e.g. ``"tomo_00e047"``).
        shape: ``(Z, Y, X)`` size of the original volume in voxels.
        spacing_a: voxel spacing in Angstrom (isotropic).
        motors: float64 array ``(n, 3)`` of motor centres ``(z, y, x)`` in original voxels; ``(0, 3)`` if none.
        n_motors_column: the file's ``Number of motors`` value, kept as written (it can disagree with
            ``len(motors)``, see :func:`count_mismatches`).
    """

    tomo_id: str
    shape: tuple[int, int, int]
    spacing_a: float
    motors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    n_motors_column: int = 0

    def __post_init__(self) -> None:
        motors = np.array(self.motors, dtype=np.float64).reshape(
            -1, 3
        )  # a copy: never freeze the caller's array
        motors.setflags(write=False)  # a frozen record should not change under its users' feet
        object.__setattr__(self, "motors", motors)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "spacing_a", float(self.spacing_a))
        object.__setattr__(self, "n_motors_column", int(self.n_motors_column))

    @property
    def n_motors(self) -> int:
        """Number of labelled motor rows."""
        return int(self.motors.shape[0])

    @property
    def has_motor(self) -> bool:
        """Whether at least one motor is labelled."""
        return self.n_motors > 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TomoRecord):
            return NotImplemented
        return (
            self.tomo_id == other.tomo_id
            and self.shape == other.shape
            and self.spacing_a == other.spacing_a
            and self.n_motors_column == other.n_motors_column
            and np.array_equal(self.motors, other.motors)
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array: equality only


def _parse_number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise LabelError(f"{where}: column {column!r} holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise LabelError(f"{where}: column {column!r} holds {text!r}, not a finite number")
    return value


def _parse_int(text: str, column: str, where: str, minimum: int) -> int:
    value = _parse_number(text, column, where)
    if value != int(value) or value < minimum:
        raise LabelError(f"{where}: column {column!r} holds {text!r}, expected an integer >= {minimum}")
    return int(value)


def _parse_row(row: Mapping[str, str], where: str) -> tuple[str, tuple, tuple, float, int]:
    """``(tomo_id, coords, shape, spacing_a, count)`` of one label row; ``where`` names it in errors."""
    if None in row.values() or None in row:
        raise LabelError(f"{where}: wrong number of fields")
    tomo_id = row["tomo_id"].strip()
    if not tomo_id:
        raise LabelError(f"{where}: empty tomo_id")
    coords = tuple(_parse_number(row[c], c, where) for c in MOTOR_COLUMNS)
    shape = tuple(_parse_int(row[c], c, where, minimum=1) for c in SHAPE_COLUMNS)
    spacing_a = _parse_number(row[SPACING_COLUMN], SPACING_COLUMN, where)
    if spacing_a <= 0:
        raise LabelError(f"{where}: voxel spacing must be positive, got {spacing_a}")
    count = _parse_int(row[COUNT_COLUMN], COUNT_COLUMN, where, minimum=0)
    return tomo_id, coords, shape, spacing_a, count


def _is_motor(coords: tuple, shape: tuple, tomo_id: str, where: str) -> bool:
    """True for a motor inside ``shape``, False for a ``-1`` (no motor) row; anything else raises."""
    n_missing = sum(c == -1 for c in coords)
    if n_missing == 3:
        return False
    if n_missing:
        raise LabelError(f"{where}: partial -1 coordinates {coords} (all three or none must be -1)")
    for axis, (c, n) in enumerate(zip(coords, shape)):
        # Voxel centres run from 0 to n - 1; anything else is not a position in this volume.
        if not 0 <= c <= n - 1:
            raise LabelError(
                f"{where}: motor {coords} of {tomo_id} lies outside its array shape {shape} (axis {axis})"
            )
    return True


def _check_text_csv(path: Path) -> None:
    """Reject a file that cannot be a CSV table, naming it: binary (a NUL byte, or not UTF-8 text in its
    first 64 KiB), JSON, or a folder. A missing file raises ``FileNotFoundError`` (naming it)."""
    if path.is_dir():
        raise LabelError(f"{path}: is a folder, not a CSV file")
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if b"\x00" in head:
        raise LabelError(f"{path}: binary file (NUL bytes), not a CSV table")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if len(head) < 65536 or err.start < len(head) - 3:  # not a character cut at the 64 KiB mark
            raise LabelError(f"{path}: not UTF-8 text (byte {err.start}), not a CSV table") from None
        text = head[: err.start].decode("utf-8-sig")
    if text.lstrip()[:1] in ("{", "["):
        raise LabelError(f"{path}: looks like JSON, not a CSV table")


def _rows(reader: csv.DictReader, path: Path) -> Iterator[dict[str, str]]:
    """The rows of ``reader``; text the csv module cannot read (bad quoting, bad encoding) raises
    :class:`LabelError` naming the file and line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise LabelError(f"{path}: line {reader.line_num}: not CSV text ({err})") from None
        except UnicodeDecodeError as err:  # decoded by blocks: the bad line is at or after the next one
            raise LabelError(f"{path}: after line {reader.line_num}: not UTF-8 CSV text ({err})") from None
        yield row


def read_labels(csv_path: str | Path) -> dict[str, TomoRecord]:
    """Read ``train_labels.csv`` into one :class:`TomoRecord` per tomogram.

    The file has one row per motor; a tomogram without motors has one row with ``-1`` coordinates.
    Rows of one tomogram need not be adjacent. Extra columns are ignored.

    Args:
        csv_path: path of the label file.

    Returns:
        ``{tomo_id: TomoRecord}`` in order of first appearance in the file.

    Raises:
        LabelError: a missing column, a non-numeric value, a motor outside its array shape, one tomogram
            with two shapes, spacings or motor counts, partial ``-1`` coordinates, or a ``-1`` row beside
            motor rows. The message names the file, the ``row_id`` and the line.
    """
    csv_path = Path(csv_path)
    _check_text_csv(csv_path)
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:  # -sig: tolerate a BOM
        reader = csv.DictReader(fh)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [c for c in LABEL_COLUMNS if c not in header]
        if missing:
            raise LabelError(f"{csv_path}: missing column(s) {missing}; header is {header}")
        reader.fieldnames = header
        shapes: dict[str, tuple[int, int, int]] = {}
        spacings: dict[str, float] = {}
        counts: dict[str, int] = {}
        motors: dict[str, list[tuple[float, float, float]]] = {}
        empty_row: dict[str, str] = {}  # tomo_id -> where its -1 row was, to report a mix with motors
        first_row: dict[str, str] = {}
        for row in _rows(reader, csv_path):
            where = f"{csv_path}: row_id {row.get('row_id')!r} (line {reader.line_num})"
            tomo_id, coords, shape, spacing_a, count = _parse_row(row, where)
            if tomo_id not in shapes:
                shapes[tomo_id], spacings[tomo_id], counts[tomo_id] = shape, spacing_a, count  # type: ignore[assignment]
                motors[tomo_id] = []
                first_row[tomo_id] = where
            else:
                for name, known, new in (
                    ("array shape", shapes[tomo_id], shape),
                    ("voxel spacing", spacings[tomo_id], spacing_a),
                    ("number of motors", counts[tomo_id], count),
                ):
                    if known != new:
                        raise LabelError(
                            f"{where}: {tomo_id} has {name} {new} here but {known} at {first_row[tomo_id]}"
                        )
            if _is_motor(coords, shape, tomo_id, where):
                motors[tomo_id].append(coords)  # type: ignore[arg-type]
            else:
                empty_row[tomo_id] = where
            if tomo_id in empty_row and motors[tomo_id]:
                raise LabelError(
                    f"{where}: {tomo_id} has a -1 (no motor) row at {empty_row[tomo_id]} and motor rows"
                )
    return {
        tomo_id: TomoRecord(
            tomo_id=tomo_id,
            shape=shapes[tomo_id],
            spacing_a=spacings[tomo_id],
            motors=np.array(motors[tomo_id], dtype=np.float64).reshape(-1, 3),
            n_motors_column=counts[tomo_id],
        )
        for tomo_id in shapes
    }


def count_mismatches(records: Mapping[str, TomoRecord]) -> list[str]:
    """Tomograms whose ``Number of motors`` column disagrees with their number of motor rows.

    Args:
        records: ``{tomo_id: TomoRecord}`` as returned by :func:`read_labels`.

    Returns:
        The tomo_ids, sorted (in the real train set: tomo_2b3cdf, tomo_62eea8, tomo_c84b8e, tomo_e6f7f7).
    """
    return sorted(r.tomo_id for r in records.values() if r.n_motors_column != r.n_motors)


def labels_to_frame(records: Mapping[str, TomoRecord] | list[TomoRecord]) -> pd.DataFrame:
    """Write records back as a ``train_labels.csv`` frame (competition columns, one row per motor).

    Args:
        records: ``{tomo_id: TomoRecord}`` or a list of records; order is kept.

    Returns:
        DataFrame with :data:`LABEL_COLUMNS`; ``row_id`` counts from 0; a motor-free tomogram gets one
        row of ``-1`` coordinates. ``df.to_csv(path, index=False)`` gives a file :func:`read_labels` reads
        back to the same records.
    """
    items = records.values() if isinstance(records, Mapping) else records
    rows: list[list[object]] = []
    for rec in items:
        motors = rec.motors if rec.n_motors else np.full((1, 3), -1.0)
        for z, y, x in motors:
            rows.append(
                [
                    len(rows),
                    rec.tomo_id,
                    float(z),
                    float(y),
                    float(x),
                    *rec.shape,
                    rec.spacing_a,
                    rec.n_motors_column,
                ]
            )
    frame = pd.DataFrame(rows, columns=list(LABEL_COLUMNS))
    return frame.astype(
        {
            "row_id": np.int64,
            **dict.fromkeys(MOTOR_COLUMNS, np.float64),
            **dict.fromkeys(SHAPE_COLUMNS, np.int64),
        }
        | {SPACING_COLUMN: np.float64, COUNT_COLUMN: np.int64}
    )


def solution_frame(records: Mapping[str, TomoRecord] | list[TomoRecord]) -> pd.DataFrame:
    """The metric's solution frame: one row per tomogram with its first motor, or ``-1`` when none.

    Args:
        records: ``{tomo_id: TomoRecord}`` or a list of records.

    Returns:
        DataFrame with columns ``tomo_id, Motor axis 0, Motor axis 1, Motor axis 2, Voxel spacing``
        (coordinates in original voxels, spacing in Angstrom).
    """
    items = records.values() if isinstance(records, Mapping) else records
    rows = []
    for rec in items:
        z, y, x = rec.motors[0] if rec.n_motors else (-1.0, -1.0, -1.0)
        rows.append([rec.tomo_id, float(z), float(y), float(x), rec.spacing_a])
    return pd.DataFrame(rows, columns=list(SOLUTION_COLUMNS)).astype(
        {**dict.fromkeys(MOTOR_COLUMNS, np.float64), SPACING_COLUMN: np.float64}
    )


def list_tomograms(folder: str | Path) -> list[str]:
    """Sorted names of the tomogram sub-folders of ``folder`` (e.g. ``<root>/train``).

    Files and hidden folders (names starting with ``.``, such as caches) are ignored.

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"tomogram folder {folder} does not exist or is not a directory")
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_sample_submission(path: str | Path) -> pd.DataFrame:
    """Read ``sample_submission.csv`` (or a submission) and check its columns.

    Args:
        path: CSV with columns ``tomo_id, Motor axis 0, Motor axis 1, Motor axis 2``.

    Returns:
        DataFrame with ``tomo_id`` as str and float64 coordinates (``-1`` = no motor).

    Raises:
        LabelError: not a CSV table (binary, JSON), a missing column, a non-numeric coordinate, a negative
            one other than the ``-1, -1, -1`` (no motor) triple, or a repeated tomo_id; naming the file and
            the line (the header is line 1, so data row ``n`` is line ``n + 1``).
    """
    path = Path(path)
    _check_text_csv(path)
    try:
        frame = pd.read_csv(path, dtype={"tomo_id": str})
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as err:
        raise LabelError(f"{path}: not a readable CSV table ({_first_line(err)})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in SUBMISSION_COLUMNS if c not in frame.columns]
    if missing:
        raise LabelError(f"{path}: missing column(s) {missing}; header is {list(frame.columns)}")
    for column in MOTOR_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna() | frame[column].isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise LabelError(
                f"{path}: line {i + 2} ({frame['tomo_id'].iloc[i]}): column {column!r} holds "
                f"{frame[column].iloc[i]!r}, not a number"
            )
        frame[column] = values.astype(np.float64)
    coords = frame[list(MOTOR_COLUMNS)].to_numpy(np.float64)
    negative = (coords < 0).any(axis=1) & ~(coords == -1).all(axis=1)
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        raise LabelError(
            f"{path}: line {i + 2} (data row {i + 1}, {frame['tomo_id'].iloc[i]}): coordinates "
            f"{coords[i].tolist()} are negative; only -1, -1, -1 (no motor) may be"
        )
    dup = frame["tomo_id"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise LabelError(f"{path}: line {i + 2}: tomo_id {frame['tomo_id'].iloc[i]!r} appears twice")
    return frame


def _first_line(err: BaseException) -> str:
    """The first line of an error's message (pandas' parser errors run over several)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def read_motor_table(path: str | Path) -> dict[str, np.ndarray]:
    """Motors per tomogram from a ``train_labels.csv`` or a one-row-per-tomogram solution/submission CSV.

    Args:
        path: either label format; ``-1`` coordinates mean no motor.

    Returns:
        ``{tomo_id: (n, 3) float64 motors in original voxels}`` (``(0, 3)`` when none).
    """
    _check_text_csv(Path(path))  # before pandas reads the header: name the file if it is no CSV
    header = pd.read_csv(path, nrows=0).columns.str.strip()
    if COUNT_COLUMN in header:
        return {tid: rec.motors for tid, rec in read_labels(path).items()}
    frame = read_sample_submission(path)
    out = {}
    for tid, row in zip(frame["tomo_id"], frame[list(MOTOR_COLUMNS)].to_numpy(np.float64)):
        out[tid] = np.zeros((0, 3)) if (row == -1).any() else row[None, :]
    return out
