"""Training from several label files, each with its own data root (`byu-motor train DATA --labels F[:ROOT]`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from byu_motor.cli import main
from byu_motor.data.layout import read_labels
from byu_motor.train.inputs import parse_label_source, read_training_labels
from tests.train.test_engine import write_tiny_dataset

TINY = [
    "data.spacing_a=64",
    "data.patch_size=16,32,32",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.warmup_steps=1",
    "train.amp=none",
    "train.steps=2",
    "train.val_every=2",
    "train.n_folds=2",
    "train.fold=0",
    "infer.patch_size=16,32,32",
    "infer.overlap=0",
]


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Root A (official labels) and root B whose tomograms are renamed ext_* with a seed-style wide table."""
    a = write_tiny_dataset(tmp_path_factory.mktemp("root_a"), seed=0)
    b = write_tiny_dataset(tmp_path_factory.mktemp("root_b"), seed=1)
    rows = []
    for tid, rec in read_labels(b / "train_labels.csv").items():
        new = tid.replace("tomo_", "ext_")
        shutil.move(b / "train" / tid, b / "train" / new)
        first = rec.motors[0].tolist() if rec.has_motor else [-1.0] * 3
        rows.append([new, *rec.shape, rec.spacing_a, rec.n_motors, *first, json.dumps(rec.motors.tolist())])
    cols = [
        "tomo_id",
        "Z",
        "Y",
        "X",
        "voxel_spacing",
        "num_motors",
        "motor_z",
        "motor_y",
        "motor_x",
        "motor_zyx",
    ]
    wide = b / "ext_gt.csv"
    pd.DataFrame(rows, columns=cols).to_csv(wide, index=False)
    return a, b, wide


def test_sources_are_read_with_their_folders(roots):
    a, b, wide = roots
    records, folders = read_training_labels(a, [str(a / "train_labels.csv"), f"{wide}:{b}"])
    assert len(records) == 16 and folders["ext_000"] == b / "train" / "ext_000"
    assert folders["tomo_000"] == a / "train" / "tomo_000"
    assert parse_label_source(str(wide), a) == (wide, a)  # no root: DATA
    assert read_training_labels(a)[0].keys() == read_labels(a / "train_labels.csv").keys()


def test_a_tomogram_in_two_files_names_both(roots, capsys):
    a, _, _ = roots
    labels = str(a / "train_labels.csv")
    assert (
        main(["train", str(a), "--preset", "tiny", "--labels", labels, "--labels", labels, "--out", "x"]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("train_labels.csv") == 2 and "tomo_000" in err


def test_train_on_two_roots(roots, tmp_path, capsys):
    a, b, wide = roots
    out = tmp_path / "run"
    argv = [
        "train",
        str(a),
        "--preset",
        "tiny",
        "--labels",
        str(a / "train_labels.csv"),
        "--labels",
        f"{wide}:{b}",
    ]
    for item in TINY:
        argv += ["--set", item]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    folds = pd.read_csv(out / "folds.csv")
    assert {"tomo_000", "ext_000"} <= set(folds["tomo_id"]) and len(folds) == 16
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["label_sources"] == [str(a / "train_labels.csv"), f"{wide}:{b}"]
    assert (out / "best.pt").exists()
