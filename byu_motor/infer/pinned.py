"""Reusable page-locked (pinned) host buffers that test tomograms are decoded straight into.

On the device path the host only decodes: a tomogram decoded into pinned memory goes to the card in one
non-blocking copy, with no staging copy on the host (:class:`byu_motor.infer.device_volume.VolumeStager`).
Page-locking is slow (it touches every page), so the buffers are kept and reused: a :class:`PinnedPool` holds
at most ``capacity`` blocks (the loader's bound on tomograms in memory), each grown to the largest tomogram it
has held. Its blocks are ordinary numpy memory registered with ``cudaHostRegister`` (not torch's caching host
allocator, which rounds every size up to a power of two and keeps each size class), so the pinned memory is
bounded by ``capacity`` x the largest tomogram and is given back when the pool goes.

A block returns to the pool when nothing references the volume handed out from it any more (views
included), so a buffer is never overwritten while any part of a tomogram still reads it.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)


def cuda_register(block: np.ndarray, device: str) -> None:
    """Page-lock ``block``'s memory for every CUDA context (``cudaHostRegisterPortable``), on ``device``.

    Raises:
        RuntimeError: the CUDA runtime refused (the error code in the message).
    """
    import torch

    with torch.cuda.device(torch.device(device)):  # no context is created on another card
        err = int(torch.cuda.cudart().cudaHostRegister(block.ctypes.data, block.nbytes, 1))
    if err != 0:
        raise RuntimeError(f"cudaHostRegister of {block.nbytes / 2**20:.0f} MiB failed (cudaError {err})")


def cuda_unregister(block: np.ndarray, device: str) -> None:
    """Undo :func:`cuda_register` (before ``block`` is freed)."""
    import torch

    with torch.cuda.device(torch.device(device)):
        err = int(torch.cuda.cudart().cudaHostUnregister(block.ctypes.data))
    if err != 0:
        log.warning("cudaHostUnregister failed (cudaError %d); the block is kept", err)


#: page size assumed for alignment (page-locking works on whole pages)
PAGE = 4096


def _page_aligned(n: int) -> np.ndarray:
    """A flat uint8 array of ``n`` bytes starting on a page boundary (sharing no page with other arrays)."""
    raw = np.empty(n + 2 * PAGE, dtype=np.uint8)
    start = -raw.ctypes.data % PAGE
    return raw[start : start + n]


class PinnedPool:
    """``pool(shape) -> uint8 array`` in pinned host memory, reused across tomograms; a ``read_tomogram``
    ``alloc``.

    A request takes the smallest free block that fits. With none, it registers a new block while the pool holds
    fewer than ``capacity``, else replaces the largest free (too small) one. When every block is in use, or
    page-locking fails (then never again: one warning), it returns ordinary pageable memory: a request never
    waits and never fails for lack of pinned memory.

    Args:
        capacity: most blocks held (>= 1), e.g. the tomograms a loader keeps in memory at once.
        device: CUDA device whose context registers the blocks (``"cuda:0"``).
        register: ``register(block, device)`` page-locks a flat uint8 block (tests pass a fake).
        unregister: ``unregister(block, device)`` undoes it.

    Attributes:
        registered: blocks page-locked so far (growth included), a measure of the slow calls.
        pinned_hits: requests served from pinned memory.
        pageable: requests served from pageable memory.
    """

    def __init__(
        self,
        capacity: int,
        device: str = "cuda:0",
        register: Callable[[np.ndarray, str], None] = cuda_register,
        unregister: Callable[[np.ndarray, str], None] = cuda_unregister,
    ):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.device = str(device)
        self._register, self._unregister = register, unregister
        self._free: list[np.ndarray] = []
        self._held = 0  # blocks registered and not released (free or handed out)
        # re-entrant: a volume collected by the garbage collector inside _take gives its block back there
        self._lock = threading.RLock()
        self._off = False  # closed, or page-locking failed: pageable from now on
        self.registered = self.pinned_hits = self.pageable = 0

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        """A C-contiguous uint8 array of ``shape``: a view of a pinned block when one is free (or can be made)."""
        n = math.prod(shape)
        with self._lock:
            try:
                block = self._take(n)
            except Exception as err:  # pinned memory is an optimisation: never a reason to fail a tomogram
                self._off = True
                log.warning("pinned decoding off (%s): tomograms are decoded into pageable memory", err)
                block = None
            self.pinned_hits += block is not None
            self.pageable += block is None
        if block is None:
            return np.empty(shape, dtype=np.uint8)
        import torch  # a tensor between the block and the volume: views of the volume then keep the volume alive

        volume = torch.from_numpy(block[:n]).view(shape).numpy()
        # not at interpreter exit: the CUDA runtime may be gone by then, and the process frees everything anyway
        weakref.finalize(volume, self._give, block).atexit = False
        return volume

    def _remove(self, block: np.ndarray) -> None:
        """Take ``block`` out of the free list by identity (``list.remove`` would compare arrays by value)."""
        del self._free[next(k for k, b in enumerate(self._free) if b is block)]

    def _take(self, n: int) -> np.ndarray | None:
        """A free pinned block of at least ``n`` bytes, registering one if needed; ``None``: all in use."""
        with self._lock:
            if self._off:
                return None
            fits = [b for b in self._free if b.size >= n]
            if fits:
                block = min(fits, key=lambda b: b.size)
                self._remove(block)
                return block
            if self._held >= self.capacity:
                if not self._free:
                    return None  # all in use: never wait for one
                self._drop(max(self._free, key=lambda b: b.size))
            block = _page_aligned(n)
            self._register(block, self.device)  # raises when refused (the caller turns the pool off)
            self._held += 1
            self.registered += 1
            return block

    def _drop(self, block: np.ndarray) -> None:
        """Unregister a free block and forget it (called with the lock held)."""
        self._remove(block)
        self._held -= 1
        self._unregister(block, self.device)

    def _give(self, block: np.ndarray) -> None:
        """The volume made from ``block`` is gone: the block is free again (unregistered if the pool is off)."""
        with self._lock:
            self._free.append(block)
            if self._off:
                self._drop(block)

    def close(self) -> None:
        """Unregister the free blocks, and each block still handed out once its volume is gone; later requests
        get pageable memory."""
        with self._lock:
            self._off = True
            for block in list(self._free):
                self._drop(block)

    def __reduce__(self) -> tuple:
        # a pool sent to another process is a new, empty pool there (registrations belong to one process)
        return (type(self), (self.capacity, self.device, self._register, self._unregister))


def pinned_pool(prefetch: int, devices: list[str], on_device: bool) -> PinnedPool | None:
    """The pool a prediction run decodes into: one block per tomogram the run holds in memory
    (``prefetch`` per device), when every device is a CUDA card and volumes are resampled there
    (``on_device``); ``None`` (pageable memory) otherwise.

    Args:
        prefetch: ``InferConfig.prefetch``, tomograms in memory per device.
        devices: the run's devices (``"cuda:0"``, ``"cpu"``).
        on_device: ``InferConfig.resample_on_device``.
    """
    if not on_device or not devices or not all(d.startswith("cuda") for d in devices):
        return None
    return PinnedPool(max(1, prefetch) * len(devices), devices[0])
