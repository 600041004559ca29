"""Decoding straight into reusable pinned buffers: the pool's reuse, bound and fallbacks (page-locking
stood in for by a recorder: this machine has no CUDA), the reader that uses it, and the worker loops that
must let a tomogram go before the next is read."""

from __future__ import annotations

import gc
import logging
import pickle

import numpy as np
import pytest
import torch

from byu_motor.config import InferConfig
from byu_motor.data.io import read_tomogram, write_tomogram
from byu_motor.infer.budget import build_levels
from byu_motor.infer.device_threads import run_threads
from byu_motor.infer.device_volume import VolumeStager
from byu_motor.infer.pinned import PAGE, PinnedPool, pinned_pool
from byu_motor.infer.testset import prediction_reader
from byu_motor.infer.workers import WorkerJob, run_worker, split_jobs


class Locks:
    """Stands in for cudaHostRegister / cudaHostUnregister: the blocks locked now, and every call."""

    def __init__(self, fail: bool = False):
        self.locked: dict[int, int] = {}
        self.calls: list[tuple[str, int]] = []
        self.fail = fail

    def register(self, block: np.ndarray, device: str) -> None:
        self.calls.append(("register", block.size))
        if self.fail:
            raise RuntimeError("cudaHostRegister failed (cudaError 2)")
        self.locked[block.ctypes.data] = block.size

    def unregister(self, block: np.ndarray, device: str) -> None:
        self.calls.append(("unregister", block.size))
        del self.locked[block.ctypes.data]


def _pool(capacity: int, locks: Locks) -> PinnedPool:
    return PinnedPool(capacity, "cuda:0", locks.register, locks.unregister)


def _in_pool(volume: np.ndarray, locks: Locks) -> bool:
    """Whether ``volume``'s memory lies in a block locked now."""
    start = volume.ctypes.data
    return any(base <= start and start + volume.nbytes <= base + n for base, n in locks.locked.items())


def test_blocks_are_reused_once_the_volume_and_its_views_are_gone() -> None:
    locks = Locks()
    pool = _pool(2, locks)
    a = pool((4, 5, 6))
    assert a.shape == (4, 5, 6) and a.dtype == np.uint8 and a.flags.c_contiguous and _in_pool(a, locks)
    assert all(base % PAGE == 0 for base in locks.locked)  # page-locking works on whole pages
    address = a.ctypes.data
    del a
    gc.collect()
    b = pool((4, 5, 6))
    assert b.ctypes.data == address and pool.registered == 1  # the same block, page-locked once
    view = b[1:3]  # a window of the volume outlives the volume itself
    del b
    gc.collect()
    c = pool((4, 5, 6))
    assert not np.shares_memory(c, view) and pool.registered == 2  # the viewed block stays taken
    del view
    gc.collect()
    d = pool((2, 5, 6))  # smaller: the smallest free block that fits
    assert _in_pool(d, locks) and pool.registered == 2 and pool.pageable == 0


def test_a_free_block_is_found_by_identity_among_others() -> None:
    locks = Locks()
    pool = _pool(3, locks)
    small, big, other = pool((2, 2, 2)), pool((4, 4, 4)), pool((2, 2, 2))
    big_address = big.ctypes.data
    del small, big, other
    gc.collect()
    # the free list holds two 8-byte blocks and a 64-byte one: picking the big one compares it with the others
    v = pool((3, 4, 4))
    assert v.ctypes.data == big_address and pool.registered == 3


def test_capacity_bounds_the_pinned_memory_and_never_blocks() -> None:
    locks = Locks()
    pool = _pool(2, locks)
    held = [pool((3, 4, 5)) for _ in range(3)]  # one more than the pool holds
    assert [_in_pool(v, locks) for v in held] == [True, True, False]
    assert pool.registered == 2 and pool.pinned_hits == 2 and pool.pageable == 1
    held[2][:] = 7  # the pageable volume is an ordinary writable array
    # a bigger tomogram when both blocks are free but too small: the largest free block is replaced
    del held
    gc.collect()
    big = pool((6, 4, 5))
    assert _in_pool(big, locks) and len(locks.locked) == 2
    assert locks.calls[-2:] == [("unregister", 60), ("register", 120)]


def test_a_refused_page_lock_warns_once_and_falls_back(caplog) -> None:
    locks = Locks(fail=True)
    pool = _pool(2, locks)
    with caplog.at_level(logging.WARNING):
        volumes = [pool((2, 3, 4)) for _ in range(3)]
    assert all(v.shape == (2, 3, 4) for v in volumes) and pool.pageable == 3
    assert locks.calls == [("register", 24)]  # not tried again
    assert caplog.text.count("pinned decoding off") == 1 and "cudaError 2" in caplog.text


def test_any_pool_failure_gives_pageable_memory_never_an_error(caplog) -> None:
    locks = Locks()

    def refuse(block: np.ndarray, device: str) -> None:
        raise RuntimeError("cudaHostUnregister failed (cudaError 1)")

    pool = PinnedPool(1, "cuda:0", locks.register, refuse)
    first = pool((2, 2, 2))
    del first
    gc.collect()
    with caplog.at_level(logging.WARNING):
        bigger = pool((4, 4, 4))  # growing needs the small block unregistered, which fails
    assert bigger.shape == (4, 4, 4) and pool.pageable == 1 and "pinned decoding off" in caplog.text


