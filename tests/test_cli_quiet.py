"""synth -> train -> predict -> score on a tiny synthetic set: progress on stderr for every stage, nothing but
warnings and the summary with --quiet, outputs with the usual file mode, and no partial file after a finished run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from byu_motor.cli import main

REPO = Path(__file__).resolve().parents[1]
TRAIN_SETS = [
    "data.spacing_a=160",
    "data.patch_size=16,32,32",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.steps=2",
    "train.val_every=2",
    "train.warmup_steps=1",
    "train.log_every=1",
    "train.n_folds=2",
    "infer.patch_size=16,32,32",
    "infer.overlap=0",
    "infer.tta=",
    "infer.scales=1",
    "infer.test_spacing_a=131",
]
SETS = [x for s in TRAIN_SETS for x in ("--set", s)]


def _run(capsys, argv: list[str]) -> tuple[list[str], list[str]]:
    """``main(argv)`` must succeed; returns its (stdout, stderr) lines."""
    assert main(argv) == 0, argv
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err.splitlines()


def _loud(argv: list[str]) -> tuple[list[str], list[str]]:
    """``main(argv)`` in a module fixture (no capsys there): its (stdout, stderr) lines."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(argv) == 0, argv
    return out.getvalue().splitlines(), err.getvalue().splitlines()


def _usual_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@pytest.fixture(scope="module")
def loud(tmp_path_factory) -> dict:
    """synth, train (fold 1) and predict without --quiet on a tiny synthetic set: paths and what each printed."""
    root = tmp_path_factory.mktemp("pipeline")
    data, run, csv = root / "data", root / "run", root / "submission.csv"
    printed = {
        "synth": _loud(
            ["synth", str(data), "--n-train", "3", "--n-test", "1", "--scale", "0.1", "--seed", "1"]
        ),
        "train": _loud(
            ["train", str(data), "--preset", "tiny", "--out", str(run), "--devices", "cpu", *SETS]
        ),
    }
    ckpt = run / "best.pt"
    printed["predict"] = _loud(
        ["predict", str(data), "--checkpoints", str(ckpt), "--devices", "cpu", "--out", str(csv)]
    )
    return {"data": data, "ckpt": ckpt, "csv": csv, "root": root, **printed}


@pytest.mark.slow
def test_synth_progress_and_quiet(loud, tmp_path, capsys) -> None:
    out, err = loud["synth"]
    assert err[0] == "synthesise: 0/4 tomo (0%), 0:00 elapsed" and err[-1].startswith("synthesise: 4/4 tomo")
    argv = ["synth", str(tmp_path / "quiet"), "--n-train", "1", "--n-test", "1", "--scale", "0.1", "--quiet"]
    quiet_out, quiet_err = _run(capsys, argv)
    assert quiet_err == []
    assert len(out) == len(quiet_out) == 1 and quiet_out[0].startswith("synth: wrote 1 train + 1 test")


@pytest.mark.slow
def test_train_progress_names_the_fold_and_quiet(loud, tmp_path, capsys) -> None:
    out, err = loud["train"]
    assert any(line.startswith("cache (read, resample): ") for line in err)
    assert any(line.startswith("train fold 0: 2/2 step (100%)") for line in err)
    assert "validate fold 0 at step 2" in err
    argv = [
        "train",
        str(loud["data"]),
        "--preset",
        "tiny",
        "--devices",
        "cpu",
        *SETS,
        "--set",
        "train.fold=1",
    ]
    quiet_out, quiet_err = _run(capsys, [*argv, "--out", str(tmp_path / "quiet"), "--quiet"])
    assert quiet_err == []
    summary = ["steps:", "best F2:", "best checkpoint:", "last checkpoint:"]
    for printed in (out, quiet_out):
        assert [next((p for p in summary if line.startswith(p)), line) for line in printed] == summary


