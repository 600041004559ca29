"""Shared fixtures: paths to the real label file and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
#: the seed's label files (MIT): ../shared when present, else the test copies in tests/fixtures (a clone alone)
SEED_LABELS = (
    SHARED / "data" / "seed_labels"
    if (SHARED / "data" / "seed_labels").exists()
    else REPO / "tests" / "fixtures" / "seed_labels"
)

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def real_labels_csv() -> Path:
    """The real competition label file (648 tomograms), shipped beside the repository in ../shared."""
    path = SHARED / "data" / "kaggle" / "train_labels.csv"
    if not path.exists():  # keep a copy in the repo so a clone alone can test
        path = REPO / "tests" / "fixtures" / "train_labels.csv"
    return path