def test_close_unlocks_free_blocks_then_those_handed_out() -> None:
    locks = Locks()
    pool = _pool(2, locks)
    kept, dropped = pool((2, 2, 2)), pool((2, 2, 2))
    del dropped
    gc.collect()
    pool.close()
    assert len(locks.locked) == 1  # the free block at once
    del kept
    gc.collect()
    assert locks.locked == {}  # the other when its volume went
    assert not _in_pool(pool((2, 2, 2)), locks) and pool.pageable == 1  # a closed pool hands out pageable


def test_a_pool_crosses_processes_empty() -> None:
    pool = PinnedPool(3, "cuda:1")
    copy = pickle.loads(pickle.dumps(pool))
    assert (copy.capacity, copy.device, copy.registered) == (3, "cuda:1", 0)


def test_runs_decode_into_pinned_memory_only_on_the_cuda_device_path() -> None:
    assert pinned_pool(2, ["cpu"], True) is None
    assert pinned_pool(2, ["cuda:0", "cpu"], True) is None
    assert pinned_pool(2, ["cuda:0"], False) is None  # host resampling: no upload to speed up
    pool = pinned_pool(2, ["cuda:0", "cuda:1"], True)
    assert isinstance(pool, PinnedPool) and pool.capacity == 4 and pool.device == "cuda:0"
    with pytest.raises(ValueError, match="capacity"):
        PinnedPool(0)


def test_the_run_reader_decodes_and_repairs_inside_the_pool(tmp_path) -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 100, (5, 16, 20), dtype=np.uint8)  # wrapped: the grey a run restores
    write_tomogram(((volume.astype(np.int16) + 129) % 256).astype(np.uint8), tmp_path / "tomo_a")
    locks = Locks()
    pool = _pool(2, locks)
    reader = prediction_reader(read_tomogram, InferConfig(read_threads=2), True, pool)
    got = reader(tmp_path / "tomo_a")
    expected = prediction_reader(read_tomogram, InferConfig(read_threads=2), True)(tmp_path / "tomo_a")
    assert _in_pool(got, locks) and pool.pinned_hits == 1
    np.testing.assert_array_equal(got, expected)  # same bytes as the pageable reader, repaired in place
    custom = prediction_reader(lambda folder: np.zeros((2, 2, 2), np.uint8), InferConfig(), False, pool)
    assert not _in_pool(custom(tmp_path), locks)  # a user's reader is left as it is


class Echo:
    """A predictor that checks the volume it gets was decoded into a pinned block."""

    def __init__(self, locks: Locks):
        self.locks = locks
        self.pinned: list[bool] = []

    def predict_volume(self, volume, spacing_a):
        self.pinned.append(_in_pool(volume, self.locks))
        return [(1.0, 2.0, 3.0, 0.9)]


def _pool_reader(pool: PinnedPool):
    def read(folder: str) -> np.ndarray:
        out = pool((4, 5, 6))
        out[:] = int(folder.rsplit("t", 1)[1])
        if folder.endswith("t3"):  # fails half-way: its traceback holds the buffer
            raise OSError(f"{folder}: slice 2 is corrupt")
        return out

    return read


@pytest.mark.parametrize("devices", [["cpu"], ["cpu", "cpu"]])
def test_worker_loops_let_each_tomogram_go_before_the_next_is_read(devices) -> None:
    """With blocks for ``prefetch`` tomograms per device, every tomogram of a run lands in pinned memory: the
    worker loop holds no tomogram it has finished while the loader reads ahead (one did, in stage_timer's
    ``timed_iter``: prefetch 2 then held three volumes at once), nor the error of one that failed half-read."""
    locks = Locks()
    cfg = InferConfig(prefetch=2)
    pool = PinnedPool(cfg.prefetch * len(devices), "cuda:0", locks.register, locks.unregister)
    echo = Echo(locks)
    template = WorkerJob(0, devices[0], [], ["a.pt"], cfg, build_levels(cfg, ["a.pt"])[:1], None, 16.0,
                         lambda paths, config, device: echo, _pool_reader(pool))  # fmt: skip
    jobs = split_jobs(template, [(f"t{k}", f"/d/t{k}") for k in range(9)], devices)
    events: list[dict] = []
    if len(jobs) == 1:
        run_worker(jobs[0], events.append)
    else:
        run_threads(jobs, events.append)
    assert sum(e["event"] == "result" and e["status"] == "ok" for e in events) == 8  # t3 is a read error
    assert echo.pinned == [True] * 8 and pool.pageable == 0
    assert pool.registered <= pool.capacity


def test_the_stager_uploads_a_pinned_volume_without_a_staging_copy(monkeypatch) -> None:
    stager = VolumeStager("cuda:0", on_device=True)
    host = torch.arange(24, dtype=torch.uint8).view(2, 3, 4)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: True)
    staged = stager.pinned(host)
    assert staged.data_ptr() == host.data_ptr() and stager._pinned is None  # no copy, no staging buffer
