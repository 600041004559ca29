"""Multi-process training helpers: process-group set-up from torchrun's env vars, sharding, barriers.

Launch with ``torchrun --nproc_per_node N -m byu_motor train ...``; torchrun sets ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``. NCCL is used on GPUs and gloo on CPU (what the tests use). A plain ``python`` run is a
world of one and never touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process validates, saves checkpoints and writes logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group spans more than one process."""
        return self.world_size > 1


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group described by ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (no-op without them).

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default NCCL when CUDA is available, else gloo.

    Returns:
        this process's :class:`DistInfo` (rank 0 of 1 outside torchrun).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank)


def pick_device(info: DistInfo, device: str | torch.device | None = None) -> torch.device:
    """The device this process trains on; on CPU under torchrun, also its share of the cores.

    Args:
        info: this process's place in the process group.
        device: requested device; default CUDA (``cuda:LOCAL_RANK`` under torchrun) when available, else CPU.
            A plain ``"cuda"`` means this process's GPU under torchrun, else GPU 0.
    """
    if device is None:
        device = f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    elif info.enabled:  # CPU processes would otherwise oversubscribe the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))
    return device


def cleanup_distributed() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op in a world of one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over all processes (returned as a new tensor; identity in a world of one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def agree_int(value: int, device: torch.device | str = "cpu") -> int:
    """Check that every process holds the same integer (e.g. the resume step) and return it.

    Raises:
        RuntimeError: naming the smallest and largest values when processes disagree.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return int(value)
    t = torch.tensor([int(value), -int(value)], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    high, low = int(t[0]), -int(t[1])
    if high != low:
        raise RuntimeError(f"processes disagree: values range from {low} to {high}")
    return high


def broadcast_object(obj: object, src: int = 0) -> object:
    """Send a picklable object from ``src`` to every process (identity in a world of one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ShardedRangeSampler(Sampler[int]):
    """Dataset indices of micro-batches ``start_batch .. n_batches - 1`` that belong to one process.

    Global micro-batch ``g`` holds dataset indices ``[g * B, (g + 1) * B)`` and is taken by rank
    ``g % world_size``: together the processes read exactly what one process would read for the same
    global batch, and restarting at ``start_batch`` continues where a stopped run left off.

    Args:
        start_batch: first global micro-batch index (resume point).
        n_batches: end (exclusive) of the global micro-batch range.
        batch_size: micro-batch size B per process.
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(self, start_batch: int, n_batches: int, batch_size: int, rank: int = 0, world_size: int = 1):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler arguments: batch_size={batch_size}, rank={rank}/{world_size}")
        self.start_batch = int(start_batch)
        self.n_batches = int(n_batches)
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)

    def _batches(self) -> range:
        first = self.start_batch + (self.rank - self.start_batch) % self.world_size
        return range(first, self.n_batches, self.world_size)

    def __iter__(self) -> Iterator[int]:
        for g in self._batches():
            yield from range(g * self.batch_size, (g + 1) * self.batch_size)

    def __len__(self) -> int:
        return len(self._batches()) * self.batch_size
