"""The passes of a prediction run after the first: the tomograms of crashed workers handed to the workers that
finished (:func:`fail_over`), and the rows predicted at a shed budget level redone while time remains
(:func:`add_shed_rows`, :func:`redo_jobs`)."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

from byu_motor import progress
from byu_motor.infer.budget import default_reserve
from byu_motor.infer.resume import ResumePlan
from byu_motor.infer.workers import Collector, WorkerJob, run_jobs, split_jobs

log = logging.getLogger(__name__)


def fail_over(
    template: WorkerJob, jobs: list[WorkerJob], collect: Collector, records: dict[str, dict[str, Any]]
) -> None:
    """Give the tomograms that crashed workers never finished to the workers that did, once, while time remains.

    The first unfinished tomogram of each crashed worker (the one it was likely working on) goes last, so that
    if it brings the next worker down too, everything else is done first. A crash in this pass (one worker
    runs in this process) is reported like a worker's, never raised: those rows get -1.
    """
    crashed = set(collect.crashed)
    survivors = [job.device for job in jobs if job.worker not in crashed]
    if not crashed or not survivors or collect.stopped:
        return
    cut, lost, suspects = set(collect.cut), [], []
    for job in jobs:
        if job.worker in crashed:
            left = [item for item in job.items if item[0] not in records and item[0] not in cut]
            suspects, lost = suspects + left[:1], lost + left[1:]
    items = lost + suspects
    if not items:
        return
    log.warning(
        "%d tomogram(s) of %d crashed worker(s) go to %s", len(items), len(crashed), ",".join(survivors)
    )
    collect.crashed.clear()
    with progress.bar(len(items), "predict (after a worker crashed)", unit="tomo") as collect.bar:
        try:
            run_jobs(split_jobs(template, items, survivors), collect)
        except Exception as err:  # noqa: BLE001 - the run goes on; these rows get -1
            collect.crashes.append(f"worker crashed in the fail-over pass: {type(err).__name__}: {err}")
            log.error(collect.crashes[-1])


def add_shed_rows(
    plan: ResumePlan, items: list[tuple[str, str]], records: dict[str, dict[str, Any]], names: list[str]
) -> None:
    """Append to ``plan.redo`` the ``items`` whose new row was predicted below level 0 (``names[0]``)."""
    for tomo_id, folder in items:
        rec = records.get(tomo_id) or {}
        if rec.get("status") == "ok" and rec.get("level") not in (None, names[0]) and rec["level"] in names:
            plan.add_redo((tomo_id, folder), names.index(rec["level"]))


def redo_jobs(
    template: WorkerJob, plan: ResumePlan, devices: list[str], records: dict[str, dict[str, Any]]
) -> list[WorkerJob]:
    """Jobs that redo the shed-level rows of ``plan``, or none when the budget has no room for one more.

    Only levels richer than the most shed stored row are offered (a redo at that level or below would be
    discarded anyway). With a budget, the first redo must fit what is left after the planner's reserve and
    safety, at the slowest rate (seconds per voxel per unit of level cost) seen in this run's rows; the redo's
    planner starts from that rate instead of its pessimistic prior, which would shed every redo again.
    """
    if not plan.redo:
        return []
    levels = template.levels[: max(1, plan.redo_level)]
    if template.budget_end is not None:
        left = template.budget_end - time.time()
        rates = [
            rec["seconds"] / (math.prod(rec["shape"]) * template.levels[rec["level_index"]].cost)
            for rec in records.values()
            if rec.get("status") == "ok"
            and rec.get("seconds")
            and rec.get("shape")
            and rec.get("level_index") in range(len(template.levels))
        ]
        # what the redo's own planner (a budget of ``left``) may use: less its reserve and safety margin
        room = left - default_reserve(left) - template.config.budget_safety * left
        biggest = max((math.prod(rec["shape"]) for rec in records.values() if rec.get("shape")), default=0)
        if not rates or max(rates) * biggest * levels[0].cost > room:
            log.warning(
                "time budget: %d row(s) predicted at a shed level kept as they are (no time to redo them)",
                len(plan.redo),
            )
            return []
        template = dataclasses.replace(template, prior_s_per_voxel=max(rates))
    log.info("redoing %d row(s) predicted at a shed level while time remains", len(plan.redo))
    return split_jobs(dataclasses.replace(template, levels=levels), plan.redo, devices)
