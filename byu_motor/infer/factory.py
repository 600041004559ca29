"""The default predictor factory: checkpoints -> a Predictor on one device, models loaded once per process."""

from __future__ import annotations

from typing import Any

from byu_motor.config import InferConfig

_SPEC_CACHE: dict[tuple[str, str], Any] = {}


def default_predictor_factory(checkpoints: list[str], config: InferConfig, device: str) -> Any:
    """Build a :class:`byu_motor.infer.predictor.Predictor` for ``checkpoints`` on ``device``.

    Models are loaded once per process and device (``_SPEC_CACHE``) and shared by the predictors of all
    budget levels.

    Args:
        checkpoints: checkpoint paths, the ensemble members of this predictor.
        config: inference settings (views, overlap, assumed spacings of one budget level).
        device: torch device name, e.g. ``"cuda:1"``.

    Returns:
        A predictor whose ``predict_volume(volume uint8 (Z, Y, X), spacing_a)`` gives candidates
        ``[(z, y, x, score), ...]`` in original voxels, best first.
    """
    from byu_motor.infer.predictor import Predictor
    from byu_motor.infer.recipe import apply_member
    from byu_motor.infer.spec import ModelSpec

    specs = []
    for path in checkpoints:
        key = (str(path), str(device))
        if key not in _SPEC_CACHE:
            _SPEC_CACHE[key] = ModelSpec.from_checkpoint(path, device)
        # the member's own weight, views and window (InferConfig.members, from the recipe)
        specs.append(apply_member(_SPEC_CACHE[key], config.members.get(str(path))))
    return Predictor(specs, config, device)
