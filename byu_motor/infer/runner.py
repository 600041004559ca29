"""Inference runner: test folder -> submission.csv under a time budget, with resume, fault isolation and workers.

What the Kaggle notebook runs. Guarantees: every test tomogram gets exactly one row (a -1 row when it
cannot be read, its prediction fails or the budget runs out); checkpoints are validated before any
tomogram is read; every result is appended to ``<out_csv>.partial.jsonl`` as soon as it exists, so a
rerun after a crash predicts only what is missing; the CSV is checked and written atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import math
import os
import queue as queue_module
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from byu_motor.config import InferConfig
from byu_motor.data.io import read_tomogram
from byu_motor.infer.budget import BudgetPlanner, PlanLevel, build_levels
from byu_motor.infer.loader import PrefetchLoader
from byu_motor.infer.spacing import resolve_spacing
from byu_motor.postprocess.submission import check_submission, rows_from_candidates, write_submission

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

PredictorFactory = Callable[[list[str], InferConfig, str], Any]


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
    thr = (header.extra or {}).get("threshold")
    return CheckpointInfo(
        path=str(path),
        spacing_a=tuple(float(s) for s in header.config.data.spacing_a),
        threshold=None if thr is None else float(thr),
        fix_wraparound=bool(header.config.data.fix_wraparound),
    )


def read_repaired(folder: str | os.PathLike, base_reader: Callable[[Any], Any] = read_tomogram) -> Any:
    """Read a tomogram and repair it when it is wrongly quantised (the +127 wraparound), as training did."""
    from byu_motor.data.io import detect_wraparound, fix_wraparound

    volume = base_reader(folder)
    if detect_wraparound(volume):
        log.warning("%s: wrongly quantised tomogram (+127 wraparound) repaired before prediction", folder)
        volume = fix_wraparound(volume, inplace=True)
    return volume


def compose_reader(
    base_reader: Callable[[Any], Any] = read_tomogram, fix_wraparound: bool = True
) -> Callable[[Any], Any]:
    """``reader(folder) -> volume`` as prediction sees a tomogram: ``base_reader``, then the wraparound repair
    when asked (:func:`read_repaired`).

    The runner, validation and the bench read through it, so all predict the same volume.
    """
    reader = base_reader
    if fix_wraparound:
        reader = functools.partial(read_repaired, base_reader=reader)
    return reader


_SPEC_CACHE: dict[tuple[str, str], Any] = {}


def default_predictor_factory(checkpoints: list[str], config: InferConfig, device: str) -> Any:
    """Build a :class:`byu_motor.infer.predictor.Predictor` for ``checkpoints`` on ``device``.

    Models are loaded once per process and device and shared by the predictors of all budget levels.
    """
    from byu_motor.infer.predictor import Predictor
    from byu_motor.infer.recipe import apply_member
    from byu_motor.infer.spec import ModelSpec

    specs = []
    for path in checkpoints:
        key = (str(path), str(device))
        if key not in _SPEC_CACHE:
            _SPEC_CACHE[key] = ModelSpec.from_checkpoint(path, device)
        specs.append(apply_member(_SPEC_CACHE[key], config.members.get(str(path))))
    return Predictor(specs, config, device)


def resolve_devices(devices: str | Sequence[str] | None) -> list[str]:
    """Devices to run on: ``None``/``"auto"`` = every visible GPU, else the CPU; ``"cuda"`` = every GPU.

    Args:
        devices: ``None``, ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:0,cuda:1"`` or a list of device names.

    Raises:
        ValueError: ``"cuda"`` asked on a machine without a GPU.
    """
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    devices = list(devices or ["auto"])
    if devices in (["auto"], ["cuda"]):
        import torch

        n_gpus = torch.cuda.device_count()
        if n_gpus == 0 and devices == ["cuda"]:
            raise ValueError("--devices cuda: no CUDA device is visible")
        return [f"cuda:{i}" for i in range(n_gpus)] or ["cpu"]
    return devices


# ----------------------------------------------------------------------------------------------------------
# Worker: predicts its share of tomograms and emits events (results, log lines, a final summary).


@dataclass
class WorkerJob:
    """Everything a worker needs; picklable so a spawned process can receive it.

    Args:
        worker: index of the worker (for logs).
        device: torch device name.
        items: ``(tomo_id, folder)`` pairs to predict, in order.
        checkpoints: all checkpoint paths (a level uses a subset).
        config: inference settings of level 0.
        levels: the shedding ladder (a single level when there is no budget).
        budget_end: ``time.time()`` at which the budget ends, or ``None``.
        model_spacing_a: the first model's spacing (for the ``longest_edge`` spacing policy).
        predictor_factory: ``factory(checkpoints, config, device) -> predictor``.
        reader: ``reader(folder) -> uint8 volume``.
    """

    worker: int
    device: str
    items: list[tuple[str, str]]
    checkpoints: list[str]
    config: InferConfig
    levels: list[PlanLevel]
    budget_end: float | None
    model_spacing_a: tuple[float, ...] | float | None
    predictor_factory: PredictorFactory
    reader: Callable[[Any], Any]


def _accepts_tomo_id(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "tomo_id" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _as_candidates(raw: Any) -> list[list[float]]:
    out = []
    for cand in raw or []:
        z, y, x, score = (float(v) for v in list(cand)[:4])
        out.append([z, y, x, score])
    return out


def run_worker(job: WorkerJob, emit: Callable[[dict[str, Any]], None]) -> None:
    """Predict ``job.items`` in order, emitting one ``result`` event per tomogram and a final ``done``.

    A read error or an exception inside prediction gives a ``read_error`` / ``predict_error`` result and a
    warning; the run continues. With a budget, tomograms the planner cannot reach get no result (the
    caller writes -1 rows for them). ``BaseException`` (KeyboardInterrupt, a kill) propagates.
    """

    def say(level: int, msg: str) -> None:
        emit({"event": "log", "level": level, "msg": f"[{job.device}] {msg}" if job.worker else msg})

    planner: BudgetPlanner | None = None
    n = len(job.items)
    if job.budget_end is not None and n:
        left = job.budget_end - time.time()
        if left <= 0:
            say(logging.WARNING, f"time budget already spent: {n} tomograms get -1 rows")
            emit({"event": "done", "worker": job.worker, "changes": [], "stopped": True})
            return
        # The clock is looked up here, not bound at import, so a test can run the whole loop on virtual time.
        planner = BudgetPlanner(
            left, n, job.levels, safety=job.config.budget_safety, clock=time.monotonic, on_change=say
        )
    predictors: dict[int, Any] = {}
    configs: dict[int, InferConfig] = {}
    folders = [folder for _, folder in job.items]
    ids = [tid for tid, _ in job.items]
    loader = PrefetchLoader(
        folders,
        job.reader,
        max_in_memory=max(1, job.config.prefetch),
        threads=job.config.loader_threads,
        ids=ids,
    )
    t_prev = time.monotonic()
    with loader:
        for tomo_id, volume in loader:
            record: dict[str, Any] = {"event": "result", "tomo_id": tomo_id, "worker": job.worker}
            if isinstance(volume, BaseException):
                say(logging.WARNING, f"tomogram {tomo_id}: cannot be read, writing -1 ({volume})")
                emit({**record, "status": "read_error", "candidates": [], "error": str(volume)})
                if planner is not None:
                    planner.skip()
                t_prev = time.monotonic()
                continue
            level = 0 if planner is None else planner.next_level()
            if level is None:
                break  # out of time: the remaining tomograms get -1 rows from the caller
            if level not in predictors:
                lv = job.levels[level]
                configs[level] = dataclasses.replace(
                    job.config, tta=tuple(lv.tta), overlap=lv.overlap, scales=tuple(lv.scales)
                )
                predictors[level] = job.predictor_factory(
                    [job.checkpoints[i] for i in lv.models], configs[level], job.device
                )
            predictor = predictors[level]
            shape = [int(s) for s in volume.shape]
            record.update(shape=shape, level=job.levels[level].name)
            try:
                spacing_a = resolve_spacing(shape, configs[level], job.model_spacing_a)
                record["spacing_a"] = spacing_a
                if _accepts_tomo_id(predictor.predict_volume):
                    raw = predictor.predict_volume(volume, spacing_a, tomo_id=tomo_id)
                else:
                    raw = predictor.predict_volume(volume, spacing_a)
                record.update(status="ok", candidates=_as_candidates(raw))
            except Exception as err:
                say(
                    logging.WARNING,
                    f"tomogram {tomo_id}: prediction failed, writing -1 ({type(err).__name__}: {err})",
                )
                log.debug("prediction of %s failed:\n%s", tomo_id, traceback.format_exc())
                record.update(status="predict_error", candidates=[], error=f"{type(err).__name__}: {err}")
            del volume
            now = time.monotonic()
            # Wall time since the previous tomogram ended: prediction plus any wait for the loader.
            record["seconds"] = round(now - t_prev, 4)
            t_prev = now
            if planner is not None:
                planner.record(level, record["seconds"])
            emit(record)
    emit(
        {
            "event": "done",
            "worker": job.worker,
            "changes": list(planner.changes) if planner else [],
            "stopped": bool(planner and planner.stopped),
        }
    )


def _worker_process(job: WorkerJob, events: Any) -> None:
    """Entry point of a spawned worker: forwards events through a queue; reports a crash before dying."""
    try:
        run_worker(job, events.put)
    except BaseException as err:
        events.put(
            {
                "event": "crash",
                "worker": job.worker,
                "msg": f"worker {job.worker} ({job.device}) crashed: {type(err).__name__}: {err}\n"
                + traceback.format_exc(),
            }
        )
        raise


# ----------------------------------------------------------------------------------------------------------
# Partial results file (resume).


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


# ----------------------------------------------------------------------------------------------------------
# The run.


@dataclass
class _Collector:
    partial: PartialFile
    changes: list[str] = field(default_factory=list)
    stopped: bool = False
    crashes: list[str] = field(default_factory=list)

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "result":
            self.partial.append(event)
        elif kind == "log":
            log.log(int(event["level"]), event["msg"])
        elif kind == "done":
            self.changes.extend(event.get("changes", []))
            self.stopped = self.stopped or bool(event.get("stopped"))
        elif kind == "crash":
            self.crashes.append(event["msg"])
            log.error(event["msg"])


def _run_processes(jobs: list[WorkerJob], collect: _Collector) -> None:
    """One spawned process per job; events come back through one queue and are handled here."""
    # Spawn (not fork): CUDA cannot be used in a forked child. Only plain Python objects cross the queue,
    # so the standard library context is enough (torch.multiprocessing adds tensor sharing, unused here).
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    procs = [ctx.Process(target=_worker_process, args=(job, events), daemon=True) for job in jobs]
    for proc in procs:
        proc.start()
    finished: set[int] = set()
    try:
        while len(finished) < len(procs):
            try:
                event = events.get(timeout=0.5)
            except queue_module.Empty:
                for k, proc in enumerate(procs):
                    if k not in finished and not proc.is_alive():
                        # Died without a "done" (killed, out of memory): its tomograms get -1 rows.
                        finished.add(k)
                        if proc.exitcode != 0:
                            collect.crashes.append(f"worker {k} exited with code {proc.exitcode}")
                            log.error("worker %d (%s) exited with code %s", k, jobs[k].device, proc.exitcode)
                continue
            collect(event)
            if event.get("event") in ("done", "crash"):
                finished.add(int(event["worker"]))
        while True:  # events a dead worker flushed after we noticed it
            try:
                collect(events.get(timeout=0.2))
            except queue_module.Empty:
                break
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()


def _choose_threshold(
    config: InferConfig, infos: Sequence[CheckpointInfo], candidates: dict[str, list[list[float]]]
) -> tuple[float, str]:
    """The score threshold and a words description of where it came from."""
    mode = config.threshold
    if mode == "fixed":
        return float(config.threshold_value), "fixed"
    if mode == "checkpoint":
        values = [i.threshold for i in infos if i.threshold is not None]
        if not values:
            log.warning(
                "threshold=checkpoint but no checkpoint stores a calibrated threshold; using the fixed %g",
                config.threshold_value,
            )
            return float(config.threshold_value), "fixed (no checkpoint threshold)"
        if len(values) < len(infos):
            log.warning(
                "only %d of %d checkpoints store a threshold; averaging those", len(values), len(infos)
            )
        return float(sum(values) / len(values)), f"checkpoint mean of {len(values)}"
    if mode == "quantile":
        if not candidates:
            log.warning(
                "threshold=quantile but no tomogram was predicted; using the fixed %g", config.threshold_value
            )
            return float(config.threshold_value), "fixed (nothing to take a quantile of)"
        from byu_motor.postprocess.threshold import quantile_threshold

        q = float(config.threshold_quantile)
        return quantile_threshold(candidates, q), f"quantile {q:g} of {len(candidates)} tomograms"
    raise ValueError(f"unknown infer.threshold {mode!r}; expected 'fixed', 'checkpoint' or 'quantile'")


def _test_ids(data_dir: Path) -> tuple[list[str], dict[str, Path]]:
    """Expected tomo_ids in output order, and the folders present."""
    from byu_motor.data.layout import list_tomograms, read_sample_submission

    test_dir = data_dir / "test"
    sample_path = data_dir / "sample_submission.csv"
    folders = {tid: test_dir / tid for tid in list_tomograms(test_dir)} if test_dir.is_dir() else {}
    if not test_dir.is_dir() and not sample_path.exists():
        raise FileNotFoundError(f"{data_dir}: neither a test/ folder nor sample_submission.csv")
    if not sample_path.exists():
        return sorted(folders), folders
    ids = [str(t) for t in read_sample_submission(sample_path)["tomo_id"]]
    extra = sorted(set(folders) - set(ids))
    if extra:
        log.warning(
            "%d tomogram folder(s) in %s are not in sample_submission.csv and are ignored: %s",
            len(extra),
            test_dir,
            ", ".join(extra[:10]),
        )
    missing = [t for t in ids if t not in folders]
    if missing:
        log.warning(
            "%d tomogram(s) of sample_submission.csv have no folder in %s and get -1: %s",
            len(missing),
            test_dir,
            ", ".join(missing[:10]),
        )
    return ids, {t: folders[t] for t in ids if t in folders}


def _checkpoint_key(path: Path) -> list:
    """``[resolved path, size in bytes, mtime in ns]`` of a checkpoint, read with one ``stat``."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _partial_header(data_dir: Path, checkpoints: Sequence[str], config: InferConfig) -> dict[str, Any]:
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _RESULT_NEUTRAL_FIELDS}
    return {
        "data_dir": str(data_dir.resolve()),
        # size and modification time too: a checkpoint rewritten in place (retrained, or given its second
        # stage) must not reuse the results of the old weights
        "checkpoints": [_checkpoint_key(Path(c)) for c in checkpoints],
        "infer": settings,
    }


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
) -> pd.DataFrame:
    """Predict every test tomogram of ``data_dir`` and write the submission CSV.

    Order of work: validate every checkpoint (before reading any tomogram); list ``data_dir/test`` and
    ``data_dir/sample_submission.csv`` (which fixes the set and order of rows when present); resume from
    ``<out_csv>.partial.jsonl``; predict the rest on each device (one spawned worker per device when
    several, in-process when one), shedding extras to stay inside ``time_budget_s``; apply the threshold;
    check and atomically write the CSV; write previews.

    Resume skips every tomogram recorded in the partial file, failures included (they are deterministic: a
    corrupt file stays corrupt); tomograms the budget did not reach are not recorded and are retried.
    A partial file made with other checkpoints, settings or data is moved aside, not reused.

    Args:
        data_dir: competition folder holding ``test/`` (and optionally ``sample_submission.csv``).
        checkpoints: checkpoint files, the most valuable first (budget shedding drops from the end).
        out_csv: submission path; ``<out_csv>.partial.jsonl`` keeps per-tomogram candidates.
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

    Returns:
        The submission DataFrame (``tomo_id, Motor axis 0, Motor axis 1, Motor axis 2`` as int64), with a
        run summary in ``df.attrs["summary"]``.

    Raises:
        ValueError: a bad checkpoint (naming it), no checkpoint, or an unknown setting.
    """
    t_start = time.monotonic()
    budget_end = None if time_budget_s is None else time.time() + float(time_budget_s)
    config = config or InferConfig()
    data_dir = Path(data_dir)
    out_csv = Path(out_csv)
    paths = [str(p) for p in checkpoints]
    if not paths:
        raise ValueError("run_prediction needs at least one checkpoint")
    infos = []
    for path in paths:  # all of them, before any tomogram is read
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        try:
            infos.append(checkpoint_inspector(path))
        except Exception as err:
            raise ValueError(f"checkpoint {path} is not usable: {err}") from err

    ids, folders = _test_ids(data_dir)
    partial = PartialFile(Path(f"{out_csv}.partial.jsonl"), _partial_header(data_dir, paths, config))
    resumed = [t for t in ids if t in partial.records]
    if resumed:
        log.info("resuming: %d of %d tomograms already done in %s", len(resumed), len(ids), partial.path)
    pending = [(t, str(folders[t])) for t in ids if t in folders and t not in partial.records]

    levels = build_levels(config, [Path(p).name for p in paths])
    if time_budget_s is None:
        levels = levels[:1]
    device_list = resolve_devices(devices)
    factory = predictor_factory or default_predictor_factory
    if reader is read_tomogram and config.read_threads is not None:
        reader = functools.partial(read_tomogram, num_threads=config.read_threads)
    reader = compose_reader(reader, any(info.fix_wraparound for info in infos))
    model_spacing = infos[0].spacing_a
    jobs = [
        WorkerJob(
            worker=k,
            device=device,
            items=pending[k :: len(device_list)],
            checkpoints=paths,
            config=config,
            levels=levels,
            budget_end=budget_end,
            model_spacing_a=model_spacing,
            predictor_factory=factory,
            reader=reader,
        )
        for k, device in enumerate(device_list)
    ]
    jobs = [job for job in jobs if job.items] or jobs[:1]
    collect = _Collector(partial)
    try:
        if len(jobs) == 1:
            run_worker(jobs[0], collect)
        else:
            _run_processes(jobs, collect)
    finally:
        partial.close()

    records = partial.records
    ok = {t: records[t] for t in ids if t in records and records[t].get("status") == "ok"}
    candidates = {t: rec["candidates"] for t, rec in ok.items()}
    threshold, threshold_source = _choose_threshold(config, infos, candidates)
    not_reached = [t for t in ids if t in folders and t not in records]
    if not_reached:
        log.warning(
            "%d tomogram(s) were not predicted (time budget or a failed worker) and get -1: %s",
            len(not_reached),
            ", ".join(not_reached[:10]),
        )
    shapes = {t: rec["shape"] for t, rec in ok.items() if rec.get("shape")}
    df = rows_from_candidates(ids, candidates, threshold, shapes)
    check_submission(df, ids)
    write_submission(df, out_csv)

    statuses = Counter(records[t].get("status") for t in ids if t in records)
    summary = {
        "rows": len(df),
        "detections": int((df["Motor axis 0"] >= 0).sum()),
        "threshold": threshold,
        "threshold_source": threshold_source,
        "predicted": statuses.get("ok", 0),
        "read_errors": statuses.get("read_error", 0),
        "predict_errors": statuses.get("predict_error", 0),
        "missing_folders": sum(t not in folders for t in ids),
        "not_reached": len(not_reached),
        "resumed": len(resumed),
        "levels": dict(Counter(records[t].get("level") for t in ok)),
        "shed": collect.changes,
        "worker_crashes": collect.crashes,
        "devices": device_list,
    }
    if preview_dir is not None:
        summary["previews"] = _write_previews(
            Path(preview_dir), ids, ok, folders, threshold, config, paths, device_list[0], factory, reader,
            labels_csv, budget_end,
        )  # fmt: skip
    summary["seconds"] = round(time.monotonic() - t_start, 3)
    df.attrs["summary"] = summary
    return df


