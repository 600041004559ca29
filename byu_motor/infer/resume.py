"""Resume file of a prediction run: one JSON line per finished tomogram, under a header naming what they depend on.

What a rerun keeps (:func:`plan_resume`): a recorded row is reused only when its tomogram's folder is
unchanged (same listing: names, sizes, mtimes, :func:`folder_fingerprint`), it was predicted (not a
``read_error`` / ``predict_error``) and at level 0 of the run's budget ladder. Failed rows and rows whose
input changed are predicted again with the never-predicted tomograms; rows predicted at a shed (cheaper)
level are kept as a fallback and redone after those, only while time remains. A redo never loses a row:
a failed or no-better redo leaves the old row standing (:func:`supersedes`), in memory and on reload.

A finished run (every row predicted at level 0) removes its partial file: only an interrupted run leaves
one (:func:`mark_finished`). Asked to keep it (``keep=True``, ``predict --keep-partial``), it leaves a marker
``<out>.partial.done`` beside the partial file (:func:`finish_marker`) instead; a later run with the same
output then reuses the finished rows (still checked as above) while the CSV exists, and removing the CSV
asks for a fresh start: the partial file is moved to ``<out>.partial.jsonl.prev`` and everything is
predicted again (:func:`open_partial`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from byu_motor.config import INFER_NEUTRAL_RUN_FIELDS, InferConfig

log = logging.getLogger(__name__)

# /2: rows carry the input fingerprint ("input") and the budget level index ("level_index"); a /1 file is
# moved aside (its rows cannot be checked against their input).
PARTIAL_FORMAT = "byu_motor.partial/2"
FAILED = frozenset({"read_error", "predict_error"})
# InferConfig fields that change neither candidates nor their scores: a partial file made with other
# values of these is still valid (thresholds are applied at the end, from the stored candidates).
_RESULT_NEUTRAL_FIELDS = frozenset(
    {"threshold", "threshold_value", "threshold_quantile", *INFER_NEUTRAL_RUN_FIELDS}
)


def supersedes(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Whether record ``new`` replaces ``old`` for the same tomogram.

    It does unless ``old`` is a prediction of the same input (same ``input`` fingerprint) and ``new`` is a
    failure or was predicted at a level no richer (``level_index`` not lower): a redo of a shed-level row
    that fails or sheds as much keeps the old row.
    """
    if old is None or old.get("status") != "ok" or old.get("input") != new.get("input"):
        return True
    if new.get("status") != "ok":
        return False
    return int(new.get("level_index", 0)) < int(old.get("level_index", 0))


