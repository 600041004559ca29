"""Tomogram I/O: JPEG slice folders <-> uint8 (Z, Y, X) arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_tomogram(volume: np.ndarray, folder: str | Path, quality: int = 95) -> None:
    """Write a uint8 volume ``(Z, Y, X)`` as ``folder/slice_0000.jpg`` ... (competition layout).

    Args:
        volume: uint8 array ``(Z, Y, X)``.
        folder: output folder, created if needed.
        quality: JPEG quality (1-100).
    """
    if volume.dtype != np.uint8 or volume.ndim != 3:
        raise ValueError(
            f"write_tomogram expects a uint8 (Z, Y, X) volume, got {volume.dtype} {volume.shape}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for z in range(volume.shape[0]):
        Image.fromarray(volume[z]).save(folder / f"slice_{z:04d}.jpg", quality=quality)
