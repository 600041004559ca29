"""``metrics.jsonl``: one JSON object per logged training event, trimmed back to the resume point on restart."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append-only event log of a run (written by the main process only).

    Every row holds ``event``, ``step``, ``loss``, ``lr``, ``f2``, ``threshold`` (null where they do not
    apply), then any event-specific values, then ``elapsed_s``.

    Args:
        path: the ``metrics.jsonl`` file.
        elapsed: returns the run's training seconds so far (including time before a resume).
    """

    def __init__(self, path: str | Path, elapsed: Callable[[], float]):
        self.path = Path(path)
        self.elapsed = elapsed

    def trim(self, step: int) -> None:
        """Drop rows logged after ``step`` (the resume point; 0 for a fresh start) so steps are never repeated."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if int(json.loads(line)["step"]) <= step:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill
        self.path.write_text("".join(x + "\n" for x in keep), encoding="utf-8")

    def write(self, event: str, step: int, **values: Any) -> None:
        """Append one row for ``event`` (``"train"``, ``"val"``, ``"mine"``, ...) at ``step``."""
        row = {"event": event, "step": step, "loss": None, "lr": None, "f2": None, "threshold": None}
        row.update(values)
        row["elapsed_s"] = round(self.elapsed(), 3)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
