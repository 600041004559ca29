"""byu_motor: locate bacterial flagellar motors in cryo-electron tomograms."""

from __future__ import annotations

__version__ = "0.1.0"
