"""Label changes: the diff of two label sets, review decisions and pseudo-labels applied, with each motor's source."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from byu_motor.data.label_formats import _check_text_csv, _dict_rows, _header, read_label_file
from byu_motor.data.layout import LabelError, TomoRecord, labels_to_frame

# The competition's hit rule: a prediction within 1000 A of a motor finds it.
MATCH_DISTANCE_A = 1000.0
OFFICIAL_SOURCE = "official"
DECISION_COLUMNS = (
    "tomo_id",
    "kind",
    "decision",
    "cand_z",
    "cand_y",
    "cand_x",
    "score",
    "label_z",
    "label_y",
    "label_x",
)
KINDS = ("fp", "missed", "misplaced")
DECISIONS = ("accept", "keep", "reject", "skip")


def match_motors(a: np.ndarray, b: np.ndarray, radius_vox: float) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of motors ``a[i]``, ``b[j]`` matched one to one within ``radius_vox`` voxels.

    Identical points always pair; the rest pair so that the summed distance is smallest (Hungarian).

    Args:
        a, b: float ``(n, 3)`` and ``(m, 3)`` motors ``(z, y, x)`` in voxels of one tomogram.
        radius_vox: largest distance of a pair, in voxels.
    """
    if not len(a) or not len(b):
        return []
    dist = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    big = 1e9
    cost = np.where(dist <= radius_vox, dist, big)
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if cost[i, j] < big]


@dataclass
class LabelDiff:
    """What changed from label set A to label set B (the terms of the seed's label rounds).

    A motor of B within 1000 A of a motor of A (one to one) is the same motor: ``unchanged`` when at the
    same point, ``moved`` otherwise; other motors of B are ``added``, other motors of A ``removed``.
    """

    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    turned_positive: list[str] = field(default_factory=list)
    turned_negative: list[str] = field(default_factory=list)
    gained: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    motors_a: int = 0
    motors_b: int = 0
    added: int = 0
    removed: int = 0
    moved: int = 0
    unchanged: int = 0

    def lines(self) -> list[str]:
        """The report, one line per count (lists of tomo_ids follow the counts that have them)."""
        out = [
            f"tomograms only in A: {len(self.only_a)}  only in B: {len(self.only_b)}",
            f"turned positive (negative->positive): {len(self.turned_positive)}",
            f"turned negative (positive->negative): {len(self.turned_negative)}",
            f"positive tomograms that gained motors: {len(self.gained)}",
            f"positive tomograms that lost motors: {len(self.lost)}",
            f"motors: {self.motors_a} -> {self.motors_b}: added {self.added}, removed {self.removed}, "
            f"moved {self.moved} (within {MATCH_DISTANCE_A:.0f} A), unchanged {self.unchanged}",
        ]
        for name in ("turned_positive", "turned_negative", "gained", "lost", "only_a", "only_b"):
            ids = getattr(self, name)
            if ids:
                out.append(f"  {name}: {' '.join(ids)}")
        return out


def diff_labels(a: Mapping[str, TomoRecord], b: Mapping[str, TomoRecord]) -> LabelDiff:
    """Compare two label sets tomogram by tomogram (shared tomograms only for motor counts).

    Args:
        a, b: ``{tomo_id: TomoRecord}``; the match radius is ``1000 A / spacing`` of A's record.
    """
    d = LabelDiff(only_a=sorted(set(a) - set(b)), only_b=sorted(set(b) - set(a)))
    for tid in a:
        if tid not in b:
            continue
        ra, rb = a[tid], b[tid]
        d.motors_a += ra.n_motors
        d.motors_b += rb.n_motors
        if not ra.has_motor and rb.has_motor:
            d.turned_positive.append(tid)
        elif ra.has_motor and not rb.has_motor:
            d.turned_negative.append(tid)
        pairs = match_motors(ra.motors, rb.motors, MATCH_DISTANCE_A / ra.spacing_a)
        same = sum(np.array_equal(ra.motors[i], rb.motors[j]) for i, j in pairs)
        d.unchanged += same
        d.moved += len(pairs) - same
        d.added += rb.n_motors - len(pairs)
        d.removed += ra.n_motors - len(pairs)
        if ra.has_motor and rb.has_motor and rb.n_motors - len(pairs) > 0:
            d.gained.append(tid)
        if ra.has_motor and rb.has_motor and ra.n_motors - len(pairs) > 0:
            d.lost.append(tid)
    return d


