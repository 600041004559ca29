"""Checks a prediction run makes before it reads any tomogram: the output path, the devices, the models.

A run that cannot finish must fail in seconds, naming what is wrong, and create nothing: not after
reading every test slice, not with a traceback and no CSV. So :func:`byu_motor.infer.runner.run_prediction`
calls, in order, :func:`check_output` (creates nothing), :func:`check_devices` (through
:func:`resolve_devices`), then :func:`check_models` (each checkpoint built, loaded
strictly with finite weights, and run once on the chosen device), and only then creates the output folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Device types a prediction runs on; "cuda" alone means the current CUDA device.
_DEVICE_TYPES = ("cpu", "cuda")
# (path, device) -> (size, mtime) of the checkpoint file when check_models put its model in the spec cache
_CHECKED: dict[tuple[str, str], tuple[int, int]] = {}


def check_output(out_csv: str | os.PathLike) -> Path:
    """Validate the submission path before any work and return it resolved; creates nothing.

    The resolved path also names the partial file, so ``./a/../sub.csv`` and ``sub.csv`` resume each other.

    Args:
        out_csv: the ``--out`` value.

    Returns:
        ``out_csv`` as an absolute path with ``..`` and symlinks resolved.

    Raises:
        ValueError: an empty path, a directory (existing, or written with a trailing slash), a path under a
            file, or a folder that cannot be written, naming the path.
    """
    raw = os.fspath(out_csv)
    if not str(raw).strip():
        raise ValueError("output path is empty: name the submission CSV, e.g. --out submission.csv")
    path = Path(raw).expanduser().resolve()
    if path.is_dir() or str(raw).endswith(("/", os.sep)):  # "out/" names a folder even before it exists
        raise ValueError(
            f"output {raw}: is a directory; name a file in it, e.g. {Path(raw) / 'submission.csv'}"
        )
    partial = Path(f"{path}.partial.jsonl")
    if partial.is_dir():
        raise ValueError(f"output {raw}: its resume file {partial} is a directory")
    folder = path.parent
    while not folder.exists():  # the nearest existing ancestor decides: the rest is created later
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"output {raw}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"output {raw}: folder {folder} is not writable")
    return path


def check_devices(names: Sequence[str]) -> list[str]:
    """Validate explicit device names (``cpu``, ``cuda``, ``cuda:N``) against this machine.

    Args:
        names: device names as given (``auto`` is expanded by the caller before).

    Returns:
        ``names`` as a list, unchanged.

    Raises:
        ValueError: ``device NAME: ...`` for a name torch does not know, a type other than cpu / cuda, CUDA
            asked on a machine without it, or a CUDA index that is not visible.
    """
    import torch

    for name in names:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            raise ValueError(f"device {name}: not a device name; use auto, cpu, cuda or cuda:N") from None
        if device.type not in _DEVICE_TYPES:
            raise ValueError(
                f"device {name}: unsupported type {device.type!r}; use auto, cpu, cuda or cuda:N"
            )
        if device.type != "cuda":
            continue
        if not torch.cuda.is_available():
            raise ValueError(f"device {name}: CUDA is not available on this machine (use --devices cpu)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device {name}: only {count} CUDA device(s) visible (cuda:0 to cuda:{count - 1})"
            )
    return list(names)


def warn_if_untrained(path: str | os.PathLike, extra: Mapping[str, Any] | None) -> bool:
    """Warn when a checkpoint's ``extra`` holds no training record (no ``"step"``).

    Training writes ``step`` (with ``threshold`` and ``f2``) into every checkpoint it saves
    (:func:`byu_motor.train.checkpointing.checkpoint_extra`); a file without it was saved by hand and may
    hold random weights, which no check on the weights alone can tell apart from trained ones.

    Returns:
        Whether a warning was given.
    """
    if extra is not None and "step" in extra:
        return False
    log.warning(
        "checkpoint %s holds no training record (no 'step' in its extra): are its weights trained?", path
    )
    return True


def _one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (torch errors span many lines)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _smoke_forward(module: Any, stride: Sequence[int], device: str) -> tuple[int, ...]:
    """Run ``module`` once on zeros of the smallest size it takes whole; returns the output shape.

    Raises:
        ValueError: the output is not a 5-D tensor or holds NaN / inf.
    """
    import torch

    size = tuple(int(v) for v in (getattr(module, "pad_multiple", None) or stride))
    with torch.inference_mode():
        out = module(torch.zeros((1, 1, *size), device=device))
    if isinstance(out, (list, tuple)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 5:
        got = type(out).__name__ if not isinstance(out, torch.Tensor) else f"a {out.ndim}-D tensor"
        raise ValueError(f"a forward pass on {size} zeros gives {got}, not [B, 1, D, H, W] logits")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"a forward pass on {size} zeros gives NaN or inf")
    return tuple(out.shape)


def check_model(path: str, device: str) -> Any:
    """Build and load one checkpoint on ``device`` and run it once; returns its ``ModelSpec``.

    :func:`byu_motor.models.checkpoint.load_checkpoint` refuses missing or unexpected keys, shapes that do
    not fit, an encoder or kwargs that do not build, and NaN / inf weights; the forward pass catches the rest
    (a model that does not run on the device, non-finite logits).

    Raises:
        ValueError: one line naming the checkpoint (and the device when the forward pass failed).
    """
    from byu_motor.infer.spec import ModelSpec
    from byu_motor.models.checkpoint import CheckpointError

    try:
        spec = ModelSpec.from_checkpoint(path, device)
    except CheckpointError as err:
        raise ValueError(str(err).splitlines()[0]) from err
    except Exception as err:
        raise ValueError(f"checkpoint {path}: cannot be loaded on {device}: {_one_line(err)}") from err
    try:
        _smoke_forward(spec.module, spec.stride3, device)
    except Exception as err:
        raise ValueError(f"checkpoint {path}: the model does not run on {device}: {_one_line(err)}") from err
    return spec


def _stamp(path: str | os.PathLike) -> tuple[int, int]:
    """``(size, mtime in ns)`` of a file: tells a checkpoint rewritten in place from the one cached."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def check_models(paths: Sequence[str], devices: Sequence[str], cache: dict[tuple[str, str], Any]) -> None:
    """Check every checkpoint with :func:`check_model` on the first device, before any tomogram is read.

    With one device the run predicts in this process, so the loaded specs go into ``cache`` (the workers'
    spec cache, keyed ``(path, device)``) and each checkpoint is loaded once. With several, the workers are
    other processes that load their own; the checked models are dropped here. A cached model is reused only
    while its file keeps the size and modification time it had when checked.

    Args:
        paths: checkpoint paths as the workers will name them.
        devices: the resolved devices of the run.
        cache: ``byu_motor.infer.workers._SPEC_CACHE``.

    Raises:
        ValueError: the first unusable checkpoint, naming it.
    """
    device = str(devices[0])
    for path in paths:
        key, stamp = (str(path), device), _stamp(path)
        if key in cache and _CHECKED.get(key) == stamp:
            continue  # checked and cached earlier in this process, and the file is unchanged since
        cache.pop(key, None)  # a file rewritten since (retrained): its cached model is stale
        spec = check_model(str(path), device)
        if len(devices) == 1:
            cache[key], _CHECKED[key] = spec, stamp
    if len(devices) > 1 and device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
    log.info("preflight: %d checkpoint(s) loaded and run once on %s", len(paths), device)


def resolve_devices(devices: str | Sequence[str] | None) -> list[str]:
    """Devices to run on: ``None``/``"auto"`` = every visible GPU, else the CPU; ``"cuda"`` = every GPU.

    Args:
        devices: ``None``, ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:0,cuda:1"`` or a list of device names.

    Raises:
        ValueError: ``device NAME: ...`` naming the device: an unknown name (``gpu``), CUDA asked on a machine
            without it, or a CUDA index that is not visible (see :func:`check_devices`).
    """
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    devices = [str(d).strip() for d in devices or ["auto"]]
    if devices in (["auto"], ["cuda"]):
        import torch

        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n_gpus == 0 and devices == ["cuda"]:
            raise ValueError("device cuda: no CUDA device is visible on this machine (use --devices cpu)")
        return [f"cuda:{i}" for i in range(n_gpus)] or ["cpu"]
    return check_devices(devices)


__all__ = [
    "check_devices",
    "check_model",
    "check_models",
    "check_output",
    "resolve_devices",
    "warn_if_untrained",
]
