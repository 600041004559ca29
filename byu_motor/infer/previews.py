"""PNG previews of a prediction run (matplotlib figures, :mod:`byu_motor.viz`): one image per predicted tomogram, best scores first, inside the budget."""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from byu_motor.config import InferConfig
from byu_motor.infer.workers import WorkerJob

log = logging.getLogger(__name__)


def write_previews(
    preview_dir: Path,
    ids: list[str],
    ok: dict[str, dict[str, Any]],
    folders: dict[str, Path],
    threshold: float,
    job: WorkerJob,
    labels_csv: str | os.PathLike | None,
) -> int:
    """PNG previews of predicted tomograms (best scores first); stops early when the budget is short.

    Args:
        preview_dir: one ``<tomo_id>.png`` is written here per tomogram.
        ids: tomo_ids in output order (previews are written in this order).
        ok: the partial-file records of the tomograms predicted without error (``candidates`` best first,
            ``spacing_a``).
        folders: ``{tomo_id: folder}``.
        threshold: the run's score threshold (drawn on the preview).
        job: the run's settings, as given to its first worker: ``config`` (``preview_top > 0`` keeps only
            that many best-scoring tomograms), all ``checkpoints``, ``device``, ``predictor_factory`` (its
            predictor draws the heatmap with ``predict_heatmap``), ``reader`` and ``budget_end``.
        labels_csv: a motor table; previews then show the ground truth.

    Returns:
        The number of previews written (a failed preview is logged and skipped).
    """
    from byu_motor.viz import require_matplotlib, save_preview

    try:
        require_matplotlib()
    except ImportError as err:
        log.warning("previews skipped: %s", err)
        return 0

    truth: dict[str, Any] = {}
    if labels_csv is not None:
        from byu_motor.data.layout import read_motor_table

        truth = read_motor_table(labels_csv)
    config, budget_end = job.config, job.budget_end
    chosen = _chosen(ids, ok, config.preview_top)
    predictor = None
    written = 0
    slowest = 0.0
    for tomo_id in chosen:
        if budget_end is not None and time.time() + 2 * slowest > budget_end:
            log.warning(
                "previews: stopping after %d of %d, the time budget is nearly spent", written, len(chosen)
            )
            break
        t0 = time.monotonic()
        try:
            if predictor is None:
                predictor = job.predictor_factory(job.checkpoints, config, job.device)
            volume = job.reader(folders[tomo_id])
            save = functools.partial(save_preview, preview_dir / f"{tomo_id}.png", truth=truth.get(tomo_id))
            _save_one(save, tomo_id, ok[tomo_id], volume, predictor, config, threshold)
            written += 1
        except Exception as err:
            log.warning("preview of %s failed: %s: %s", tomo_id, type(err).__name__, err)
        slowest = max(slowest, time.monotonic() - t0)
    return written


def _chosen(ids: list[str], ok: dict[str, dict[str, Any]], preview_top: int) -> list[str]:
    """The tomograms to preview, in output order: all predicted ones, or the ``preview_top`` best scoring."""

    def top(t: str) -> float:
        cands = ok[t]["candidates"]
        return cands[0][3] if cands else -math.inf

    chosen = sorted(ok, key=top, reverse=True)
    if preview_top > 0:
        chosen = chosen[:preview_top]
    return [t for t in ids if t in chosen]


def _save_one(
    save: Callable[..., Any],
    tomo_id: str,
    record: dict[str, Any],
    volume: Any,
    predictor: Any,
    config: InferConfig,
    threshold: float,
) -> None:
    """Predict one tomogram's heatmap and save its preview (``save``) with the candidates stored for it."""
    spacing_a = float(record.get("spacing_a") or config.test_spacing_a)
    heatmap, grid = predictor.predict_heatmap(volume, spacing_a)
    # the figure's caption adds the spacing, best score, threshold and outcome to the title
    save(volume, record["candidates"], heatmap, grid, title=tomo_id, spacing_a=spacing_a, threshold=threshold)