@dataclass
class SourcedLabels:
    """Labels with the source (``official``, ``review round N``, ``pseudo round N``) and confidence of each motor.

    Args:
        records: ``{tomo_id: TomoRecord}``.
        sources: ``{tomo_id: [(source, conf), ...]}`` aligned with each record's motors.
    """

    records: dict[str, TomoRecord]
    sources: dict[str, list[tuple[str, float]]]

    def to_frame(self) -> pd.DataFrame:
        """Official long format plus ``source`` and ``conf`` (a motor-free row: ``official``, 1.0)."""
        frame = labels_to_frame(self.records)
        extra = []
        for tid, rec in self.records.items():
            extra += self.sources[tid] if rec.has_motor else [(OFFICIAL_SOURCE, 1.0)]
        frame["source"] = [s for s, _ in extra]
        frame["conf"] = [float(c) for _, c in extra]
        return frame

    def write(self, path: str | Path) -> None:
        """Write :meth:`to_frame` as CSV (readable again by :func:`read_sourced_labels`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(path, index=False)

    def add(self, tomo_id: str, motor: Iterable[float], source: str, conf: float) -> None:
        """Append one motor ``(z, y, x)`` (voxels) to ``tomo_id``."""
        rec = self.records[tomo_id]
        motors = np.vstack([rec.motors, np.asarray(list(motor), dtype=np.float64)[None]])
        self._replace(rec, motors)
        self.sources[tomo_id] = [*self.sources[tomo_id], (source, float(conf))]

    def remove(self, tomo_id: str, index: int) -> None:
        """Remove motor ``index`` of ``tomo_id``."""
        rec = self.records[tomo_id]
        self._replace(rec, np.delete(rec.motors, index, axis=0))
        del self.sources[tomo_id][index]

    def _replace(self, rec: TomoRecord, motors: np.ndarray) -> None:
        self.records[rec.tomo_id] = TomoRecord(rec.tomo_id, rec.shape, rec.spacing_a, motors, len(motors))


def read_sourced_labels(path: str | Path) -> SourcedLabels:
    """Read any label file (:func:`read_label_file`) with each motor's ``source`` and ``conf`` when it has them.

    Without those columns every motor is ``official`` with confidence 1.0.
    """
    path = Path(path)
    records = read_label_file(path)
    sources = {tid: [(OFFICIAL_SOURCE, 1.0)] * rec.n_motors for tid, rec in records.items()}
    header, _ = _header(path)
    if {"source", "conf", "Motor axis 0"} <= set(header):
        seen: dict[str, list[tuple[str, float]]] = {tid: [] for tid in records}
        for line, row in _dict_rows(path):
            if float(row["Motor axis 0"]) == -1:
                continue
            try:
                conf = float(row["conf"])
            except ValueError:
                raise LabelError(f"{path}:{line}: conf {row['conf']!r} is not a number") from None
            seen[row["tomo_id"].strip()].append((row["source"].strip() or OFFICIAL_SOURCE, conf))
        sources = seen
    return SourcedLabels(dict(records), sources)


@dataclass(frozen=True)
class Decision:
    """One review decision; coordinates ``(z, y, x)`` in original voxels, ``None`` when absent."""

    line: int
    tomo_id: str
    kind: str
    decision: str
    cand: tuple[float, float, float] | None
    score: float | None
    label: tuple[float, float, float] | None


def _optional(row: Mapping[str, str], names: tuple[str, ...], where: str) -> tuple[float, ...] | None:
    texts = [row[n].strip() for n in names]
    if not any(texts):
        return None
    try:
        return tuple(float(t) for t in texts)
    except ValueError:
        raise LabelError(f"{where}: {', '.join(names)} must be numbers or all empty, got {texts}") from None


def read_decisions(path: str | Path) -> list[Decision]:
    """Read a review decisions CSV (columns :data:`DECISION_COLUMNS`, as the review page exports it).

    Raises:
        LabelError: a missing column, an unknown kind or decision, or coordinates missing for the kind
            (``fp`` needs the candidate, ``missed`` the label, ``misplaced`` both), as ``file:line: reason``.
    """
    path = Path(path)
    _check_text_csv(path)
    header, _ = _header(path)
    missing = [c for c in DECISION_COLUMNS if c not in header]
    if missing:
        raise LabelError(f"{path}: missing column(s) {missing}; header is {header}")
    out = []
    for line, row in _dict_rows(path):
        where = f"{path}:{line}"
        kind, decision = row["kind"].strip(), row["decision"].strip()
        if kind not in KINDS:
            raise LabelError(f"{where}: kind {kind!r} is not one of {KINDS}")
        if decision not in DECISIONS:
            raise LabelError(f"{where}: decision {decision!r} is not one of {DECISIONS}")
        cand = _optional(row, ("cand_z", "cand_y", "cand_x"), where)
        label = _optional(row, ("label_z", "label_y", "label_x"), where)
        score = _optional(row, ("score",), where)
        if kind in ("fp", "misplaced") and cand is None:
            raise LabelError(f"{where}: a {kind} row needs cand_z, cand_y, cand_x")
        if kind in ("missed", "misplaced") and label is None:
            raise LabelError(f"{where}: a {kind} row needs label_z, label_y, label_x")
        out.append(
            Decision(line, row["tomo_id"].strip(), kind, decision, cand, score and score[0], label)  # type: ignore[arg-type]
        )
    return out


def _label_index(labels: SourcedLabels, d: Decision, where: str) -> int:
    """Index of the labelled motor ``d.label`` refers to (the nearest one, within 1 voxel)."""
    motors = labels.records[d.tomo_id].motors
    if len(motors):
        dist = np.linalg.norm(motors - np.asarray(d.label), axis=1)
        if dist.min() <= 1.0:
            return int(dist.argmin())
    raise LabelError(f"{where}: {d.tomo_id} has no labelled motor at {list(d.label or ())}")


def apply_decisions(labels: SourcedLabels, decisions: Iterable[Decision], source: str, path: str = "") -> int:
    """Apply review decisions to ``labels`` in place; returns how many changed a label.

    ``accept``: fp adds the candidate, misplaced moves the label to the candidate (both with ``source`` and
    the candidate's score as confidence), missed changes nothing; ``reject``: missed and misplaced remove
    the label, fp changes nothing; ``keep`` and ``skip`` change nothing.

    Raises:
        LabelError: a tomo_id not in the labels or a label point that is not labelled (``path:line``).
    """
    changed = 0
    for d in decisions:
        where = f"{path}:{d.line}"
        if d.tomo_id not in labels.records:
            raise LabelError(f"{where}: tomo_id {d.tomo_id!r} is not in the labels")
        conf = 1.0 if d.score is None else d.score
        if d.decision == "accept" and d.kind == "fp":
            labels.add(d.tomo_id, d.cand, source, conf)  # type: ignore[arg-type]
        elif d.decision == "accept" and d.kind == "misplaced":
            labels.remove(d.tomo_id, _label_index(labels, d, where))
            labels.add(d.tomo_id, d.cand, source, conf)  # type: ignore[arg-type]
        elif d.decision == "reject" and d.kind in ("missed", "misplaced"):
            labels.remove(d.tomo_id, _label_index(labels, d, where))
        else:
            continue
        changed += 1
    return changed


def add_pseudo_labels(
    labels: SourcedLabels, candidates: Mapping[str, Iterable[Iterable[float]]], min_score: float, source: str
) -> int:
    """Add every candidate ``(z, y, x, score)`` scoring ``>= min_score`` that lies farther than 1000 A from
    every label (and from candidates added before it) of its tomogram; returns how many were added.

    Candidates of tomograms not in ``labels`` are ignored; coordinates are original voxels.
    """
    added = 0
    for tid, cands in candidates.items():
        if tid not in labels.records:
            continue
        for z, y, x, score in sorted(([*c][:4] for c in cands), key=lambda c: -c[3]):
            rec = labels.records[tid]
            if score < min_score:
                continue
            radius = MATCH_DISTANCE_A / rec.spacing_a
            if len(rec.motors) and np.linalg.norm(rec.motors - [z, y, x], axis=1).min() <= radius:
                continue
            labels.add(tid, (z, y, x), source, score)
            added += 1
    return added


def read_candidates(path: str | Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Candidates per tomogram from a CSV ``tomo_id, z, y, x, score`` (original voxels) or a prediction's
    ``.partial.jsonl`` (``byu-motor predict`` writes one beside its submission).

    Raises:
        LabelError: a missing column or a non-numeric value (``file:line: reason``).
    """
    import json

    path = Path(path)
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    if path.name.endswith(".jsonl"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise LabelError(f"{path}:{number}: not a JSON line") from None
            if "tomo_id" in rec and rec.get("status", "ok") == "ok":
                out[str(rec["tomo_id"])] = [tuple(map(float, c[:4])) for c in rec.get("candidates", [])]
        return out
    _check_text_csv(path)
    header, _ = _header(path)
    need = ("tomo_id", "z", "y", "x", "score")
    if not set(need) <= set(header):
        raise LabelError(f"{path}: missing column(s) {sorted(set(need) - set(header))}; header is {header}")
    for line, row in _dict_rows(path):
        try:
            values = tuple(float(row[c]) for c in need[1:])
        except ValueError:
            raise LabelError(f"{path}:{line}: z, y, x, score must be numbers") from None
        out.setdefault(row["tomo_id"].strip(), []).append(values)  # type: ignore[arg-type]
    return out


def write_csv_rows(path: Path, header: Iterable[str], rows: Iterable[Iterable[object]]) -> None:
    """Write a small CSV table (header then rows), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(header))
        writer.writerows(rows)


def apply_labels_file(
    labels_path: str | Path, decisions_path: str | Path, out_path: str | Path, round_number: int = 1
) -> tuple[int, int]:
    """Apply a decisions CSV to a label file and write the corrected labels (official format + source, conf).

    Everything is read and checked before ``out_path`` is written.

    Args:
        labels_path: any label file :func:`read_sourced_labels` reads.
        decisions_path: a CSV with :data:`DECISION_COLUMNS`.
        out_path: the corrected labels; changed motors get source ``review round <round_number>``.
        round_number: the review round.

    Returns:
        ``(decisions that changed a label, decisions read)``.
    """
    labels = read_sourced_labels(labels_path)
    decisions = read_decisions(decisions_path)
    changed = apply_decisions(labels, decisions, f"review round {round_number}", str(decisions_path))
    labels.write(out_path)
    return changed, len(decisions)
