"""Tests of the prefetching loader: order, memory bound, errors delivered as values."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from byu_motor.infer.loader import PrefetchLoader


class Recorder:
    """A read_fn that records how far ahead of the consumer each read starts."""

    def __init__(self, fail: set[str] = frozenset(), delay_s: float = 0.0):
        self.fail = fail
        self.delay_s = delay_s
        self.consumed = 0  # items the consumer has finished with
        self.lock = threading.Lock()
        self.alive_at_start: list[int] = []
        self.started: list[str] = []

    def __call__(self, item: str) -> np.ndarray:
        index = int(item.split("_")[1])
        with self.lock:
            self.started.append(item)
            # items alive once this read starts: those from the first unfinished one up to this one
            self.alive_at_start.append(index - self.consumed + 1)
        time.sleep(self.delay_s)
        if item in self.fail:
            raise ValueError(f"{item} is broken")
        return np.full((2, 2, 2), index, dtype=np.uint8)


@pytest.mark.parametrize("max_in_memory,threads", [(1, 1), (2, 1), (3, 2)])
def test_order_and_bound(max_in_memory: int, threads: int) -> None:
    items = [f"tomo_{i}" for i in range(8)]
    rec = Recorder(delay_s=0.002)
    seen = []
    with PrefetchLoader(items, rec, max_in_memory=max_in_memory, threads=threads) as loader:
        for tomo_id, volume in loader:
            seen.append((tomo_id, int(volume[0, 0, 0])))
            time.sleep(0.01)  # the consumer is slower than the reader: the loader runs ahead to its bound
            with rec.lock:
                rec.consumed += 1
    assert seen == [(f"tomo_{i}", i) for i in range(8)]
    assert max(rec.alive_at_start) <= max_in_memory
    if max_in_memory > 1:  # it does read ahead
        assert max(rec.alive_at_start) == max_in_memory


def test_error_is_a_value_and_others_continue() -> None:
    items = [f"tomo_{i}" for i in range(5)]
    rec = Recorder(fail={"tomo_1", "tomo_3"})
    out = list(PrefetchLoader(items, rec, max_in_memory=2, ids=["a", "b", "c", "d", "e"]))
    assert [t for t, _ in out] == ["a", "b", "c", "d", "e"]
    assert isinstance(out[1][1], ValueError) and "tomo_1" in str(out[1][1])
    assert isinstance(out[3][1], ValueError)
    assert [int(v[0, 0, 0]) for i, (_, v) in enumerate(out) if i in (0, 2, 4)] == [0, 2, 4]


def test_early_stop_does_not_read_everything() -> None:
    items = [f"tomo_{i}" for i in range(50)]
    rec = Recorder(delay_s=0.001)
    with PrefetchLoader(items, rec, max_in_memory=2) as loader:
        for tomo_id, _ in loader:
            if tomo_id == "tomo_2":
                break
    time.sleep(0.05)
    assert len(rec.started) <= 5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        PrefetchLoader(["a"], lambda x: x, max_in_memory=0)
    with pytest.raises(ValueError):
        PrefetchLoader(["a", "b"], lambda x: x, ids=["a"])
