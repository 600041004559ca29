"""Workers of a prediction run: devices, predictors per device, the per-tomogram loop, and one process per device.

A worker predicts its share of the tomograms in order and reports through events (``result``, ``log``,
``done``, ``crash``); the :class:`Collector` in the main process stores results in the partial file as they
arrive. One worker runs in-process; several run as spawned processes, one per device.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import queue as queue_module
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from byu_motor.config import InferConfig
from byu_motor.infer.budget import BudgetPlanner, PlanLevel, PredictionCut, stop_when
from byu_motor.infer.factory import _SPEC_CACHE, default_predictor_factory  # noqa: F401 (re-exported)
from byu_motor.infer.loader import PrefetchLoader
from byu_motor.infer.preflight import resolve_devices  # noqa: F401 (re-exported)
from byu_motor.infer.resume import PartialFile
from byu_motor.infer.spacing import resolve_spacing
from byu_motor.infer.stage_timer import StageTimer, active, device_sync, stage, timed_iter
from byu_motor.infer.testset import listed_sizes

log = logging.getLogger(__name__)

PredictorFactory = Callable[[list[str], InferConfig, str], Any]


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
        prior_s_per_voxel: the planner's rate before it measures one (``None``: its pessimistic default).
        source: ``(tomo_id, volume)`` of ``items`` in order, from a loader the workers share
            (:meth:`byu_motor.infer.loader.PrefetchLoader.feed`); ``None``: the worker reads with its own loader.
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
    prior_s_per_voxel: float | None = None
    source: Any = None


def _accepts_tomo_id(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes a ``tomo_id`` keyword (foreign predictors may not)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "tomo_id" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _as_candidates(raw: Any) -> list[list[float]]:
    """A predictor's candidates as JSON-ready ``[[z, y, x, score], ...]`` floats (extra fields dropped)."""
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

    Args:
        job: the worker's share and settings.
        emit: receives each event, a JSON-serialisable dict with an ``event`` key.
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
        sizes = listed_sizes([folder for _, folder in job.items])  # from the headers, before any decoding
        prior = {} if job.prior_s_per_voxel is None else {"prior_s_per_voxel": job.prior_s_per_voxel}
        planner = BudgetPlanner(
            left,
            n,
            job.levels,
            job.config.budget_safety,
            clock=time.monotonic,
            on_change=say,
            sizes=sizes,
            **prior,
        )
    _predict_items(job, planner, emit, say)
    emit(
        {
            "event": "done",
            "worker": job.worker,
            "changes": list(planner.changes) if planner else [],
            "stopped": bool(planner and planner.stopped),
        }
    )


def _predict_items(
    job: WorkerJob,
    planner: BudgetPlanner | None,
    emit: Callable[[dict[str, Any]], None],
    say: Callable[[int, str], None],
) -> None:
    """The loop of :func:`run_worker`: read ahead, pick each tomogram's level, predict, emit its result, with
    ``stages`` (:mod:`~byu_motor.infer.stage_timer`; sum = ``seconds`` - ``startup_s``, the model build) and
    ``decode_s`` (the loader thread's reading, overlapped)."""
    predictors = _LevelPredictors(job)
    timer = StageTimer(sync=device_sync(job.device))
    loader = job.source or PrefetchLoader(
        [folder for _, folder in job.items],
        job.reader,
        max_in_memory=max(1, job.config.prefetch),
        threads=job.config.loader_threads,
        ids=[tid for tid, _ in job.items],
    )
    t_prev = time.monotonic()
    with loader, active(timer):
        for tomo_id, volume in timed_iter(loader, timer, "read"):
            record: dict[str, Any] = {"event": "result", "tomo_id": tomo_id, "worker": job.worker}
            record.update(decode_s=round(loader.decode_s, 4))
            if isinstance(volume, BaseException):
                say(logging.WARNING, f"tomogram {tomo_id}: cannot be read, writing -1 ({volume})")
                emit({**record, "status": "read_error", "candidates": [], "error": str(volume)})
                if planner is not None:
                    planner.skip()
                t_prev = time.monotonic()
                timer.take()
                del volume  # its traceback holds the half-read volume's buffer (infer/pinned.py)
                continue
            voxels = float(getattr(volume, "size", 0)) or None
            level = 0 if planner is None else planner.next_level(voxels)
            if level is None:
                break  # out of time: the remaining tomograms get -1 rows from the caller
            t_build = time.monotonic()
            predictor, config = predictors.get(level)
            build_s = time.monotonic() - t_build  # a one-off (model loading), not a cost per voxel
            with stage("fusion"):  # whatever predict_volume does outside its own, nested stages
                _predict_one(
                    record, predictor, config, volume, job, level, say, planner and planner.should_stop
                )
            del volume
            now = time.monotonic()
            # Wall time since the previous tomogram ended: prediction plus any wait for the loader.
            record["seconds"] = round(now - t_prev, 4)
            record.update(stages=timer.take(), startup_s=round(build_s, 4))
            t_prev = now
            if planner is not None and record["status"] == "cut":
                planner.record_cut(tomo_id)
            elif planner is not None:
                planner.record(level, max(record["seconds"] - build_s, 0.0), voxels)
            emit(record)


