"""Prefetching tomogram loader: background threads decode the next tomograms while the caller predicts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any


class PrefetchLoader:
    """Read tomograms in background threads, in order, with a bound on how many are held in memory.

    At most ``max_in_memory`` tomograms exist at once, counting the one the caller is working on: a
    thread starts reading tomogram ``i`` only after the caller has asked for tomogram
    ``i - max_in_memory + 1`` (i.e. finished with ``i - max_in_memory``). With the default of 2 the GPU
    works on one tomogram while the next one is decoded.

    A read error never escapes a thread: it is delivered in place of the volume, so one broken tomogram
    does not stop the others.

    Example:
        >>> with PrefetchLoader(folders, read_tomogram) as loader:
        ...     for tomo_id, volume in loader:
        ...         if isinstance(volume, Exception): ...

    Args:
        folders: tomogram folders (or any items ``read_fn`` accepts), in the order to yield them.
        read_fn: ``read_fn(item) -> volume`` (e.g. :func:`byu_motor.data.io.read_tomogram`).
        max_in_memory: bound on tomograms alive at once (>= 1).
        threads: tomograms decoded in parallel (each may use its own threads inside ``read_fn``).
        ids: names yielded with each volume; default: the folder names (``Path(item).name``).

    Attributes:
        decode_s: seconds the thread spent in ``read_fn`` for the tomogram yielded last (overlapped with the
            caller's work unless the caller had to wait).
    """

    def __init__(
        self,
        folders: Sequence[str | Path | Any],
        read_fn: Callable[[Any], Any],
        max_in_memory: int = 2,
        threads: int = 1,
        ids: Sequence[str] | None = None,
    ):
        if max_in_memory < 1:
            raise ValueError(f"max_in_memory must be >= 1, got {max_in_memory}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.folders = list(folders)
        self.ids = [str(i) for i in ids] if ids is not None else [Path(f).name for f in self.folders]
        if len(self.ids) != len(self.folders):
            raise ValueError(f"{len(self.ids)} ids for {len(self.folders)} folders")
        self.read_fn = read_fn
        self.max_in_memory = int(max_in_memory)
        self.threads = max(1, min(int(threads), self.max_in_memory, max(1, len(self.folders))))
        self._slots = threading.Semaphore(self.max_in_memory)
        self._cond = threading.Condition()
        self._results: dict[int, Any] = {}
        self._next = 0
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._decode_s: dict[int, float] = {}
        self.decode_s = 0.0
        self._abandoned: set[int] = set()  # indices no consumer will take (a feed closed early)
        self._start_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.folders)

    def _work(self) -> None:
        while not self._stop.is_set():
            # hold no tomogram while waiting: its consumer may be done with it, and a reader that reuses
            # buffers (infer/pinned.py) then gets its buffer back
            value: Any = None
            # The slot is taken BEFORE the index: slots are granted in index order, so the index the
            # caller waits for always holds a slot (no deadlock however the threads interleave).
            if not self._slots.acquire(timeout=0.05):
                continue
            with self._cond:
                index = self._next
                self._next += 1
            if index >= len(self.folders) or self._stop.is_set():
                self._slots.release()
                return
            if index in self._abandoned:
                self._slots.release()
                continue
            t0 = time.perf_counter()
            try:
                value = self.read_fn(self.folders[index])
            except Exception as err:  # delivered to the caller as a value, never raised in the thread
                value = err
            with self._cond:
                if index in self._abandoned:  # its consumer left while it was being read
                    self._slots.release()
                    continue
                self._decode_s[index] = time.perf_counter() - t0
                self._results[index] = value
                self._cond.notify_all()

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(tomo_id, volume or Exception)`` in input order."""
        if self._workers:
            raise RuntimeError("a PrefetchLoader can be iterated only once")
        self.start()
        try:
            for index, tomo_id in enumerate(self.ids):
                with self._cond:
                    while index not in self._results:
                        self._cond.wait(timeout=0.1)
                    value = self._results.pop(index)
                    self.decode_s = self._decode_s.pop(index, 0.0)
                yield tomo_id, value
                del value
                # The caller asked for the next tomogram: it is done with this one, free its slot.
                self._slots.release()
        finally:
            self.close()

    def start(self) -> None:
        """Start the reading threads (once; iterating or feeding starts them too)."""
        with self._start_lock:
            if self._workers:
                return
            self._workers = [
                threading.Thread(target=self._work, name=f"prefetch-{k}", daemon=True)
                for k in range(self.threads)
            ]
            for worker in self._workers:
                worker.start()

    def feed(self, indices: Sequence[int]) -> LoaderFeed:
        """One consumer's share of a loader shared by several (e.g. one per device): the items at ``indices``
        (increasing), yielded in that order. The reading threads, the read order (by index, across all feeds)
        and the bound on tomograms in memory are shared; give every item to exactly one feed."""
        return LoaderFeed(self, list(indices))

    def _take(self, index: int) -> tuple[str, Any, float]:
        """Wait for item ``index``: ``(tomo_id, value, decode seconds)`` (its slot stays taken until :meth:`_done`)."""
        with self._cond:
            while index not in self._results:
                self._cond.wait(timeout=0.1)
            return self.ids[index], self._results.pop(index), self._decode_s.pop(index, 0.0)

    def _done(self, index: int) -> None:
        """The consumer is finished with item ``index``: free its slot."""
        self._slots.release()

    def _abandon(self, indices: Sequence[int]) -> None:
        """No consumer will take ``indices``: drop those read, skip those not read yet."""
        with self._cond:
            for index in indices:
                self._abandoned.add(index)
                if index in self._results:
                    del self._results[index]
                    self._slots.release()

    def close(self) -> None:
        """Stop the threads (pending reads finish, nothing new starts) and drop unread volumes."""
        self._stop.set()
        for _ in self._workers:  # wake threads waiting for a slot now, not at their next poll
            self._slots.release()
        for worker in self._workers:
            if worker is not threading.current_thread():
                worker.join(timeout=60)
        with self._cond:
            self._results.clear()

    def __enter__(self) -> PrefetchLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoaderFeed:
    """One consumer's items of a shared :class:`PrefetchLoader` (:meth:`PrefetchLoader.feed`): iterate it for
    ``(tomo_id, volume or Exception)`` in its order; closing it early (``with`` or :meth:`close`) gives up the
    items not taken, so they never hold the other consumers' memory slots.

    Attributes:
        decode_s: seconds spent reading the item yielded last.
    """

    def __init__(self, loader: PrefetchLoader, indices: list[int]):
        self.loader = loader
        self.indices = indices
        self.decode_s = 0.0
        self._pos = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        self.loader.start()
        while self._pos < len(self.indices):
            index = self.indices[self._pos]
            tomo_id, value, self.decode_s = self.loader._take(index)
            self._pos += 1
            try:
                yield tomo_id, value
            finally:
                del value
                self.loader._done(index)

    def close(self) -> None:
        """Give up the items not taken yet."""
        self.loader._abandon(self.indices[self._pos :])
        self._pos = len(self.indices)

    def __enter__(self) -> LoaderFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
