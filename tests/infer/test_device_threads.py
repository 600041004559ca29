"""Several devices as threads of one process, fed by one shared loader: every tomogram once, each device's
order kept, the memory bound shared, a device that stops early does not block the others."""

from __future__ import annotations

import threading
import time

import numpy as np

from byu_motor.config import InferConfig
from byu_motor.infer.budget import build_levels
from byu_motor.infer.device_threads import interleaved, run_threads
from byu_motor.infer.loader import PrefetchLoader
from byu_motor.infer.workers import WorkerJob, run_jobs, split_jobs


class Recorder:
    """A reader that remembers which thread read what, and how many volumes were alive at once."""

    def __init__(self, fail: str | None = None):
        self.lock = threading.Lock()
        self.threads: set[str] = set()
        self.read: list[str] = []
        self.fail = fail

    def __call__(self, folder: str) -> np.ndarray:
        with self.lock:
            self.threads.add(threading.current_thread().name)
            self.read.append(folder)
        time.sleep(0.01)
        if folder == self.fail:
            raise OSError(f"{folder}: broken")
        return np.full((4, 5, 6), len(self.read), dtype=np.uint8)


class EchoPredictor:
    def __init__(self, device: str):
        self.device = device

    def predict_volume(self, volume, spacing_a):
        time.sleep(0.005)
        return [(1.0, 2.0, 3.0, 0.9)]


def echo_factory(paths, config, device):
    return EchoPredictor(device)


def _jobs(n_items: int, devices: list[str], reader) -> list[WorkerJob]:
    cfg = InferConfig(prefetch=2)
    template = WorkerJob(0, devices[0], [], ["a.pt"], cfg, build_levels(cfg, ["a.pt"])[:1], None, 16.0,
                         echo_factory, reader)  # fmt: skip
    return split_jobs(template, [(f"t{k}", f"/d/t{k}") for k in range(n_items)], devices)


def test_interleaved_is_the_run_order():
    jobs = _jobs(5, ["cuda:0", "cuda:1"], None)
    order = interleaved(jobs)
    assert [jobs[k].items[i][0] for k, i in order] == [f"t{k}" for k in range(5)]


def test_threads_share_one_loader_and_keep_each_devices_order():
    reader = Recorder(fail="/d/t3")
    events = []
    run_threads(_jobs(7, ["cpu", "cpu"], reader), events.append)
    results = [e for e in events if e["event"] == "result"]
    assert sorted(r["tomo_id"] for r in results) == [f"t{k}" for k in range(7)]  # each once
    for w in (0, 1):
        mine = [int(r["tomo_id"][1:]) for r in results if r["worker"] == w]
        assert mine == list(range(w, 7, 2))  # round-robin share, in order
    assert sorted(reader.read) == sorted(f"/d/t{k}" for k in range(7))  # each read once, by the one pool
    assert all(name.startswith("prefetch-") for name in reader.threads)
    assert {r["tomo_id"]: r["status"] for r in results}["t3"] == "read_error"
    assert sum(e["event"] == "done" for e in events) == 2


def test_run_jobs_uses_threads_on_cuda_devices(monkeypatch):
    called = []
    monkeypatch.setattr(
        "byu_motor.infer.device_threads.run_threads", lambda jobs, c: called.append(len(jobs))
    )
    run_jobs(_jobs(4, ["cuda:0", "cuda:1"], None), lambda e: None)
    assert called == [2]


def test_a_feed_closed_early_frees_its_slots_for_the_others():
    loader = PrefetchLoader([f"/d/t{k}" for k in range(8)], Recorder(), max_in_memory=2, threads=2)
    with loader:
        quitter = loader.feed([0, 2, 4, 6])
        stayer = loader.feed([1, 3, 5, 7])
        with quitter:
            assert next(iter(quitter))[0] == "t0"  # then it stops (a budget ran out)
        got = [tid for tid, _ in stayer]
    assert got == ["t1", "t3", "t5", "t7"]  # would hang if t2, t4, t6 kept their memory slots
