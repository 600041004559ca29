"""Models: encoders, necks and heads chosen by name, the detector that wires them, and checkpoints."""

from __future__ import annotations

from byu_motor.models import (
    seed_neck,  # noqa: F401  (registers the factorized_fpn neck and conv3 head)
    slice_encoder,  # noqa: F401  (registers the 2.5D encoder slices_2p5d)
)
from byu_motor.models.checkpoint import (
    FORMAT,
    CheckpointError,
    CheckpointHeader,
    LoadedCheckpoint,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from byu_motor.models.detector import Detector, create_model
from byu_motor.models.encoders import ENCODERS
from byu_motor.models.heads import HEADS
from byu_motor.models.necks import NECKS
from byu_motor.models.registry import Registry

__all__ = [
    "ENCODERS",
    "FORMAT",
    "HEADS",
    "NECKS",
    "CheckpointError",
    "CheckpointHeader",
    "Detector",
    "LoadedCheckpoint",
    "Registry",
    "create_model",
    "load_checkpoint",
    "read_checkpoint_config",
    "save_checkpoint",
]
