"""Resampling where the model runs: the uint8 volume goes to the device once per tomogram, is resampled there
(:func:`byu_motor.data.grid.resample_tensor`, the same grid contract as the host path) and the sliding window
cuts its windows there; the host only decodes.

On CUDA the volume goes to the card in one non-blocking copy from page-locked (pinned) host memory: the memory it
was decoded into (:mod:`byu_motor.infer.pinned`), or else a copy in a reusable pinned buffer.
"""

from __future__ import annotations

import numpy as np
import torch

from byu_motor.data.grid import resample_tensor, resample_volume
from byu_motor.infer.stage_timer import stage


class VolumeStager:
    """Hands the sliding window each model's input: a host uint8 array or a device uint8 tensor.

    With ``on_device`` the volume is uploaded once (:meth:`uploaded`) and resampled on ``device``; without it,
    or for a model that denoises before resampling (host only), the host resamples (:func:`resample_volume`).
    Call :meth:`release` after a tomogram to free the device copy (the pinned buffer is kept for the next).

    Args:
        device: where the models run.
        on_device: resample and cut windows on ``device``.
        dtype: precision of the device resize (``None``: float16 on CUDA, float32 elsewhere).
        cast: float -> uint8 after resampling, ``"round"`` or ``"floor"`` (``InferConfig.resample_cast``).
    """

    def __init__(
        self,
        device: str | torch.device,
        on_device: bool,
        dtype: torch.dtype | None = None,
        cast: str = "round",
    ):
        self.device = torch.device(device)
        self.on_device = bool(on_device)
        self.dtype = dtype
        self.cast = cast
        self._pinned: torch.Tensor | None = None
        self._source: np.ndarray | None = None
        self._uploaded: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None  # recorded after the upload, waited for on release
        # this tomogram's device resamplings, by (shape, mode): members at one spacing share one
        self._resampled: dict[tuple[tuple[int, ...], str], torch.Tensor] = {}
        # a CPU device normally takes the host path (below); True runs the device path's tensor resampler and
        # tensor windows there too, so CPU tests cover what a GPU runs
        self.tensor_on_cpu = False

    def uploaded(self, volume: np.ndarray) -> torch.Tensor:
        """``volume`` (uint8 ``(Z, Y, X)``) as a uint8 tensor on the device, copied at most once per tomogram."""
        if self._uploaded is not None and self._source is volume:
            return self._uploaded
        self._resampled = {}
        with stage("upload"):
            host = torch.from_numpy(np.ascontiguousarray(volume))
            if self.device.type == "cuda":
                self._uploaded = self.pinned(host).to(self.device, non_blocking=True)
                self._copied = torch.cuda.Event()
                self._copied.record(torch.cuda.current_stream(self.device))
            else:
                self._uploaded = host.to(self.device)
        self._source = volume
        return self._uploaded

    def pinned(self, host: torch.Tensor) -> torch.Tensor:
        """``host`` in page-locked memory: itself when it already is (decoded into a
        :class:`~byu_motor.infer.pinned.PinnedPool` block), else a copy in this stager's reusable buffer."""
        if host.is_pinned():
            return host
        n = host.numel()
        if self._pinned is None or self._pinned.numel() < n:
            self._pinned = torch.empty(n, dtype=torch.uint8, pin_memory=True)
        staged = self._pinned[:n].view(host.shape)
        staged.copy_(host)
        return staged

    def resampled(
        self, volume: np.ndarray, shape: tuple[int, int, int], interp: str, denoise: str | None
    ) -> np.ndarray | torch.Tensor:
        """``volume`` resampled to ``shape`` voxels (``interp`` mode) for one model.

        Returns:
            a device uint8 tensor (on the device path), or a host uint8 array (host path, ``denoise``, or a CPU
            device, where the host IS the device).
        """
        # on a CPU device the host is the device: the host resampler (the same bytes as before the device path
        # existed; the tensor resampler may differ by one grey level) and windows cut from the array
        host_is_device = self.device.type == "cpu" and not self.tensor_on_cpu
        if not self.on_device or denoise is not None or host_is_device:
            if tuple(shape) == volume.shape and denoise is None:
                return volume
            with stage("resample"):
                return resample_volume(volume, shape, mode=interp, denoise=denoise, cast=self.cast)
        vol = self.uploaded(volume)
        if tuple(shape) == tuple(vol.shape):
            return vol
        key = (tuple(shape), interp)
        if key not in self._resampled:
            with stage("resample"):
                self._resampled[key] = resample_tensor(
                    vol, shape, mode=interp, dtype=self.dtype, cast=self.cast
                )
        return self._resampled[key]

    def release(self) -> None:
        """Drop this tomogram's device copy (keeps the pinned staging buffer for the next one).

        Waits for the host-to-device copy to end first, so the caller may reuse the host buffer it came from.
        """
        if self._copied is not None:
            self._copied.synchronize()
            self._copied = None
        self._uploaded = None
        self._source = None
        self._resampled = {}
