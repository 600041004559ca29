"""`byu-motor pseudo`: candidates from a file or from a tiny checkpoint become motors far from every label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from byu_motor.cli import main
from byu_motor.data.label_edits import read_sourced_labels
from byu_motor.data.layout import read_labels
from tests.train.test_engine import SPACING_A, tiny_config, write_tiny_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("pseudo_data"))


def _far_from(motors: np.ndarray, point, spacing_a: float) -> bool:
    return not len(motors) or np.linalg.norm(motors - np.asarray(point), axis=1).min() * spacing_a > 1000


def test_candidates_csv(data, tmp_path, capsys):
    labels = read_labels(data / "train_labels.csv")
    near = labels["tomo_000"].motors[0] + [0, 0, 5]  # 320 A from the label: not added
    rows = [
        ["tomo_000", *near, 0.9],
        ["tomo_007", 5, 5, 5, 0.8],  # a negative tomogram: added
        ["tomo_007", 6, 6, 6, 0.7],  # 1.7 voxels from the one added before: not added
        ["tomo_006", 20, 40, 40, 0.2],  # below --min-score
        ["tomo_999", 1, 1, 1, 0.9],  # not labelled: ignored
    ]
    cands = tmp_path / "cands.csv"
    pd.DataFrame(rows, columns=["tomo_id", "z", "y", "x", "score"]).to_csv(cands, index=False)
    out = tmp_path / "new.csv"
    argv = [
        "pseudo",
        str(data),
        "--candidates",
        str(cands),
        "--min-score",
        "0.5",
        "--out",
        str(out),
        "--round",
        "3",
    ]
    assert main(argv) == 0
    assert "+ 1 pseudo-labels" in capsys.readouterr().out
    new = read_sourced_labels(out)
    assert new.records["tomo_007"].motors.tolist() == [[5.0, 5.0, 5.0]]
    assert new.sources["tomo_007"] == [("pseudo round 3", 0.8)]
    assert sum(r.n_motors for r in new.records.values()) == sum(r.n_motors for r in labels.values()) + 1


def test_candidates_jsonl_and_bad_file(data, tmp_path, capsys):
    part = tmp_path / "sub.csv.partial.jsonl"
    lines = [{"format": 1}, {"tomo_id": "tomo_006", "status": "ok", "candidates": [[3, 4, 5, 0.6]]}]
    part.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "new.csv"
    assert (
        main(["pseudo", str(data), "--candidates", str(part), "--min-score", "0.5", "--out", str(out)]) == 0
    )
    assert read_labels(out)["tomo_006"].motors.tolist() == [[3.0, 4.0, 5.0]]
    bad = tmp_path / "bad.csv"
    bad.write_text("tomo_id,z,y,x,score\ntomo_006,1,2,3,0.5\ntomo_006,1,two,3,0.5\n")
    assert (
        main(
            [
                "pseudo",
                str(data),
                "--candidates",
                str(bad),
                "--min-score",
                "0.5",
                "--out",
                str(tmp_path / "b.csv"),
            ]
        )
        == 2
    )
    assert "bad.csv:3:" in capsys.readouterr().err and not (tmp_path / "b.csv").exists()


def test_checkpoint_candidates(data, tmp_path, capsys):
    from byu_motor.train.engine import train

    cfg = tiny_config(steps=2, val_every=2, ema=0.0)
    ckpt = train(cfg, data, tmp_path / "run", progress=False)["checkpoints"]["last"]
    out = tmp_path / "new.csv"
    argv = [
        "pseudo",
        str(data),
        "--checkpoints",
        str(ckpt),
        "--min-score",
        "0",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    old, new = read_labels(data / "train_labels.csv"), read_sourced_labels(out)
    n_added = 0
    for tid, rec in old.items():
        motors, sources = new.records[tid].motors, new.sources[tid]
        np.testing.assert_array_equal(motors[: rec.n_motors], rec.motors)  # labels kept, in order
        for point, (source, conf) in zip(motors[rec.n_motors :], sources[rec.n_motors :]):
            assert source == "pseudo round 1" and 0 <= conf <= 1
            assert _far_from(rec.motors, point, SPACING_A)
            n_added += 1
    assert n_added > 0  # every score passes --min-score 0: at least the negative tomograms gain one
