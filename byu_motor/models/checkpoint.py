"""Model checkpoints: one torch file holding the full config and the weights, rebuilt with no other file.

Layout: ``{"format": "byu_motor.checkpoint/1", "config": Config.to_dict(), "state_dict": {...},
"extra": {...}}``. Written with ``torch.save`` and read with
``torch.load(..., weights_only=True)``, memory-mapped (``mmap=True``) where the file is torch's zip format:
reading the config then touches only the small pickled header, not the weights.
Optimizer and scheduler state are not stored here (the training engine keeps resume state apart).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from byu_motor.atomic import atomic_write
from byu_motor.config import Config

FORMAT = "byu_motor.checkpoint/1"
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """A file that is not a usable byu_motor checkpoint; the message names the file and the problem."""


class CheckpointHeader(NamedTuple):
    """What :func:`read_checkpoint_config` returns: the stored config and extra values."""

    config: Config
    extra: dict[str, Any]


@dataclasses.dataclass
class LoadedCheckpoint:
    """A rebuilt model (eval mode, weights loaded), its config and the stored extra values."""

    model: nn.Module
    config: Config
    extra: dict[str, Any]


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel / ``torch.compile`` / EMA wrappers (``.module``, ``._orig_mod``)."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        else:
            return model


def clean_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy of ``state_dict`` on the CPU with wrapper prefixes (``module.``, ``_orig_mod.``) removed."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    changed = True
        out[key] = value.detach().cpu() if isinstance(value, torch.Tensor) else value
    return out


def _safe_extra(value: Any, where: str) -> Any:
    """Check that ``value`` survives ``weights_only=True`` loading; numpy scalars become Python numbers."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (list, tuple)):
        return [_safe_extra(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint extra {where}: keys must be strings, got {k!r}")
            out[k] = _safe_extra(v, f"{where}.{k}")
        return out
    raise TypeError(
        f"checkpoint extra {where}: {type(value).__name__} cannot be loaded with weights_only=True "
        "(use tensors, numbers, strings, lists and dicts)"
    )


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | Mapping[str, torch.Tensor],
    config: Config,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights with ``config`` to ``path`` atomically (temp file, then ``os.replace``).

    Args:
        path: destination file (parent folders are created).
        model: the model (DDP / compiled / EMA wrappers are unwrapped) or a state dict.
        config: the full experiment config; it must rebuild ``model`` through ``create_model``.
        extra: small JSON-like values to keep beside the weights, e.g. ``{"threshold": 0.42, "step": 1000}``.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model if isinstance(model, Mapping) else unwrap_model(model).state_dict()
    payload = {
        "format": FORMAT,
        "config": config.to_dict(),
        "state_dict": clean_state_dict(state),
        "extra": _safe_extra(dict(extra or {}), "extra"),
    }
    atomic_write(path, lambda fh: torch.save(payload, fh))
    return path


def _torch_load(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, memory-mapped where the file is a zip archive.

    With ``mmap=True`` the tensors' storages stay in the file until touched (page cache), so a caller that
    only reads the config pays for the pickled header; legacy (non-zip) files cannot be mapped and load fully.
    """
    mmap = zipfile.is_zipfile(path)
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _read(path: str | os.PathLike) -> tuple[dict[str, Any], Config, dict]:
    """Load (CPU, memory-mapped) and validate a checkpoint file; returns (payload, config, extra)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = _torch_load(path)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: not a readable torch file ({type(err).__name__}: {str(err)[:200]})"
        ) from err
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"checkpoint {str(path)!r}: expected a dict with 'format', got {type(payload).__name__}"
        )
    if "format" not in payload:
        if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: a plain state dict (no 'format' key), not a {FORMAT} file; "
                "it holds no config to rebuild the model"
            )
        raise CheckpointError(f"checkpoint {str(path)!r}: no 'format' key; expected {FORMAT!r}")
    if payload["format"] != FORMAT:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: unknown format {payload['format']!r}; this version reads {FORMAT!r}"
        )
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"checkpoint {str(path)!r}: missing or invalid {key!r}")
    try:
        config = Config.from_dict(payload["config"])
    except ValueError as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: invalid config: {err}") from err
    from byu_motor.models.detector import check_names

    try:
        check_names(config.model)
    except ValueError as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: {err} (was it made by a newer byu_motor?)") from err
    extra = payload.get("extra") or {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: 'extra' must be a dict, got {type(extra).__name__}")
    return payload, config, _unmapped(extra)


def _unmapped(value: Any) -> Any:
    """``value`` with every tensor copied out of the file mapping (extra values outlive the read)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list):
        return [_unmapped(v) for v in value]
    if isinstance(value, dict):
        return {k: _unmapped(v) for k, v in value.items()}
    return value


def _check_finite(path: str | os.PathLike, state_dict: Mapping[str, Any]) -> None:
    """Refuse weights holding NaN or inf (a diverged run): such a model predicts nothing, silently."""
    bad = [
        key
        for key, value in state_dict.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]
    if bad:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: {len(bad)} weight tensor(s) hold NaN or inf, e.g. {', '.join(bad[:3])}"
        )


def read_checkpoint_config(path: str | os.PathLike) -> CheckpointHeader:
    """Validate a checkpoint and return its config and extra values without building the model.

    Inference calls this for every checkpoint before reading any tomogram, so a bad file fails early.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: not a byu_motor checkpoint, another format, or unknown encoder / neck / head.
    """
    _, config, extra = _read(path)
    return CheckpointHeader(config, extra)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> LoadedCheckpoint:
    """Rebuild the model stored in ``path`` from its config alone and load its weights.

    Args:
        path: a file written by :func:`save_checkpoint`.
        map_location: where tensors (and the returned model) go, e.g. ``"cpu"`` or ``"cuda:0"``.

    Returns:
        ``LoadedCheckpoint(model, config, extra)``; the model is in eval mode.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: as :func:`read_checkpoint_config`, a model its config cannot rebuild (bad kwargs),
            weights that do not fit the rebuilt model (missing or unexpected keys, other shapes), or NaN / inf
            weights.
    """
    from byu_motor.models.detector import create_model

    payload, config, extra = _read(path)  # CPU tensors: load_state_dict copies them into the CPU-built model
    # The weights are in the file: never look for the encoder's pretrained file (absent on Kaggle).
    model_cfg = dataclasses.replace(config.model, pretrained_file=None)
    try:
        model = create_model(model_cfg)
    except (
        ValueError,
        TypeError,
    ) as err:  # TypeError: kwargs that another encoder / neck / head does not take
        raise CheckpointError(
            f"checkpoint {str(path)!r}: cannot rebuild the {config.model.encoder}/{config.model.neck} model: "
            f"{type(err).__name__}: {err}"
        ) from err
    _check_finite(path, payload["state_dict"])
    try:
        result = model.load_state_dict(payload["state_dict"], strict=False)
    except RuntimeError as err:  # shape mismatches raise even with strict=False
        raise CheckpointError(f"checkpoint {str(path)!r}: weights do not fit the model: {err}") from err
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: weights do not fit the {config.model.encoder}/{config.model.neck} "
            f"model: missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    return LoadedCheckpoint(model, config, extra)