@pytest.mark.slow
def test_predict_progress_quiet_file_mode_and_partial_file(loud, tmp_path, capsys) -> None:
    out, err = loud["predict"]
    assert any(
        line.startswith("predict: 1 tomogram(s) to predict (0 resumed), 1 checkpoint(s) on cpu")
        for line in err
    )
    assert any(line.startswith("predict: 1/1 tomo (100%)") and "level " in line for line in err)
    # the summary has a line of seconds per stage, and the same stages (adding up) in OUT.result.json
    assert any(line.startswith("stages (s per tomogram, 1 tomograms): read ") for line in out)
    result = json.loads(Path(str(loud["csv"]).replace(".csv", ".result.json")).read_text())
    stages = {
        k: v for k, v in result["stages"].items() if k not in ("tomograms", "startup_s", "decode_s", "sum_s")
    }
    assert {"read", "forward", "peaks"} <= set(stages) and result["stages"]["tomograms"] == 1
    assert abs(sum(stages.values()) - result["stages"]["sum_s"]) < 0.01
    # DATA after a one-or-more --checkpoints is not swallowed
    kept = tmp_path / "kept.csv"
    argv = ["predict", "--checkpoints", str(loud["ckpt"]), str(loud["data"]), "--devices", "cpu"]
    quiet_out, quiet_err = _run(capsys, [*argv, "--out", str(kept), "--quiet", "--keep-partial"])
    assert quiet_err == [] and quiet_out[0].startswith(f"wrote {kept}: 1 rows")
    assert len(quiet_out) == len(out)
    for csv in (loud["csv"], kept):
        assert csv.stat().st_mode & 0o777 == _usual_mode()  # not mkstemp's 0600
    # a finished run removes its resume file, unless asked to keep it
    assert (
        not Path(f"{loud['csv']}.partial.jsonl").exists() and not Path(f"{loud['csv']}.partial.done").exists()
    )
    assert Path(f"{kept}.partial.jsonl").exists() and Path(f"{kept}.partial.done").exists()


@pytest.mark.slow
def test_score_quiet_prints_only_its_summary(loud, capsys) -> None:
    argv = ["score", str(loud["data"] / "test_labels.csv"), str(loud["csv"])]
    out, _ = _run(capsys, argv)
    quiet_out, quiet_err = _run(capsys, [*argv, "--quiet"])
    assert quiet_err == [] and quiet_out == out and quiet_out[-1].startswith("F2 = ")


@pytest.mark.slow
def test_quiet_keeps_warnings_on_stderr(loud, tmp_path) -> None:
    """In a fresh process (no test logging handlers): --quiet shows a warning and the summary, nothing else."""
    import torch

    from byu_motor.models.checkpoint import read_checkpoint_config, save_checkpoint
    from byu_motor.models.detector import create_model

    cfg = read_checkpoint_config(loud["ckpt"]).config
    torch.manual_seed(0)
    # no "step" in its extra: saved by hand, not by training, which predict warns about
    ckpt = save_checkpoint(tmp_path / "by_hand.pt", create_model(cfg.model), cfg, extra={"threshold": 0.5})
    argv = ["predict", str(loud["data"]), "--checkpoints", str(ckpt), "--devices", "cpu", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "byu_motor", *argv], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    err = done.stderr.splitlines()
    assert len(err) == 1 and " WARNING " in err[0] and "no training record" in err[0]
    assert done.stdout.splitlines()[0].startswith("wrote submission.csv: 1 rows")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["review", "pseudo", "convert", "recipe", "models"])
def test_every_other_command_is_silent_but_for_its_summary_with_quiet(
    loud, tmp_path, capsys, command
) -> None:
    """review, pseudo, convert, recipe and models: with --quiet only warnings on stderr (no bars, no status
    lines), and stdout is a part of what the loud run printed (its summary)."""
    import numpy as np

    data, ckpt, labels = loud["data"], str(loud["ckpt"]), str(loud["data"] / "train_labels.csv")
    if command == "convert":
        from tests.data.test_external import make_mrc

        src = make_mrc(tmp_path / "run1.mrc", np.random.default_rng(1).normal(0, 1, (20, 40, 44)).astype(np.float32), (16.0,) * 3)  # fmt: skip
    argvs = {
        "review": lambda tag: [
            "review",
            str(data),
            "--checkpoints",
            ckpt,
            "--labels",
            labels,
            "--out",
            str(tmp_path / tag),
        ],  # fmt: skip
        "pseudo": lambda tag: [
            "pseudo",
            str(data),
            "--checkpoints",
            ckpt,
            "--labels",
            labels,
            "--min-score",
            "0.5",
            "--out",
            str(tmp_path / f"{tag}.csv"),
        ],  # fmt: skip
        "convert": lambda tag: ["convert", str(src), "--out", str(tmp_path / tag)],
        "recipe": lambda tag: ["recipe", ckpt],
        "models": lambda tag: ["models", "--tiny", "--no-params"],
    }
    out, err = _run(capsys, argvs[command]("loud"))
    quiet_out, quiet_err = _run(capsys, [*argvs[command]("quiet"), "--quiet"])
    assert [line for line in quiet_err if not line.startswith("warning:")] == [], quiet_err  # warnings stay
    assert quiet_out and len(quiet_out) <= len(out)
    # the same summary, up to the output folder's name
    assert [line.replace("quiet", "loud") for line in quiet_out] == [
        line
        for line in out
        if line.replace("quiet", "loud") in {q.replace("quiet", "loud") for q in quiet_out}
    ]
