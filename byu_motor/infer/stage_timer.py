"""Where a prediction's time goes: wall seconds per stage, per tomogram and per run.

Stages nest (``peaks`` runs inside ``fusion``, which wraps the whole of ``predict_volume``): each stage is
charged only its EXCLUSIVE time, the time not spent in a stage nested inside it, so the stages of one
tomogram add up to its wall time. The timer is found through a context variable, so deep code marks its
stage with ``with stage("forward"):`` and nothing is passed around; without an active timer that is a no-op.
Background threads (the loader's decoding) do not see the timer: their time is reported apart as
``decode_s``, overlapped with the stages, not added to them.

Stages, in the order of a tomogram's work:

- ``read``: waiting for the prefetching loader (decoding not hidden behind the previous tomogram);
- ``upload``: the uint8 volume to the model's device (once per tomogram);
- ``resample``: to each model's spacing (on the host or on the device, ``infer.resample_on_device``);
- ``forward``: sliding windows: cutting, normalising, the model, merging into the heatmap;
- ``peaks``: peak decoding of the heatmaps;
- ``fusion``: the rest of ``predict_volume`` (merging scales, members, views; candidate steps);
- ``threshold``: per run, choosing the threshold and writing the CSV.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

STAGES = ("read", "upload", "resample", "forward", "peaks", "fusion", "threshold")

_ACTIVE: contextvars.ContextVar[StageTimer | None] = contextvars.ContextVar("stage_timer", default=None)


class StageTimer:
    """Exclusive wall seconds per stage name, accumulated until :meth:`take`.

    Args:
        sync: called at every stage boundary before the clock is read (e.g. ``torch.cuda.synchronize``,
            so that queued GPU work is charged to the stage that queued it); ``None``: nothing.
        clock: the clock (seconds).
    """

    def __init__(
        self, sync: Callable[[], None] | None = None, clock: Callable[[], float] = time.perf_counter
    ):
        self.sync = sync
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self._stack: list[list[Any]] = []  # [name, start, seconds spent in nested stages]

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Charge the time inside the block, less that of stages nested in it, to ``name``."""
        if self.sync is not None:
            self.sync()
        frame = [name, self.clock(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            if self.sync is not None:
                self.sync()
            self._stack.pop()
            spent = self.clock() - frame[1]
            self.seconds[name] = self.seconds.get(name, 0.0) + spent - frame[2]
            if self._stack:
                self._stack[-1][2] += spent

    def take(self) -> dict[str, float]:
        """The seconds per stage so far (rounded to 0.1 ms), then start again from zero."""
        out = {k: round(v, 4) for k, v in self.seconds.items()}
        self.seconds = {}
        return out


@contextlib.contextmanager
def active(timer: StageTimer | None) -> Iterator[StageTimer | None]:
    """Make ``timer`` the one :func:`stage` charges, in this thread and context, inside the block."""
    token = _ACTIVE.set(timer)
    try:
        yield timer
    finally:
        _ACTIVE.reset(token)


def stage(name: str) -> contextlib.AbstractContextManager:
    """``with stage("forward"):`` charges the active timer's ``name``; a no-op without an active timer."""
    timer = _ACTIVE.get()
    return contextlib.nullcontext() if timer is None else timer.stage(name)


def timed_iter(items: Iterable[Any], timer: StageTimer, name: str) -> Iterator[Any]:
    """Iterate ``items``, charging the wait for each item (e.g. a loader's next tomogram) to stage ``name``.

    The item yielded last is not referenced while the next one is fetched: a loader that frees a tomogram's
    slot on that call may then reuse its memory (:mod:`byu_motor.infer.pinned`).
    """
    it = iter(items)
    done = object()
    while True:
        with timer.stage(name):
            item = next(it, done)
        if item is done:
            return
        yield item
        del item


def device_sync(device: str) -> Callable[[], None] | None:
    """``torch.cuda.synchronize(device)`` for a CUDA device (so GPU work is charged to the stage that queued
    it), ``None`` for any other device."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    return lambda: torch.cuda.synchronize(device)


def run_stages(records: Iterable[dict[str, Any]], workers_ended: float | None) -> dict[str, Any]:
    """The run summary's ``stages``: :func:`total_stages` over the result records predicted in this run, with
    ``threshold`` (from ``workers_ended``, a ``time.monotonic()``, to now), ``tomograms`` (how many were
    summed), ``startup_s`` (predictor builds, left out of the stages) and ``decode_s`` (the loader threads'
    decoding, overlapped with the stages)."""
    records = [r for r in records if isinstance(r.get("stages"), dict)]
    extra = {} if workers_ended is None else {"threshold": time.monotonic() - workers_ended}
    out = total_stages((r["stages"] for r in records), extra)
    out["tomograms"] = len(records)
    out["startup_s"] = round(sum(float(r.get("startup_s", 0.0)) for r in records), 3)
    out["decode_s"] = round(sum(float(r.get("decode_s", 0.0)) for r in records), 3)
    return out


def total_stages(
    per_tomogram: Iterable[dict[str, float]], extra: dict[str, float] | None = None
) -> dict[str, Any]:
    """Run totals: seconds per stage summed over tomograms (plus ``extra``, e.g. ``threshold``), in
    :data:`STAGES` order, and ``sum_s``, their sum.

    Args:
        per_tomogram: each tomogram's ``stages`` dict (seconds per stage).
        extra: run-level stages to add.
    """
    totals: dict[str, float] = {}
    for stages in per_tomogram:
        for k, v in stages.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    for k, v in (extra or {}).items():
        totals[k] = totals.get(k, 0.0) + float(v)
    order = [k for k in STAGES if k in totals] + sorted(k for k in totals if k not in STAGES)
    out: dict[str, Any] = {k: round(totals[k], 3) for k in order}
    out["sum_s"] = round(sum(totals.values()), 3)
    return out
