"""Resume file of a prediction run: one JSON line per finished tomogram, under a header naming what they depend on."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from byu_motor.config import InferConfig

log = logging.getLogger(__name__)

PARTIAL_FORMAT = "byu_motor.partial/1"
# InferConfig fields that change neither candidates nor their scores: a partial file made with other
# values of these is still valid (thresholds are applied at the end, from the stored candidates).
_RESULT_NEUTRAL_FIELDS = frozenset(
    {
        "threshold",
        "threshold_value",
        "threshold_quantile",
        "prefetch",
        "loader_threads",
        "read_threads",
        "budget_safety",
        "preview_top",
        "compile",
        "batch_windows",
    }
)


class PartialFile:
    """Append-only JSON-lines record of finished tomograms: a header line, then one line per tomogram.

    Args:
        path: the ``.partial.jsonl`` file.
        header: what the results depend on (checkpoints, inference settings, data folder); an existing
            file with another header is moved aside (``.stale``) and a fresh one started.
    """

    def __init__(self, path: str | os.PathLike, header: dict[str, Any]):
        self.path = Path(path)
        self.header = {"format": PARTIAL_FORMAT, **json.loads(json.dumps(header))}
        self.records: dict[str, dict[str, Any]] = {}
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
                self.records[str(rec["tomo_id"])] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("%s line %d is incomplete (interrupted write); ignoring it", self.path, number)

    def _write(self, obj: dict[str, Any]) -> None:
        self._fh.write(json.dumps(obj) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, record: dict[str, Any]) -> None:
        """Store one tomogram's result (written and synced before returning)."""
        rec = {k: v for k, v in record.items() if k != "event"}
        self.records[str(rec["tomo_id"])] = rec
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


def split_resumed(
    partial: PartialFile, ids: Sequence[str], folders: dict[str, Path]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Which tomograms the partial file already holds, and which are left to predict.

    Every recorded tomogram counts as done, failures included (they are deterministic: a corrupt file stays
    corrupt); tomograms without a folder are in neither list (they get -1 rows).

    Args:
        partial: the opened partial file.
        ids: expected tomo_ids in output order.
        folders: ``{tomo_id: folder}`` of the tomograms present.

    Returns:
        ``(resumed tomo_ids, pending (tomo_id, folder) pairs)``, both in output order.
    """
    resumed = [t for t in ids if t in partial.records]
    if resumed:
        log.info("resuming: %d of %d tomograms already done in %s", len(resumed), len(ids), partial.path)
    pending = [(t, str(folders[t])) for t in ids if t in folders and t not in partial.records]
    return resumed, pending
