"""Data: competition layout and labels, tomogram I/O, grids and resampling, targets, the training dataset.

The names below are imported from their modules on first use, so ``import byu_motor.data`` pulls in
neither torch nor pandas.

Example:
    >>> from byu_motor.data import Grid, read_labels, read_tomogram
    >>> records = read_labels("train_labels.csv")
    >>> volume = read_tomogram("train/tomo_003acc")
"""

from __future__ import annotations

from byu_motor._lazy import lazy_exports

_EXPORTS = {
    # tomogram I/O
    "TomogramReadError": "io",
    "detect_wraparound": "io",
    "fix_wraparound": "io",
    "list_slices": "io",
    "mend_isolated_extremes": "io",
    "read_tomogram": "io",
    "write_tomogram": "io",
    "ExternalVolume": "external",
    "ExternalVolumeError": "external",
    "read_volume": "external",
    # labels and the competition layout
    "LabelError": "layout",
    "TomoRecord": "layout",
    "count_mismatches": "layout",
    "labels_to_frame": "layout",
    "list_tomograms": "layout",
    "read_motor_table": "layout",
    "read_labels": "layout",
    "read_sample_submission": "layout",
    "solution_frame": "layout",
    "make_folds": "folds",
    "read_folds": "folds",
    "split_records": "folds",
    "write_folds": "folds",
    # grids, resampling, normalisation
    "Grid": "grid",
    "resample_to_spacing": "grid",
    "resample_volume": "grid",
    "Normalizer": "normalize",
    # training data
    "make_target": "targets",
    "heatmap_coords": "targets",
    "Augmenter": "augment",
    "augment_settings": "augment",
    "CachedVolume": "cache",
    "VolumeCache": "cache",
    "volumes_for": "cache",
    "PatchDataset": "dataset",
    "collate_patches": "dataset",
    "salient_points": "salient",
    "SeedWindowDataset": "seed_sampler",
    "SeedPixelAugment": "seed_augment",
    "dihedral_views": "seed_augment",
    "peak_gaussian_heatmap": "targets",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
