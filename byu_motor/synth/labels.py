"""Deliberately incomplete labels: drop a share of a synthetic set's motors and record which ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from byu_motor.data.layout import TomoRecord, labels_to_frame, read_labels

DROPPED_FILE = "dropped_labels.csv"


def drop_labels(data_dir: str | Path, share: float, seed: int = 0) -> dict[str, TomoRecord]:
    """Remove ``round(share * motors)`` motors from ``data_dir/train_labels.csv`` and list them.

    The dropped motors are written to ``data_dir/dropped_labels.csv`` in the official format (one row per
    dropped motor; ``Number of motors`` counts the dropped motors of that tomogram); ``train_labels.csv`` is
    rewritten without them (a tomogram left without motors gets a ``-1`` row). ``synth_meta.json`` keeps
    every motor, so the truth stays known.

    Args:
        data_dir: a synthetic dataset (``byu-motor synth``).
        share: fraction of all labelled train motors to drop, in ``[0, 1]``.
        seed: which motors are drawn (same seed, same motors).

    Returns:
        ``{tomo_id: TomoRecord}`` of the dropped motors (coordinates in original voxels).

    Raises:
        ValueError: ``share`` outside ``[0, 1]``.
    """
    if not 0 <= share <= 1:
        raise ValueError(f"drop share must be in [0, 1], got {share}")
    data_dir = Path(data_dir)
    records = read_labels(data_dir / "train_labels.csv")
    motors = [(tid, i) for tid, rec in records.items() for i in range(rec.n_motors)]
    n_drop = int(round(share * len(motors)))
    rng = np.random.default_rng(seed)
    chosen = {motors[k] for k in rng.choice(len(motors), size=n_drop, replace=False)} if n_drop else set()
    kept, dropped = {}, {}
    for tid, rec in records.items():
        drop = [(tid, i) in chosen for i in range(rec.n_motors)]
        keep_m = rec.motors[[not d for d in drop]]
        kept[tid] = TomoRecord(tid, rec.shape, rec.spacing_a, keep_m, len(keep_m))
        if any(drop):
            gone = rec.motors[drop]
            dropped[tid] = TomoRecord(tid, rec.shape, rec.spacing_a, gone, len(gone))
    labels_to_frame(kept).to_csv(data_dir / "train_labels.csv", index=False)
    labels_to_frame(dropped).to_csv(data_dir / DROPPED_FILE, index=False)
    return dropped