class _LevelPredictors:
    """One predictor per budget level, built on first use (models are shared through the spec cache)."""

    def __init__(self, job: WorkerJob):
        self.job = job
        self.predictors: dict[int, Any] = {}
        self.configs: dict[int, InferConfig] = {}

    def get(self, level: int) -> tuple[Any, InferConfig]:
        """``(predictor, config)`` of ``level``: the job's config with that level's views, overlap, scales."""
        if level not in self.predictors:
            job = self.job
            lv = job.levels[level]
            self.configs[level] = dataclasses.replace(
                job.config, tta=tuple(lv.tta), overlap=lv.overlap, scales=tuple(lv.scales)
            )
            self.predictors[level] = job.predictor_factory(
                [job.checkpoints[i] for i in lv.models], self.configs[level], job.device
            )
        return self.predictors[level], self.configs[level]


def _predict_one(
    record: dict[str, Any],
    predictor: Any,
    config: InferConfig,
    volume: Any,
    job: WorkerJob,
    level: int,
    say: Callable[[int, str], None],
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Predict one tomogram into ``record`` (shape, level, spacing, status, candidates); never raises
    ``Exception``: a failure becomes a ``predict_error`` record and a warning, a prediction cut short because
    ``should_stop()`` became true (checked between window batches) a ``cut`` record."""
    tomo_id = record["tomo_id"]
    shape = [int(s) for s in volume.shape]
    record.update(shape=shape, level=job.levels[level].name)
    try:
        spacing_a = resolve_spacing(shape, config, job.model_spacing_a)
        record["spacing_a"] = spacing_a
        with stop_when(should_stop):
            if _accepts_tomo_id(predictor.predict_volume):
                raw = predictor.predict_volume(volume, spacing_a, tomo_id=tomo_id)
            else:
                raw = predictor.predict_volume(volume, spacing_a)
        record.update(status="ok", candidates=_as_candidates(raw))
    except PredictionCut:
        say(logging.WARNING, f"tomogram {tomo_id}: cut short at the time budget's deadline, writing -1")
        record.update(status="cut", candidates=[])
    except Exception as err:
        say(
            logging.WARNING,
            f"tomogram {tomo_id}: prediction failed, writing -1 ({type(err).__name__}: {err})",
        )
        log.debug("prediction of %s failed:\n%s", tomo_id, traceback.format_exc())
        record.update(status="predict_error", candidates=[], error=f"{type(err).__name__}: {err}")


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
# The main process: hand out the work, run the workers, collect their events.


def split_jobs(template: WorkerJob, pending: list[tuple[str, str]], devices: list[str]) -> list[WorkerJob]:
    """One job per device, tomograms dealt round-robin; devices left without tomograms get no job (at least
    one job is always returned, so its ``done`` event still comes).

    Args:
        template: the settings every job shares (its ``worker``, ``device`` and ``items`` are replaced).
        pending: ``(tomo_id, folder)`` pairs to predict, in output order.
        devices: torch device names, one worker each.
    """
    jobs = [
        dataclasses.replace(template, worker=k, device=device, items=pending[k :: len(devices)])
        for k, device in enumerate(devices)
    ]
    return [job for job in jobs if job.items] or jobs[:1]


def run_jobs(jobs: list[WorkerJob], collect: Collector) -> None:
    """Run ``jobs``: in this process when there is one; on several CUDA devices one thread each, fed by one
    shared loader (:mod:`byu_motor.infer.device_threads`); else one spawned process per job."""
    if len(jobs) == 1:
        run_worker(jobs[0], collect)
    elif all(job.device.startswith("cuda") for job in jobs):
        from byu_motor.infer.device_threads import run_threads

        run_threads(jobs, collect)
    else:
        _run_processes(jobs, collect)


@dataclass
class Collector:
    """Handles worker events in the main process: stores results in the partial file, logs log lines,
    gathers the budget changes of every worker and crash reports.

    Args:
        partial: the run's open partial file.
        changes: budget level changes announced by the workers (filled from their ``done`` events).
        stopped: a worker stopped early for lack of time.
        crashes: what each crashed worker reported.
        crashed: the ``worker`` numbers of the jobs that crashed (the runner gives their tomograms to the others).
        cut: tomograms cut short at the deadline (not stored in the partial file, so a resume retries them).
        ended: ``time.monotonic()`` when the workers were done.
    """

    partial: PartialFile
    changes: list[str] = field(default_factory=list)
    stopped: bool = False
    crashes: list[str] = field(default_factory=list)
    crashed: set[int] = field(default_factory=set)
    cut: list[str] = field(default_factory=list)
    ended: float | None = None  # time.monotonic() when the last worker finished (the threshold stage starts)

    def __call__(self, event: dict[str, Any]) -> None:
        """Handle one event (a dict with an ``event`` key: ``result``, ``log``, ``done`` or ``crash``)."""
        kind = event.get("event")
        if kind == "result" and event.get("status") == "cut":
            self.cut.append(str(event["tomo_id"]))
        elif kind == "result":
            self.partial.append(event)
        elif kind == "log":
            log.log(int(event["level"]), event["msg"])
        elif kind == "done":
            self.changes.extend(event.get("changes", []))
            self.stopped = self.stopped or bool(event.get("stopped"))
        elif kind == "crash":
            self.crashes.append(event["msg"])
            self.crashed.add(int(event["worker"]))
            log.error(event["msg"])


def _run_processes(jobs: list[WorkerJob], collect: Collector) -> None:
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
                            collect.crashed.add(jobs[k].worker)
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
