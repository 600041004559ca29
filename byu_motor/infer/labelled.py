"""Candidates of labelled (training) tomograms, each predicted at its labelled spacing: what `review` and
`pseudo` compare with the labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from byu_motor import progress
from byu_motor.infer.factory import default_predictor_factory
from byu_motor.infer.recipe import Member, resolve_infer
from byu_motor.infer.testset import compose_reader


def predict_labelled(
    data_dir: str | Path,
    checkpoints: Sequence[str],
    spacings: Mapping[str, float],
    overrides: Sequence[str] = (),
    device: str | None = None,
    split: str = "train",
) -> dict[str, list[list[float]]]:
    """Candidates ``{tomo_id: [[z, y, x, score], ...]}`` (original voxels, best first) of
    ``data_dir/split/<tomo_id>`` for every tomo_id of ``spacings``, each predicted at its labelled spacing (A)
    with the checkpoints' own inference recipe plus ``overrides`` (``--set`` strings). Tomograms whose folder
    is missing are left out.

    Unlike a test-set run (:func:`byu_motor.infer.runner.run_prediction`, which assumes or estimates the
    spacing), the spacing here is known, so candidates land where the labels were made.
    """
    import torch

    config = resolve_infer([Member(c) for c in checkpoints], list(overrides))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    predictor = default_predictor_factory(list(checkpoints), config, device)
    read = compose_reader()
    out: dict[str, list[list[float]]] = {}
    ids = [t for t in spacings if Path(data_dir, split, t).is_dir()]
    with progress.bar(len(ids), f"predict labelled {split} tomograms", unit="tomo") as shown:
        for tomo_id in ids:
            volume = read(Path(data_dir, split, tomo_id))
            cands = predictor.predict_volume(volume, float(spacings[tomo_id]), tomo_id)
            out[tomo_id] = [[float(v) for v in c[:4]] for c in cands]
            shown.update(1)
    return out