def _write_previews(
    preview_dir: Path,
    ids: list[str],
    ok: dict[str, dict[str, Any]],
    folders: dict[str, Path],
    threshold: float,
    config: InferConfig,
    checkpoints: list[str],
    device: str,
    factory: PredictorFactory,
    reader: Callable[[Any], Any],
    labels_csv: str | os.PathLike | None,
    budget_end: float | None,
) -> int:
    """PNG previews of predicted tomograms (best scores first); stops early when the budget is short."""
    from byu_motor.viz import save_preview

    truth: dict[str, Any] = {}
    if labels_csv is not None:
        from byu_motor.data.layout import read_motor_table

        truth = read_motor_table(labels_csv)

    def top(t: str) -> float:
        cands = ok[t]["candidates"]
        return cands[0][3] if cands else -math.inf

    chosen = sorted(ok, key=top, reverse=True)
    if config.preview_top > 0:
        chosen = chosen[: config.preview_top]
    chosen = [t for t in ids if t in chosen]
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
                predictor = factory(checkpoints, config, device)
            volume = reader(folders[tomo_id])
            spacing_a = float(ok[tomo_id].get("spacing_a") or config.test_spacing_a)
            heatmap, grid = predictor.predict_heatmap(volume, spacing_a)
            cands = ok[tomo_id]["candidates"]
            score = f"{cands[0][3]:.3f}" if cands else "none"
            save_preview(
                preview_dir / f"{tomo_id}.png",
                volume,
                cands,
                heatmap,
                grid,
                truth=truth.get(tomo_id),
                title=f"{tomo_id}  best {score}  thr {threshold:.3f}  {spacing_a:.1f} A",
                spacing_a=spacing_a,
                threshold=threshold,
            )
            written += 1
        except Exception as err:
            log.warning("preview of %s failed: %s: %s", tomo_id, type(err).__name__, err)
        slowest = max(slowest, time.monotonic() - t0)
    return written
