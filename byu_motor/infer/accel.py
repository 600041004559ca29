"""What a CUDA card supports: the autocast precision (bf16 or fp16) and whether ``torch.compile`` can run.

Kaggle's T4 (sm 7.5) has no bf16, a P100 (sm 6.0) neither, and Triton (the compiler behind ``torch.compile``)
needs sm 7.0 or newer: on such cards inference falls back to fp16 autocast and eager mode, with one warning.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # devices already warned about (one warning per process and device)

#: the oldest CUDA capability Triton generates code for
TRITON_MIN_CAPABILITY = (7, 0)
#: the oldest CUDA capability with native bf16 (Ampere)
BF16_MIN_CAPABILITY = (8, 0)


def _capability(device: torch.device) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def autocast_dtype(device: str | torch.device) -> torch.dtype | None:
    """The autocast precision on ``device``: bf16 on CUDA cards that have it natively (sm >= 8.0), fp16 on
    older ones (T4, P100, V100), ``None`` (no autocast) on any other device."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    if _capability(device) >= BF16_MIN_CAPABILITY and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: str | torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """``torch.autocast`` at :func:`autocast_dtype` on CUDA when ``enabled``; a no-op context otherwise."""
    dtype = autocast_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def compile_supported(device: str | torch.device) -> bool:
    """Whether ``torch.compile`` can generate code for ``device`` (CPU: yes; CUDA: capability >= 7.0)."""
    device = torch.device(device)
    return device.type != "cuda" or _capability(device) >= TRITON_MIN_CAPABILITY


def maybe_compile(module: nn.Module, device: str | torch.device) -> nn.Module:
    """``torch.compile(module)``, or ``module`` itself (eager) with one warning on a card Triton does not
    support (capability < 7.0, e.g. a P100 at sm 6.0)."""
    device = torch.device(device)
    if not compile_supported(device):
        major, minor = _capability(device)
        if str(device) in _WARNED:
            return module
        _WARNED.add(str(device))
        log.warning(
            "infer.compile: %s (sm %d.%d) is older than Triton supports (sm 7.0): running the models eagerly",
            torch.cuda.get_device_name(device),
            major,
            minor,
        )
        return module
    return torch.compile(module, dynamic=False)
