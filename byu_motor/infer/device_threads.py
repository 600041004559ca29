"""Several devices in one process: one worker thread per device, all fed by ONE prefetching loader.

The decoding of the next tomograms overlaps every device's forward passes, and the host's cores decode for all
devices instead of being split between processes. Each worker keeps its own share and order
(:func:`byu_motor.infer.workers.split_jobs`); the shared loader reads in the order of the run (the shares
interleaved), holding at most ``prefetch`` tomograms per device. Events reach the :class:`Collector` through
one queue, handled in the calling thread, exactly as from worker processes.
"""

from __future__ import annotations

import dataclasses
import logging
import queue as queue_module
import threading
import traceback
from typing import Any

from byu_motor.infer.loader import PrefetchLoader
from byu_motor.infer.workers import Collector, WorkerJob, run_worker

log = logging.getLogger(__name__)


def interleaved(jobs: list[WorkerJob]) -> list[tuple[int, int]]:
    """``(job, position in its items)`` in the run's order: the first item of every job, then the second..."""
    longest = max(len(job.items) for job in jobs)
    return [(k, i) for i in range(longest) for k, job in enumerate(jobs) if i < len(job.items)]


def _worker_thread(job: WorkerJob, events: queue_module.Queue) -> None:
    """Run one worker; a crash becomes a ``crash`` event (the other devices go on)."""
    try:
        run_worker(job, events.put)
    except BaseException as err:  # reported, never raised in the thread
        events.put(
            {
                "event": "crash",
                "worker": job.worker,
                "msg": f"worker {job.worker} ({job.device}) crashed: {type(err).__name__}: {err}\n"
                + traceback.format_exc(),
            }
        )


def run_threads(jobs: list[WorkerJob], collect: Collector) -> None:
    """Run ``jobs`` as threads of this process sharing one decoding loader; events go to ``collect``.

    Args:
        jobs: one per device (their ``reader`` and ``config`` are the first job's for the shared loader).
        collect: handles every event, in this thread.
    """
    order = interleaved(jobs)
    first = jobs[0]
    loader = PrefetchLoader(
        [jobs[k].items[i][1] for k, i in order],
        first.reader,
        max_in_memory=max(1, first.config.prefetch) * len(jobs),
        threads=max(1, first.config.loader_threads) * len(jobs),
        ids=[jobs[k].items[i][0] for k, i in order],
    )
    events: queue_module.Queue = queue_module.Queue()
    threads = []
    with loader:
        for k, job in enumerate(jobs):
            feed = loader.feed([n for n, (j, _) in enumerate(order) if j == k])
            fed = dataclasses.replace(job, source=feed)
            threads.append(threading.Thread(target=_worker_thread, args=(fed, events), name=f"device-{k}"))
        for thread in threads:
            thread.start()
        finished: set[int] = set()
        while len(finished) < len(threads):
            try:
                event: dict[str, Any] = events.get(timeout=0.5)
            except queue_module.Empty:
                continue
            collect(event)
            if event.get("event") in ("done", "crash"):
                finished.add(int(event["worker"]))
        for thread in threads:
            thread.join()
