"""Training memory without a GPU: what autograd keeps for one fp16 micro-batch, counted on the ``meta`` device.

The model runs on PyTorch's ``meta`` device in fp16 at the config's training patch and batch, and every
tensor autograd saves for backward is counted. With gradient checkpointing (``model.grad_checkpointing``,
the ``_16gb`` presets of :func:`byu_motor.presets.for_16gb`) the checkpointed encoder stages keep only their
outputs, plus the largest stage's activations while it is recomputed. Weights, gradients and AdamW state
add 16 bytes per parameter. Activation gradients, cuDNN workspace and allocator slack are not counted: the
result is a lower bound. ``bench/memory.py`` and ``bench/throughput.py`` print it per training memory mode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import torch

from byu_motor.config import Config

#: Training memory modes: ``full`` is the preset as the seed trained it, ``16gb`` its ``_16gb`` variant.
MEMORY_MODES = ("full", "16gb")
_GIB = 2.0**30


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak memory of one training micro-batch, in GiB (2**30 bytes).

    Attributes:
        activations_gib: tensors saved for backward (fp16); with checkpointing the stage outputs plus the
            largest stage's recomputation.
        weights_gib: fp32 weights, gradients and the two AdamW moments (16 B per parameter).
    """

    activations_gib: float
    weights_gib: float

    @property
    def total_gib(self) -> float:
        """Activations plus weights / gradients / AdamW state, GiB."""
        return self.activations_gib + self.weights_gib

    def line(self) -> str:
        """One printable line: ``activations A GiB + weights/grads/AdamW W GiB = T GiB (lower bound)``."""
        return (
            f"activations {self.activations_gib:5.1f} GiB + weights/grads/AdamW {self.weights_gib:4.1f} GiB = "
            f"{self.total_gib:5.1f} GiB (lower bound)"
        )


def mode_preset(member: str, mode: str) -> str:
    """The preset name of ``member`` (e.g. ``seed_resnext50``) in a memory ``mode`` (``full`` / ``16gb``)."""
    if mode not in MEMORY_MODES:
        raise ValueError(f"unknown memory mode {mode!r}; expected one of {MEMORY_MODES}")
    return member if mode == "full" else f"{member}_16gb"


def estimate_training_memory(cfg: Config) -> MemoryEstimate:
    """Bytes autograd keeps for one fp16 training micro-batch of ``cfg`` (``meta`` device, no data, no GPU).

    Args:
        cfg: the run's config; its ``data.patch_size`` (z, y, x voxels), ``train.batch_size`` and
            ``model.grad_checkpointing`` set the input and the mode. The model must have
            ``encoder.stages`` (every registry encoder has).

    Returns:
        The :class:`MemoryEstimate` (a lower bound, see the module docstring).
    """
    from byu_motor.models import create_model

    ckpt = cfg.model.grad_checkpointing
    # Stages are measured one by one below, then combined as checkpointing would keep them.
    model_cfg = dataclasses.replace(cfg.model, grad_checkpointing=False, pretrained_file=None)
    with torch.device("meta"):
        model = create_model(model_cfg).half().train()
        x = torch.empty(cfg.train.batch_size, 1, *cfg.data.patch_size, dtype=torch.half)
    saved, per_stage, outputs = [0], [], []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    def before(module, args) -> None:
        per_stage.append(-saved[0])

    def after(module, args, out) -> None:
        per_stage[-1] += saved[0]
        outputs.append(out.numel() * out.element_size())

    for stage in model.encoder.stages:
        stage.register_forward_pre_hook(before)
        stage.register_forward_hook(after)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    act = saved[0]
    if ckpt:  # stages keep their outputs; one stage at a time is recomputed in backward
        act = act - sum(per_stage) + sum(outputs) + max(per_stage)
    weights = 16 * sum(p.numel() for p in model.parameters())
    return MemoryEstimate(act / _GIB, weights / _GIB)


def estimate_modes(members: Sequence[str]) -> Iterator[tuple[str, str, MemoryEstimate]]:
    """``(member, mode, estimate)`` for each preset in ``members`` and each of :data:`MEMORY_MODES`."""
    from byu_motor.presets import get_preset

    for member in members:
        for mode in MEMORY_MODES:
            yield member, mode, estimate_training_memory(get_preset(mode_preset(member, mode)))