class PartialFile:
    """Append-only JSON-lines record of finished tomograms: a header line, then one line per result.

    Later lines for the same tomogram replace earlier ones by :func:`supersedes`, on append and on load.

    Args:
        path: the ``.partial.jsonl`` file.
        header: what the results depend on (checkpoints, inference settings, data folder); an existing
            file with another header is moved aside (``.stale``) and a fresh one started.

    Attributes:
        stamps: ``{tomo_id: fields}`` added to each appended record of that tomogram (the runner puts the
            input fingerprint there).
        level_index: ``{level name: index}`` of the run's budget ladder; an appended record with a known
            ``level`` name gets its ``level_index``.
    """

    def __init__(self, path: str | os.PathLike, header: dict[str, Any]):
        self.path = Path(path)
        self.header = {"format": PARTIAL_FORMAT, **json.loads(json.dumps(header))}
        self.records: dict[str, dict[str, Any]] = {}
        self.stamps: dict[str, dict[str, Any]] = {}
        self.level_index: dict[str, int] = {}
        self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = open(self.path, "a", encoding="utf-8")  # closed in close()
        if new:
            self._write(self.header)
        elif not self._ends_with_newline():
            self._fh.write("\n")  # a crash mid-line left a fragment: never glue the next record to it

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def _load(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            header = json.loads(lines[0])
        except (json.JSONDecodeError, IndexError):
            header = None
        if header != self.header:
            stale = self.path.with_name(self.path.name + f".stale-{int(time.time())}")
            log.warning(
                "%s was made with other checkpoints, settings or data; moved to %s and starting afresh",
                self.path,
                stale.name,
            )
            os.replace(self.path, stale)
            return
        for number, line in enumerate(lines[1:], start=2):
            try:
                rec = json.loads(line)
                tomo_id = str(rec["tomo_id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("%s line %d is incomplete (interrupted write); ignoring it", self.path, number)
                continue
            if supersedes(rec, self.records.get(tomo_id)):
                self.records[tomo_id] = rec

    def _write(self, obj: dict[str, Any]) -> None:
        self._fh.write(json.dumps(obj) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, record: dict[str, Any]) -> None:
        """Store one tomogram's result (written and synced before returning), stamped with ``stamps`` and
        ``level_index``; it replaces the stored row only by :func:`supersedes`."""
        rec = {k: v for k, v in record.items() if k != "event"}
        tomo_id = str(rec["tomo_id"])
        rec.update(self.stamps.get(tomo_id, {}))
        if rec.get("level") in self.level_index:
            rec["level_index"] = self.level_index[rec["level"]]
        if supersedes(rec, self.records.get(tomo_id)):
            self.records[tomo_id] = rec
        else:
            log.warning("tomogram %s: the redo did not improve on its stored row, which stands", tomo_id)
        self._write(rec)

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


def _checkpoint_key(path: Path) -> list:
    """``[resolved path, size in bytes, mtime in ns]`` of a checkpoint, read with one ``stat``."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def partial_header(data_dir: Path, checkpoints: Sequence[str], config: InferConfig) -> dict[str, Any]:
    """The header of a run's partial file: what its results depend on.

    Args:
        data_dir: the competition folder (stored resolved).
        checkpoints: checkpoint paths, each stored as ``[resolved path, size in bytes, mtime in ns]``.
        config: inference settings; the fields in ``_RESULT_NEUTRAL_FIELDS`` are left out, so changing
            them keeps the stored results.

    Returns:
        A JSON-serialisable dict (``data_dir``, ``checkpoints``, ``infer``).
    """
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _RESULT_NEUTRAL_FIELDS}
    return {
        "data_dir": str(data_dir.resolve()),
        # size and modification time too: a checkpoint rewritten in place (retrained, or given its second
        # stage) must not reuse the results of the old weights
        "checkpoints": [_checkpoint_key(Path(c)) for c in checkpoints],
        "infer": settings,
    }


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """A hash of a tomogram's folder listing (name, size, mtime of each entry); no file is read.

    A repaired or replaced slice, an added or removed one, changes it. A plain file (a single-file
    tomogram) is hashed by its own name, size and mtime; a missing path gives ``"missing"``.
    """
    path = Path(folder)
    try:
        if path.is_dir():
            with os.scandir(path) as it:
                entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in it)
        else:
            st = path.stat()
            entries = [(path.name, st.st_size, st.st_mtime_ns)]
    except OSError:
        return "missing"
    return hashlib.sha1(json.dumps(entries).encode()).hexdigest()[:16]


@dataclass
class ResumePlan:
    """What a run takes from its partial file and what it predicts.

    Args:
        reused: tomo_ids whose stored row stands as final, in output order.
        pending: ``(tomo_id, folder)`` to predict first: never predicted, failed, or input changed.
        redo: ``(tomo_id, folder)`` of rows predicted at a shed level, redone after ``pending`` while time
            remains (their stored row is the fallback).
        redo_level: the cheapest ladder index at which a redo can still improve a row (exclusive bound).
    """

    reused: list[str] = field(default_factory=list)
    pending: list[tuple[str, str]] = field(default_factory=list)
    redo: list[tuple[str, str]] = field(default_factory=list)
    redo_level: int = 0

    def add_redo(self, item: tuple[str, str], level_index: int) -> None:
        """Queue ``(tomo_id, folder)``, whose row stands at ladder index ``level_index``, for a redo."""
        self.redo.append(item)
        self.redo_level = max(self.redo_level, level_index)


def plan_resume(
    partial: PartialFile, ids: Sequence[str], folders: dict[str, Path], level_names: Sequence[str]
) -> ResumePlan:
    """Split the expected tomograms into reused rows, tomograms to predict, and shed-level rows to redo.

    Also stamps every tomogram's input fingerprint into ``partial`` (``stamps``) and drops from
    ``partial.records`` the rows that no longer hold: their input changed, or their folder is gone.

    Args:
        partial: the opened partial file.
        ids: expected tomo_ids in output order.
        folders: ``{tomo_id: folder}`` of the tomograms present.
        level_names: the names of the run's full budget ladder, level 0 first.

    Returns:
        The :class:`ResumePlan`; tomograms without a folder are in none of its lists (they get -1 rows).
    """
    plan = ResumePlan()
    partial.level_index = {name: k for k, name in enumerate(level_names)}
    changed = []
    for tomo_id in ids:
        rec = partial.records.get(tomo_id)
        if tomo_id not in folders:
            partial.records.pop(tomo_id, None)
            continue
        item = (tomo_id, str(folders[tomo_id]))
        fingerprint = folder_fingerprint(folders[tomo_id])
        partial.stamps[tomo_id] = {"input": fingerprint}
        if rec is not None and rec.get("input") != fingerprint:
            changed.append(tomo_id)
            del partial.records[tomo_id]
            rec = None
        if rec is None or rec.get("status") in FAILED:
            plan.pending.append(item)
        elif rec.get("level") != level_names[0]:
            plan.add_redo(item, partial.level_index.get(rec.get("level"), len(level_names)))
        else:
            plan.reused.append(tomo_id)
    if changed:
        log.info("input changed since their rows were stored, predicting again: %s", ", ".join(changed))
    if plan.reused or plan.redo:
        log.info(
            "resuming from %s: %d of %d rows reused, %d to predict, %d shed-level rows to redo if time remains",
            partial.path,
            len(plan.reused),
            len(ids),
            len(plan.pending),
            len(plan.redo),
        )
    return plan


def finish_marker(partial_path: Path) -> Path:
    """The marker a finished run leaves beside ``<out>.partial.jsonl``: ``<out>.partial.done``."""
    return partial_path.with_name(partial_path.name.removesuffix(".jsonl") + ".done")


def open_partial(partial_path: Path, out_csv: Path, header: dict[str, Any]) -> PartialFile:
    """Open the run's partial file, honouring the finished-run marker.

    A marker without the CSV means the user removed the CSV of a finished run to start afresh: the partial
    file is moved to ``<partial>.prev`` (replacing an older one). The marker is removed in any case: this
    run appends, and only its own end may declare the file finished again.
    """
    marker = finish_marker(partial_path)
    if marker.exists():
        if not out_csv.exists() and partial_path.exists():
            prev = partial_path.with_name(partial_path.name + ".prev")
            log.info("%s is gone: starting afresh (the finished run's rows moved to %s)", out_csv, prev.name)
            os.replace(partial_path, prev)
        marker.unlink()
    return PartialFile(partial_path, header)


def mark_finished(
    partial: PartialFile, ids: Sequence[str], folders: dict[str, Path], level0: str, keep: bool = True
) -> bool:
    """Close a finished run: every tomogram with a folder has a row predicted at ``level0``.

    A finished run removes its partial file, or with ``keep`` leaves the finished-run marker beside it; an
    unfinished one keeps the file for the next run to resume from.

    Returns:
        Whether the run counted as finished.
    """
    finished = all(
        partial.records.get(t, {}).get("status") == "ok" and partial.records[t].get("level") == level0
        for t in ids
        if t in folders
    )
    if finished and keep:
        finish_marker(partial.path).write_text(json.dumps({"rows": len(ids)}) + "\n", encoding="utf-8")
    elif finished:
        partial.path.unlink(missing_ok=True)
    return finished
