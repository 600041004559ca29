"""`byu-motor review --checkpoints`: the labelled train tomograms are predicted at their labelled spacing, and
the candidates are saved beside the page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from byu_motor.cli import main
from byu_motor.data.io import write_tomogram
from byu_motor.infer import labelled
from byu_motor.report.candidates import read_candidates_csv

SHAPE = (16, 24, 24)


@pytest.mark.parametrize("data_last", [False, True])
def test_review_predicts_the_labelled_train_tomograms(tmp_path, monkeypatch, capsys, data_last) -> None:
    rng = np.random.default_rng(3)
    for tomo_id in ("tomo_a", "tomo_b", "tomo_unlabelled"):
        write_tomogram(
            rng.integers(0, 255, size=SHAPE, dtype=np.uint8), tmp_path / "data" / "train" / tomo_id
        )
    header = ["row_id", "tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2", "Array shape (axis 0)",
              "Array shape (axis 1)", "Array shape (axis 2)", "Voxel spacing", "Number of motors"]  # fmt: skip
    rows = [[0, "tomo_a", 8, 12, 12, *SHAPE, 100.0, 1], [1, "tomo_b", -1, -1, -1, *SHAPE, 100.0, 0]]
    pd.DataFrame(rows, columns=header).to_csv(tmp_path / "labels.csv", index=False)
    seen = {}

    def fake_predict_labelled(data_dir, checkpoints, spacings, overrides=(), device=None):
        seen["tomograms"] = sorted(spacings)
        seen["spacings"] = sorted(set(spacings.values()))
        seen["checkpoints"] = checkpoints
        return {"tomo_a": [[8.0, 12.0, 13.0, 0.9]], "tomo_b": [[4.0, 4.0, 4.0, 0.8]]}

    monkeypatch.setattr(labelled, "predict_labelled", fake_predict_labelled)
    out = tmp_path / "review"
    argv = ["review", str(tmp_path / "data"), "--checkpoints", "m.pt", "--labels", str(tmp_path / "labels.csv"),
            "--out", str(out)]  # fmt: skip
    if data_last:  # `review --checkpoints m.pt DATA`: DATA is not swallowed by the checkpoint list
        argv = ["review", "--labels", str(tmp_path / "labels.csv"), "--out", str(out), "--checkpoints", "m.pt",
                str(tmp_path / "data")]  # fmt: skip
    assert main(argv) == 0
    assert seen == {"tomograms": ["tomo_a", "tomo_b"], "spacings": [100.0], "checkpoints": ["m.pt"]}
    assert read_candidates_csv(out / "candidates.csv")["tomo_b"] == [[4.0, 4.0, 4.0, 0.8]]
    assert "1 case(s) (fp 1, missed 0, misplaced 0)" in capsys.readouterr().out
    assert (out / "index.html").exists() and (out / "views" / "0_0z.png").exists()
