"""Sliding-window inference: stride-aligned windows, border down-weighting, merge into one heatmap buffer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from byu_motor.data.normalize import Normalizer
from byu_motor.infer.accel import autocast
from byu_motor.infer.budget import PredictionCut, check_stop
from byu_motor.infer.heatmaps import resample_heatmap  # noqa: F401 (re-exported: its home before)
from byu_motor.infer.stage_timer import stage
from byu_motor.infer.tta import View, get_views

log = logging.getLogger(__name__)

MERGE_MODES = ("mean", "max")


def _triple_int(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * 3
    t = tuple(int(v) for v in value)
    if len(t) != 3:
        raise ValueError(f"{name} must have 3 values (z, y, x), got {value!r}")
    return t  # type: ignore[return-value]


def window_starts(n_padded: int, patch: int, stride: int, overlap: float) -> list[int]:
    """Start positions of windows along one axis of a volume padded to ``n_padded`` voxels.

    Starts are multiples of ``stride`` (so every window's heatmap cells coincide with the volume's), the
    step is the largest multiple of ``stride`` not above ``patch * (1 - overlap)``, and the last window is
    flush with the end.

    Args:
        n_padded: axis length, a multiple of ``stride`` and at least ``patch``.
        patch: window length, a multiple of ``stride``.
        stride: model output stride along the axis.
        overlap: fraction of the window shared with the next one, in ``[0, 1)``.

    Returns:
        Sorted start positions (voxels).
    """
    if n_padded % stride or patch % stride or patch > n_padded:
        raise ValueError(
            f"need stride | n_padded, stride | patch <= n_padded; got {n_padded}, {patch}, {stride}"
        )
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    step = max(stride, int(patch * (1.0 - overlap)) // stride * stride)
    starts = list(range(0, n_padded - patch, step))
    starts.append(n_padded - patch)
    return sorted(set(starts))


def border_ramp(
    n_cells: int, ramp_cells: int, border_weight: float, low_edge: bool, high_edge: bool
) -> np.ndarray:
    """1-D weights over a window's heatmap cells falling linearly to ``border_weight`` at interior borders.

    Args:
        n_cells: window length in heatmap cells.
        ramp_cells: cells over which the weight rises from ``border_weight`` to 1.
        border_weight: weight of the outermost cell at an interior border, in ``(0, 1]``.
        low_edge: the window starts at the volume edge (keep full weight on that side).
        high_edge: the window ends at the volume edge (keep full weight on that side).

    Returns:
        float32 array ``(n_cells,)`` with values in ``[border_weight, 1]``.
    """
    if not 0.0 < border_weight <= 1.0:
        raise ValueError(f"border_weight must be in (0, 1], got {border_weight}")
    w = np.ones(n_cells, dtype=np.float32)
    ramp_cells = max(1, min(ramp_cells, n_cells // 2))
    rise = border_weight + (1.0 - border_weight) * np.arange(ramp_cells, dtype=np.float32) / ramp_cells
    if not low_edge:
        w[:ramp_cells] = np.minimum(w[:ramp_cells], rise)
    if not high_edge:
        w[n_cells - ramp_cells :] = np.minimum(w[n_cells - ramp_cells :], rise[::-1])
    return w


class SlidingWindow:
    """Run a detector over a whole volume window by window and merge its logits at heatmap resolution.

    Memory: besides the input volume, ONE float32 buffer of the (padded) heatmap size (the weight sum is
    separable and kept as three 1-D profiles), plus one batch of windows; the input is normalised per
    batch, never as a whole. Windows start at multiples of the stride on a volume padded (at the high end,
    with its mean grey) to a multiple of the stride and at least one window, so every TTA view maps heatmap
    cells exactly onto cells, whatever the volume's size.

    Args:
        patch_size: window ``(D, H, W)`` in input voxels (rounded up to a multiple of the stride); ``None``:
            the whole volume in one window.
        overlap: fraction of a window shared with its neighbour, per axis.
        batch_windows: windows per forward pass (halved on CUDA out-of-memory, down to 1).
        border_weight: minimum weight at interior window borders (1 disables down-weighting).
        merge: ``"mean"`` (weighted mean of overlapping windows) or ``"max"``.
        views: TTA view names; logits are averaged over views per window.
        add_identity: include the identity view even when ``views`` lacks it (``False``: exactly ``views``).
        device: where the model runs.
        amp: autocast on CUDA, bf16 where the card has it, else fp16 (no-op elsewhere;
            :func:`byu_motor.infer.accel.autocast_dtype`).
        channels_last: ``channels_last_3d`` inputs; faster for some models and slower for others, on any
            device (``python bench/layout.py`` measures each preset).
        pad_value: raw grey (0-255, before normalisation) of the padding; ``None``: the volume's mean grey.
        batch_views: all TTA views of a batch of windows in ONE forward pass (views whose windows keep their
            shape); ``False``: one pass per view.
    """

    def __init__(
        self,
        patch_size: Sequence[int] | None = None,
        overlap: float = 0.25,
        batch_windows: int = 4,
        border_weight: float = 0.5,
        merge: str = "mean",
        views: Sequence[str] = (),
        device: str | torch.device | None = None,
        amp: bool = True,
        channels_last: bool = False,
        should_stop: Callable[[], bool] | None = None,
        pad_value: float | None = None,
        add_identity: bool = True,
        batch_views: bool = True,
    ):
        if merge not in MERGE_MODES:
            raise ValueError(f"unknown merge {merge!r}; choose from {MERGE_MODES}")
        if batch_windows < 1:
            raise ValueError(f"batch_windows must be >= 1, got {batch_windows}")
        self.patch_size = None if patch_size is None else _triple_int(patch_size, "patch_size")
        self.overlap = float(overlap)
        self.batch_windows = int(batch_windows)
        self.border_weight = float(border_weight)
        self.merge = merge
        self.views: list[View] = get_views(views, add_identity)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.amp = amp
        self.channels_last = bool(channels_last)
        self.should_stop = should_stop
        self.pad_value = pad_value
        self.batch_views = bool(batch_views)
        self.oom_retries = 0  # how often the batch was halved (for logs and tests)

    def layout(
        self, shape: Sequence[int], stride: Sequence[int]
    ) -> tuple[tuple[int, int, int], tuple[int, int, int], list[list[int]]]:
        """Padded volume shape, window size and per-axis window starts for a volume of ``shape``.

        The volume is padded (at the high end) to a multiple of the stride and at least to the window.
        """
        st = _triple_int(stride, "stride")
        patch = self.patch_size or tuple(shape)
        patch = tuple(-(-p // s) * s for p, s in zip(patch, st))
        padded = tuple(max(-(-n // s) * s, p) for n, s, p in zip(shape, st, patch))
        starts = [window_starts(n, p, s, self.overlap) for n, p, s in zip(padded, patch, st)]
        return padded, patch, starts  # type: ignore[return-value]

    def __call__(
        self,
        model: nn.Module,
        volume: np.ndarray | torch.Tensor,
        stride: Sequence[int],
        normalizer: Normalizer,
    ) -> torch.Tensor:
        """Logits of ``model`` over ``volume``.

        Args:
            model: any module mapping ``[B, 1, D, H, W]`` to ``[B, 1, D/s, H/s, W/s]`` (already on ``device``,
                in eval mode); a list/tuple output uses its first element.
            volume: uint8 ``(Z, Y, X)`` at the model's spacing: a host array, or a tensor on ``device`` (windows
                are then cut on the device).
            stride: model output stride ``(sz, sy, sx)``.
            normalizer: intensity normalisation (fitted per tomogram when its mode asks for it).

        Returns:
            float32 tensor ``[ceil(Z/sz), ceil(Y/sy), ceil(X/sx)]`` on ``device`` (cell ``k`` centred at input
            voxel ``k*s + (s-1)/2``).
        """
        if volume.ndim != 3 or volume.dtype not in (np.uint8, torch.uint8):
            raise ValueError(f"expected a uint8 (Z, Y, X) volume, got {volume.dtype} {tuple(volume.shape)}")
        with stage("forward"):
            return self._run(model, volume, stride, normalizer)

    def _run(
        self,
        model: nn.Module,
        volume: np.ndarray | torch.Tensor,
        stride: Sequence[int],
        normalizer: Normalizer,
    ) -> torch.Tensor:
        """:meth:`__call__` after the input check."""
        st = _triple_int(stride, "stride")
        if any(v.swaps_yx for v in self.views) and st[1] != st[2]:
            raise ValueError(f"in-plane rotations need equal y and x strides, got {st}")
        step = max(1, int(round((volume_size(volume) / 1e6) ** (1 / 3))))
        if isinstance(volume, torch.Tensor):  # the fit's own subsample, taken on the device
            fit_step = max(1, int(round((volume.numel() / 2_000_000) ** (1 / 3))))
            normalizer = normalizer.fit(volume[::fit_step, ::fit_step, ::fit_step].cpu().numpy(), 10**18)
            mean_grey = (
                float(volume[::step, ::step, ::step].float().mean()) if self.pad_value is None else 0.0
            )
        else:
            normalizer = normalizer.fit(volume)
            mean_grey = float(volume[::step, ::step, ::step].mean()) if self.pad_value is None else 0.0
        padded, patch, starts = self.layout(tuple(volume.shape), st)
        cells = tuple(p // s for p, s in zip(patch, st))
        heat_shape = tuple(n // s for n, s in zip(padded, st))
        dev = self.device
        # Padding stands for "average tomogram": the (normalised) mean grey of this volume.
        pad_grey = mean_grey if self.pad_value is None else self.pad_value

        profiles = self._weight_profiles(starts, patch, padded, cells)
        if self.merge == "mean":
            acc = torch.zeros(heat_shape, dtype=torch.float32, device=dev)
        else:
            acc = torch.full(heat_shape, float("-inf"), dtype=torch.float32, device=dev)
        windows = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
        with torch.inference_mode():
            self._accumulate(acc, model, volume, windows, st, patch, cells, normalizer, pad_grey, profiles)
        if self.merge == "mean":
            _divide_by_weight_sum(acc, profiles, st, cells)
        z, y, x = (-(-n // s) for n, s in zip(volume.shape, st))
        return acc[:z, :y, :x]

    def _weight_profiles(
        self,
        starts: list[list[int]],
        patch: tuple[int, ...],
        padded: tuple[int, ...],
        cells: tuple[int, ...],
    ) -> list[dict[int, torch.Tensor]]:
        """Per axis, the 1-D weight profile of every window start; a window's 3-D weight is their outer product."""
        ramp = [max(1, int(round(c * self.overlap))) for c in cells]
        profiles = []
        for a in range(3):
            prof = {}
            for t in starts[a]:
                w1 = border_ramp(cells[a], ramp[a], self.border_weight, t == 0, t + patch[a] == padded[a])
                prof[t] = torch.from_numpy(w1).to(self.device)
            profiles.append(prof)
        return profiles

    def _accumulate(
        self,
        acc: torch.Tensor,
        model: nn.Module,
        volume: np.ndarray,
        windows: list[tuple[int, int, int]],
        st: tuple[int, int, int],
        patch: tuple[int, ...],
        cells: tuple[int, ...],
        normalizer: Normalizer,
        pad_grey: float,
        profiles: list[dict[int, torch.Tensor]],
    ) -> None:
        """Run every window (batches halved on CUDA out-of-memory) and merge its logits into ``acc``."""
        uniform = self.border_weight >= 1.0
        i = 0
        bs = self.batch_windows
        while i < len(windows):
            # Between batches: abandon the tomogram when the time budget's deadline is near.
            if self.should_stop is not None and self.should_stop():
                raise PredictionCut("time budget: deadline reached, tomogram cut short")
            check_stop()
            chunk = windows[i : i + bs]
            try:
                logits = self._forward(model, volume, chunk, patch, cells, normalizer, pad_grey)
            except torch.cuda.OutOfMemoryError:
                if bs == 1:
                    raise
                bs = max(1, bs // 2)
                self.oom_retries += 1
                log.warning("out of memory with %d windows per batch; retrying with %d", 2 * bs, bs)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            for (z0, y0, x0), lg in zip(chunk, logits):
                cz, cy, cx = z0 // st[0], y0 // st[1], x0 // st[2]
                sl = (slice(cz, cz + cells[0]), slice(cy, cy + cells[1]), slice(cx, cx + cells[2]))
                if self.merge == "max":
                    acc[sl] = torch.maximum(acc[sl], lg)
                elif uniform:
                    acc[sl].add_(lg)
                else:
                    pz, py, px = profiles[0][z0], profiles[1][y0], profiles[2][x0]
                    acc[sl].addcmul_(lg, pz[:, None, None] * py[None, :, None] * px[None, None, :])
            i += len(chunk)

    def _forward(
        self,
        model: nn.Module,
        volume: np.ndarray,
        chunk: list[tuple[int, int, int]],
        patch: tuple[int, ...],
        cells: tuple[int, ...],
        normalizer: Normalizer,
        pad_grey: float,
    ) -> torch.Tensor:
        """Logits ``[b, D/s, H/s, W/s]`` (float32, averaged over TTA views) for a batch of windows."""
        dev = self.device
        # Fill with the raw pad grey, copy the uint8 windows in, then normalise the whole batch in place:
        # Normalizer.__call__ as one multiply-add, with no temporary float copy of any window.
        x = torch.full((len(chunk), 1, *patch), pad_grey, dtype=torch.float32, device=dev)
        for k, (z0, y0, x0) in enumerate(chunk):
            part = volume[z0 : z0 + patch[0], y0 : y0 + patch[1], x0 : x0 + patch[2]]
            if not isinstance(part, torch.Tensor):
                part = torch.from_numpy(np.ascontiguousarray(part)).to(dev, non_blocking=True)
            x[k, 0, : part.shape[0], : part.shape[1], : part.shape[2]].copy_(part)
        scale = 1.0 / (255.0 * normalizer.std)
        x.mul_(scale).add_(-normalizer.mean / normalizer.std)
        out = None
        for group in self._view_batches(x.shape):
            xs = [view.forward(x) for view in group]
            xv = xs[0] if len(xs) == 1 else torch.cat(xs)
            if self.channels_last:
                xv = xv.contiguous(memory_format=torch.channels_last_3d)
            with autocast(dev, self.amp):
                ys = model(xv)
            if isinstance(ys, (list, tuple)):
                ys = ys[0]
            for view, y in zip(group, ys.float().split(len(chunk))):
                y = view.inverse(y)
                expected = (len(chunk), 1, *cells)
                if tuple(y.shape) != expected:
                    raise ValueError(
                        f"model output {tuple(y.shape)} under view {view.name!r} does not match the expected "
                        f"{expected} for windows {patch} at its stride"
                    )
                out = y if out is None else out.add_(y)
        assert out is not None
        if len(self.views) > 1:
            out.div_(len(self.views))
        return out[:, 0]

    def _view_batches(self, shape: Sequence[int]) -> list[list[View]]:
        """The views grouped into forward passes: one group per transformed window shape with
        ``batch_views``, else one view per pass."""
        if not self.batch_views:
            return [[view] for view in self.views]
        groups: dict[tuple[int, ...], list[View]] = {}
        for view in self.views:
            swapped = view.swaps_yx and shape[-1] != shape[-2]
            key = (*shape[:-2], shape[-1], shape[-2]) if swapped else tuple(shape)
            groups.setdefault(key, []).append(view)
        return list(groups.values())


def volume_size(volume: np.ndarray | torch.Tensor) -> int:
    """Number of voxels of a host array or a tensor."""
    return int(volume.numel()) if isinstance(volume, torch.Tensor) else int(volume.size)


def _divide_by_weight_sum(
    acc: torch.Tensor, profiles: list[dict[int, torch.Tensor]], st: Sequence[int], cells: Sequence[int]
) -> None:
    """Divide the weighted sum ``acc`` by the sum of the window weights, in place.

    The windows form a Cartesian grid of per-axis starts and each weight is a product of per-axis
    profiles, so the weight sum is separable: sum_ijk a_i(z) b_j(y) c_k(x) = A(z) B(y) C(x). No second
    heatmap-sized buffer is needed.
    """
    for a in range(3):
        total = torch.zeros(acc.shape[a], dtype=torch.float32, device=acc.device)
        for t, prof in profiles[a].items():
            total[t // st[a] : t // st[a] + cells[a]] += prof
        shape = [1, 1, 1]
        shape[a] = -1
        acc.div_(total.reshape(shape))
