"""Worker plumbing without prediction: dealing tomograms to devices, device lists, the event collector."""

from __future__ import annotations

import json
import logging

from byu_motor.config import InferConfig
from byu_motor.infer.budget import build_levels
from byu_motor.infer.resume import PartialFile
from byu_motor.infer.workers import Collector, WorkerJob, resolve_devices, split_jobs


def _template() -> WorkerJob:
    cfg = InferConfig()
    return WorkerJob(0, "cpu", [], ["a.pt"], cfg, build_levels(cfg, ["a.pt"])[:1], None, None, None, None)


def test_split_jobs_deals_round_robin_and_drops_idle_devices() -> None:
    pending = [(f"t{k}", f"/d/t{k}") for k in range(5)]
    jobs = split_jobs(_template(), pending, ["cuda:0", "cuda:1"])
    assert [(j.worker, j.device) for j in jobs] == [(0, "cuda:0"), (1, "cuda:1")]
    assert [tid for tid, _ in jobs[0].items] == ["t0", "t2", "t4"]
    assert [tid for tid, _ in jobs[1].items] == ["t1", "t3"]
    one = split_jobs(_template(), pending[:1], ["cuda:0", "cuda:1", "cuda:2"])
    assert [(j.worker, j.device, len(j.items)) for j in one] == [(0, "cuda:0", 1)]
    # nothing to do: still one job, so that its "done" event comes
    assert [(j.worker, j.items) for j in split_jobs(_template(), [], ["cuda:0", "cuda:1"])] == [(0, [])]


def test_resolve_devices_lists(monkeypatch) -> None:
    import torch

    assert resolve_devices("cpu") == ["cpu"]
    # CUDA names are checked against the machine (tests/infer/test_preflight.py): stand in for two GPUs
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    assert resolve_devices(["cpu", "cpu"]) == ["cpu", "cpu"]


def test_collector_stores_results_and_gathers_reports(tmp_path, caplog) -> None:
    partial = PartialFile(tmp_path / "p.jsonl", {"x": 1})
    collect = Collector(partial)
    with caplog.at_level(logging.INFO):
        collect({"event": "result", "tomo_id": "t1", "status": "ok", "candidates": []})
        collect({"event": "log", "level": logging.WARNING, "msg": "shedding something"})
        collect({"event": "done", "worker": 0, "changes": ["c1"], "stopped": True})
        collect({"event": "crash", "worker": 1, "msg": "worker 1 crashed"})
    partial.close()
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert json.loads(lines[1]) == {"tomo_id": "t1", "status": "ok", "candidates": []}  # without "event"
    assert collect.changes == ["c1"] and collect.stopped and collect.crashes == ["worker 1 crashed"]
    assert "shedding something" in caplog.text and "worker 1 crashed" in caplog.text
