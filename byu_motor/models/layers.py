"""Small building blocks shared by the 3D encoders: the staged-encoder base, argument checks, weight loading."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

Triple = tuple[int, int, int]


def as_triple(value: int | Sequence[int], name: str = "stride") -> Triple:
    """Expand an int or a 3-sequence to a per-axis ``(z, y, x)`` triple of positive ints.

    Args:
        value: one int for all axes, or three ints.
        name: argument name used in the error message.

    Returns:
        ``(z, y, x)`` tuple.
    """
    if isinstance(value, int):
        triple = (value, value, value)
    else:
        triple = tuple(int(v) for v in value)
    if len(triple) != 3 or any(v < 1 for v in triple):
        raise ValueError(f"{name} must be a positive int or three positive ints (z, y, x), got {value!r}")
    return triple  # type: ignore[return-value]


def check_no_extra_kwargs(encoder: str, kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError`` naming the encoder when a factory got keyword arguments it does not know.

    Args:
        encoder: encoder name, for the message.
        kwargs: the leftover keyword arguments.
    """
    if kwargs:
        raise TypeError(f"encoder {encoder!r} got unknown keyword arguments: {', '.join(sorted(kwargs))}")


def cumulative_strides(stem_stride: Triple, stage_strides: Iterable[Triple]) -> list[Triple]:
    """Cumulative per-axis stride after the stem and after each later stage.

    Args:
        stem_stride: stride of the stem (the first feature map).
        stage_strides: stride of each following stage.

    Returns:
        One ``(z, y, x)`` stride per feature map, the stem's first.
    """
    out = [tuple(stem_stride)]
    for stride in stage_strides:
        out.append(tuple(a * b for a, b in zip(out[-1], stride)))
    return out  # type: ignore[return-value]


class StagedEncoder(nn.Module):
    """An encoder made of sequential stages; the output of every stage is one feature map.

    Args:
        stages: modules run one after another; stage ``i`` maps feature ``i-1`` (or the input) to feature ``i``.
        out_channels: channels of each stage output.
        strides: cumulative ``(z, y, x)`` stride of each stage output relative to the input.
        grad_checkpointing: recompute each stage in backward (saves activation memory while training).
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        out_channels: Sequence[int],
        strides: Sequence[Sequence[int]],
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        if not (len(stages) == len(out_channels) == len(strides)):
            raise ValueError(
                f"stages ({len(stages)}), out_channels ({len(out_channels)}) and strides ({len(strides)}) "
                "must have the same length"
            )
        self.stages = nn.ModuleList(stages)
        self.out_channels: list[int] = [int(c) for c in out_channels]
        self.strides: list[Triple] = [as_triple(s) for s in strides]
        self.grad_checkpointing = bool(grad_checkpointing)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Turn activation checkpointing of the stages on or off."""
        self.grad_checkpointing = bool(enable)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run the stages.

        Args:
            x: input ``[B, C, D, H, W]``.

        Returns:
            Feature maps shallow to deep; map ``i`` is ``[B, out_channels[i], D/sz, H/sy, W/sx]``.
        """
        features = []
        use_checkpoint = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for stage in self.stages:
            x = checkpoint(stage, x, use_reentrant=False) if use_checkpoint else stage(x)
            features.append(x)
        return features


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a local ``.pth``/``.pt``/``.bin`` (``weights_only=True``) or ``.safetensors`` file.

    Wrappers are unpacked (``{"state_dict": ...}``, ``{"model": ...}``) and a ``module.`` prefix (DDP) is
    stripped. Never downloads anything.

    Args:
        path: local file.

    Returns:
        Parameter name -> tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def load_weights(
    module: nn.Module,
    path: str | Path,
    ignore_prefixes: Sequence[str] = (),
) -> None:
    """Load a local state-dict file into ``module``; every parameter and buffer of ``module`` must be present.

    Keys of the file that the module lacks (e.g. a classifier head) are ignored only when they start with one
    of ``ignore_prefixes``. A convolution whose input channels differ (the first one, e.g. RGB weights for a
    1-channel tomogram) gets the file's kernel summed over its input channels and spread evenly over the new
    ones, so an input equal on all channels (a grey image) gives the same response.

    Args:
        module: network to fill.
        path: ``.pth``/``.pt``/``.safetensors`` file.
        ignore_prefixes: key prefixes of the file allowed to be unused.
    """
    state = read_state_dict(path)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.startswith(tuple(ignore_prefixes))]
    if missing or unexpected:
        raise ValueError(
            f"{path}: state dict does not fit {type(module).__name__}; missing {len(missing)} keys "
            f"{missing[:5]}, unexpected {len(unexpected)} keys {unexpected[:5]}"
        )
    filtered = {}
    for key, target in own.items():
        value = state[key]
        if value.shape != target.shape:
            value = _adapt_input_channels(value, target.shape, f"{path}: {key}")
        filtered[key] = value
    module.load_state_dict(filtered, strict=True)


def _adapt_input_channels(weight: torch.Tensor, shape: torch.Size, what: str) -> torch.Tensor:
    """Adapt a conv weight ``[O, I, ...]`` to another number of input channels, keeping a constant's response."""
    if weight.ndim != len(shape) or weight.shape[0] != shape[0] or weight.shape[2:] != shape[2:]:
        raise ValueError(f"{what}: shape {tuple(weight.shape)} does not fit {tuple(shape)}")
    in_new, in_old = shape[1], weight.shape[1]
    summed = weight.sum(dim=1, keepdim=True)  # response to a constant input, spread over the new channels
    return (summed / in_new).repeat(1, in_new, *([1] * (weight.ndim - 2))) if in_old != in_new else weight


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


NORMS = ("batch", "group", "instance")


def make_norm(norm: str, channels: int) -> nn.Module:
    """A 3D normalisation layer: ``"batch"``, ``"group"`` (up to 8 groups) or ``"instance"`` (affine)."""
    if norm == "batch":
        return nn.BatchNorm3d(channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if norm == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")


def replace_batch_norm(module: nn.Module, norm: str) -> nn.Module:
    """Swap every ``BatchNorm3d`` inside ``module`` for a fresh ``make_norm(norm, channels)`` layer, in place.

    ``"batch"`` leaves the module unchanged. The new layers start at identity affine parameters, so run
    this before training (loaded batch-norm statistics and affine weights are dropped).

    Returns:
        ``module`` itself.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    if norm == "batch":
        return module
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm3d):
            setattr(module, name, make_norm(norm, child.num_features))
        else:
            replace_batch_norm(child, norm)
    return module
