"""Inference runner: test folder -> submission.csv under a time budget, with resume, fault isolation and workers.

What the Kaggle notebook runs. Guarantees: every test tomogram gets exactly one row (a -1 row when it
cannot be read, its prediction fails or the budget runs out); checkpoints are validated before any
tomogram is read; every result is appended to ``<out_csv>.partial.jsonl`` as soon as it exists, so a
rerun after a crash predicts only what is missing, failed, changed or was shed; the CSV is checked
and written atomically.

The parts live by job: :mod:`byu_motor.infer.testset` (which tomograms, and the reader),
:mod:`byu_motor.infer.resume` (the partial file), :mod:`byu_motor.infer.workers` (devices, predictors,
the per-tomogram loop, processes), :mod:`byu_motor.postprocess.threshold_rules` (the threshold) and
:mod:`byu_motor.infer.previews`; this module runs them in order.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from byu_motor import progress
from byu_motor.config import InferConfig
from byu_motor.data.io import read_tomogram
from byu_motor.infer import workers as workers_module
from byu_motor.infer.budget import build_levels, check_budget
from byu_motor.infer.passes import add_shed_rows, fail_over, redo_jobs
from byu_motor.infer.pinned import PinnedPool, pinned_pool
from byu_motor.infer.preflight import check_models, check_output, warn_if_untrained
from byu_motor.infer.previews import write_previews
from byu_motor.infer.resume import (
    PartialFile,
    ResumePlan,
    mark_finished,
    open_partial,
    partial_header,
    plan_resume,
)
from byu_motor.infer.stage_timer import run_stages
from byu_motor.infer.testset import compose_reader, list_test_tomograms, prediction_reader, read_repaired
from byu_motor.infer.workers import (
    Collector,
    PredictorFactory,
    WorkerJob,
    default_predictor_factory,
    resolve_devices,
    run_jobs,
    run_worker,
    split_jobs,
)
from byu_motor.postprocess.submission import check_submission, rows_from_candidates, write_submission
from byu_motor.postprocess.threshold_rules import choose_threshold

log = logging.getLogger(__name__)

# Names other modules, the bench and the tests import from here.
__all__ = [
    "CheckpointInfo",
    "PartialFile",
    "PredictorFactory",
    "WorkerJob",
    "compose_reader",
    "default_predictor_factory",
    "inspect_checkpoint",
    "read_repaired",
    "resolve_devices",
    "run_prediction",
    "run_worker",
]


@dataclass(frozen=True)
class CheckpointInfo:
    """What the runner needs to know about a checkpoint before loading it.

    Args:
        path: the checkpoint file.
        spacing_a: the model's training spacing in Angstrom (z, y, x).
        threshold: the calibrated score threshold stored in the checkpoint, if any.
        fix_wraparound: the model was trained on repaired (+127 wraparound) tomograms, so inference repairs too.
    """

    path: str
    spacing_a: tuple[float, ...]
    threshold: float | None = None
    fix_wraparound: bool = False


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """Validate a checkpoint without building its model (reads the stored config and extra values).

    Raises:
        ValueError / FileNotFoundError: from :func:`byu_motor.models.checkpoint.read_checkpoint_config`,
            naming the file.
    """
    from byu_motor.models.checkpoint import read_checkpoint_config

    header = read_checkpoint_config(path)
    warn_if_untrained(path, header.extra)
    thr = (header.extra or {}).get("threshold")
    return CheckpointInfo(
        path=str(path),
        spacing_a=tuple(float(s) for s in header.config.data.spacing_a),
        threshold=None if thr is None else float(thr),
        fix_wraparound=bool(header.config.data.fix_wraparound),
    )


def _inspect_all(paths: list[str], inspector: Callable[[str], CheckpointInfo]) -> list[CheckpointInfo]:
    """Validate every checkpoint (before any tomogram is read); an unusable one raises, naming the file."""
    if not paths:
        raise ValueError("run_prediction needs at least one checkpoint")
    infos = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        try:
            infos.append(inspector(path))
        except Exception as err:
            raise ValueError(f"checkpoint {path} is not usable: {err}") from err
    return infos


def _preflight(
    out_csv: str | os.PathLike,
    devices: str | Sequence[str] | None,
    paths: list[str],
    inspector: Callable[[str], CheckpointInfo],
    predictor_factory: PredictorFactory | None,
) -> tuple[Path, list[str], list[CheckpointInfo]]:
    """Everything checked before the first tomogram; only then is the output folder created.

    The output path (:func:`check_output`), the devices (:func:`resolve_devices`), every checkpoint's header
    (``inspector``), and with the default predictor every model built, loaded strictly and run once on the
    first device (:func:`check_models`, which fills the in-process spec cache). Each failure is a
    ``ValueError`` (or ``FileNotFoundError``) naming the path, device or checkpoint at fault.

    Returns:
        ``(resolved out_csv, devices, checkpoint infos)``.
    """
    out_path = check_output(out_csv)
    device_list = resolve_devices(devices)
    infos = _inspect_all(paths, inspector)
    if predictor_factory is None:  # a foreign predictor loads its own models: nothing to check here
        check_models(paths, device_list, workers_module._SPEC_CACHE)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return out_path, device_list, infos


def run_prediction(
    data_dir: str | os.PathLike,
    checkpoints: Sequence[str | os.PathLike],
    out_csv: str | os.PathLike,
    config: InferConfig | None = None,
    time_budget_s: float | None = None,
    preview_dir: str | os.PathLike | None = None,
    labels_csv: str | os.PathLike | None = None,
    devices: str | Sequence[str] | None = None,
    predictor_factory: PredictorFactory | None = None,
    reader: Callable[[Any], Any] = read_tomogram,
    checkpoint_inspector: Callable[[str], CheckpointInfo] = inspect_checkpoint,
    keep_partial: bool = False,
) -> pd.DataFrame:
    """Predict every test tomogram of ``data_dir`` and write the submission CSV.

    Order of work: the preflight (:func:`_preflight`, before anything is created or read); list
    ``data_dir/test`` (``sample_submission.csv`` fixes the rows and their order); resume; predict the rest on
    each device, shedding extras to stay inside ``time_budget_s``; threshold; write the CSV; previews.

    Resume reuses a row only when its input is unchanged and it was predicted at level 0; failed and changed
    rows are redone, shed-level ones after the rest while time remains (:mod:`byu_motor.infer.resume`).

    Args:
        data_dir: competition folder holding ``test/`` (and optionally ``sample_submission.csv``).
        checkpoints: checkpoint files, the most valuable first (budget shedding drops from the end).
        out_csv: submission path; ``<out_csv resolved>.partial.jsonl`` keeps per-tomogram candidates (so
            ``./a/../sub.csv`` and ``sub.csv`` share it); its folder is created after the preflight.
        config: inference settings (default :class:`InferConfig`).
        time_budget_s: wall-clock budget in seconds for this call, or ``None`` for no limit.
        preview_dir: write a PNG per tomogram here (``config.preview_top`` best only when > 0).
        labels_csv: ``train_labels.csv`` or a solution CSV (``test_labels.csv``); previews then show the
            ground truth.
        devices: see :func:`resolve_devices` (default: every GPU, else the CPU).
        predictor_factory: ``factory(checkpoint_paths, config, device) -> object with predict_volume``
            (and ``predict_heatmap`` for previews); default builds a :class:`Predictor`. Must be picklable
            (a module-level function or class) when several devices are used.
        reader: ``reader(folder) -> uint8 (Z, Y, X)``; default :func:`read_tomogram`.
        checkpoint_inspector: validates a checkpoint and returns its :class:`CheckpointInfo`.
        keep_partial: keep the partial file after a finished run (by default only an interrupted run keeps it).

    Returns:
        The submission DataFrame (``tomo_id, Motor axis 0/1/2`` as int64), the run summary in ``df.attrs
        ["summary"]`` and ``df.attrs["candidates"]`` (``{tomo_id: [[z, y, x, score], ...]}``, best first).

    Raises:
        ValueError (naming it): no checkpoint, unknown setting, budget not finite > 0, bad checkpoint/device/output.
    """
    t_start = time.monotonic()
    time_budget_s = check_budget(time_budget_s)  # None or > 0 (0, < 0, NaN, inf: ValueError before any work)
    budget_end = time_budget_s and time.time() + time_budget_s  # None: no budget
    config = config or InferConfig()
    data_dir, paths = Path(data_dir), [str(p) for p in checkpoints]
    out_csv, device_list, infos = _preflight(out_csv, devices, paths, checkpoint_inspector, predictor_factory)
    ids, folders = list_test_tomograms(data_dir)
    own_views = [config.members.get(p, {}).get("tta") for p in paths]  # each member's own views, if any
    ladder = build_levels(config, [Path(p).name for p in paths], own_views)
    levels = ladder[: 1 if time_budget_s is None else None]
    partial = open_partial(Path(f"{out_csv}.partial.jsonl"), out_csv, partial_header(data_dir, paths, config))
    plan = plan_resume(partial, ids, folders, [lv.name for lv in ladder])
    pool = pinned_pool(config.prefetch, device_list, config.resample_on_device)  # decode into pinned memory
    reader = prediction_reader(reader, config, any(info.fix_wraparound for info in infos), pool)
    template = WorkerJob(0, device_list[0], [], paths, config, levels, budget_end, infos[0].spacing_a,
                         predictor_factory or default_predictor_factory, reader)  # fmt: skip
    collect = _predict(partial, template, plan, device_list, pool)
    records = partial.records
    ok = {t: records[t] for t in ids if t in records and records[t].get("status") == "ok"}
    candidates = {t: rec["candidates"] for t, rec in ok.items()}
    threshold, threshold_source = choose_threshold(config, [i.threshold for i in infos], candidates)
    not_reached = _not_reached(ids, folders, records)
    df = _write_csv(ids, ok, candidates, threshold, out_csv)
    summary = _summary(
        df, ids, folders, records, (threshold, threshold_source), plan, not_reached, collect, device_list
    )
    summary["finished"] = mark_finished(partial, ids, folders, ladder[0].name, keep=keep_partial)
    if preview_dir is not None:
        summary["previews"] = _previews(Path(preview_dir), ids, ok, folders, threshold, template, labels_csv)
    summary.update(_budget_fields(time_budget_s, time.monotonic() - t_start))
    df.attrs.update(summary=summary, candidates=candidates)
    return df


def _previews(preview_dir: Path, *args: Any) -> int:
    """:func:`write_previews` (same arguments) after a status line; returns the number of PNGs written."""
    progress.status(f"previews: drawing the predicted tomograms into {preview_dir}")
    return write_previews(preview_dir, *args)


def _budget_fields(budget_s: float | None, used_s: float) -> dict[str, Any]:
    """Summary fields: ``seconds`` = ``used_s`` (this call's wall time), ``budget_s`` (``None``: no budget) and
    ``slack_s`` = budget - used (negative: overrun)."""
    used_s = round(used_s, 3)
    slack = None if budget_s is None else round(budget_s - used_s, 3)
    return {"seconds": used_s, "budget_s": budget_s, "used_s": used_s, "slack_s": slack}


def _predict(
    partial: PartialFile, template: WorkerJob, plan: ResumePlan, devices: list[str], pool: PinnedPool | None
) -> Collector:
    """Run the workers on ``plan.pending``, then on ``plan.redo`` (and this run's own shed-level rows, such as
    the first tomogram, which the planner predicts cheaply before it has measured anything) while time remains,
    storing each result in ``partial`` as it arrives; closes ``partial`` and ``pool`` in any case."""
    collect = _ShowingCollector(partial)
    budget = "" if template.budget_end is None else f", budget {template.budget_end - time.time():.0f} s"
    progress.status(
        f"predict: {len(plan.pending)} tomogram(s) to predict ({len(plan.reused)} resumed), "
        f"{len(template.checkpoints)} checkpoint(s) on {','.join(devices)}{budget}"
    )
    try:
        jobs = split_jobs(template, plan.pending, devices)
        with progress.bar(len(plan.pending), "predict", unit="tomo", disable=not plan.pending) as collect.bar:
            run_jobs(jobs, collect)
        fail_over(template, jobs, collect, partial.records)
        add_shed_rows(plan, plan.pending, partial.records, [lv.name for lv in template.levels])
        # a phase that stopped for lack of time leaves none for redos (its -1 rows matter more)
        redo = [] if collect.stopped else redo_jobs(template, plan, devices, partial.records)
        if redo:
            with progress.bar(len(plan.redo), "predict again (shed rows)", unit="tomo") as collect.bar:
                run_jobs(redo, collect)
    finally:
        partial.close()
        if pool is not None:
            pool.close()
        collect.ended = time.monotonic()
    return collect


@dataclasses.dataclass
class _ShowingCollector(Collector):
    """A :class:`Collector` that also advances ``bar`` per result and shows the budget level it ran at."""

    bar: Any = None

    def __call__(self, event: dict[str, Any]) -> None:
        super().__call__(event)
        if event.get("event") == "result" and self.bar is not None:
            if event.get("level"):
                self.bar.set_postfix_str(f"level {event['level']}")
            self.bar.update(1)


def _not_reached(ids: list[str], folders: dict[str, Path], records: dict[str, dict[str, Any]]) -> list[str]:
    """Tomograms with a folder but no result (the budget ran out or a worker died); warns when any."""
    not_reached = [t for t in ids if t in folders and t not in records]
    if not_reached:
        log.warning(
            "%d tomogram(s) were not predicted (time budget or a failed worker) and get -1: %s",
            len(not_reached),
            ", ".join(not_reached[:10]),
        )
    return not_reached


def _write_csv(
    ids: list[str],
    ok: dict[str, dict[str, Any]],
    candidates: dict[str, list[list[float]]],
    threshold: float,
    out_csv: Path,
) -> pd.DataFrame:
    """The submission rows (one per id, in order), checked, then written atomically to ``out_csv``."""
    shapes = {t: rec["shape"] for t, rec in ok.items() if rec.get("shape")}
    df = rows_from_candidates(ids, candidates, threshold, shapes)
    check_submission(df, ids)
    write_submission(df, out_csv)
    return df


def _summary(
    df: pd.DataFrame,
    ids: list[str],
    folders: dict[str, Path],
    records: dict[str, dict[str, Any]],
    threshold: tuple[float, str],
    plan: ResumePlan,
    not_reached: list[str],
    collect: Collector,
    devices: list[str],
) -> dict[str, Any]:
    """The run summary (``df.attrs["summary"]``) but for ``previews`` and ``seconds``, which the caller adds."""
    statuses = Counter(records[t].get("status") for t in ids if t in records)
    ok = [t for t in ids if t in records and records[t].get("status") == "ok"]
    return {
        "rows": len(df),
        "detections": int((df["Motor axis 0"] >= 0).sum()),
        "threshold": threshold[0],
        "threshold_source": threshold[1],
        "predicted": statuses.get("ok", 0),
        "read_errors": statuses.get("read_error", 0),
        "predict_errors": statuses.get("predict_error", 0),
        "missing_folders": sum(t not in folders for t in ids),
        "not_reached": sum(t not in collect.cut for t in not_reached),  # never started
        "cut": len(collect.cut),  # started, cut short at the deadline (-1 rows; a resume retries them)
        "resumed": len(plan.reused),
        "redo_offered": len(plan.redo),
        "levels": dict(Counter(records[t].get("level") for t in ok)),
        "shed": collect.changes,
        "worker_crashes": collect.crashes,
        "devices": devices,
        "stages": run_stages([records[t] for t in ok if t not in plan.reused], collect.ended),
    }
