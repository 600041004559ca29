"""A shortened demo produces every artefact: data, two checkpoints, submission, previews, report, F2 line."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from PIL import Image

from byu_motor.cli import main
from byu_motor.models.checkpoint import read_checkpoint_config
from byu_motor.synth import KINDS, format_sources


@pytest.mark.slow
def test_short_demo_writes_every_artefact(tmp_path, capsys):
    out = tmp_path / "demo"
    # a budget far above the ~30 s this takes: on a machine shared with another torch job the prediction took
    # 264 s, and the budget then (rightly) skipped previews that this test counts
    rc = main(["demo", "--out", str(out), "--n-train", "6", "--n-test", "4", "--scale", "0.2", "--steps", "6",
               "--set", "train.val_every=6", "--set", "train.num_workers=0", "--time-budget", "3600"])  # fmt: skip
    assert rc == 0
    captured = capsys.readouterr()
    printed = captured.out.strip().splitlines()
    assert printed[-1].startswith("F2 = ") and 0.0 <= float(printed[-1].split("=")[1]) <= 1.0
    # a line for every stage on stderr (plain lines: capsys is not a terminal)
    for stage in (
        "synthesise: ",
        "cache (read, resample): ",
        "train fold 0: ",
        "train fold 1: ",
        "predict: ",
    ):
        assert any(line.startswith(stage) for line in captured.err.splitlines()), stage
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("submission.csv", "result.json", "report.md"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~mask, name  # the usual mode, not 0600

    for name in ["train_labels.csv", "sample_submission.csv", "test_labels.csv"]:
        assert (out / "data" / name).exists()
    for k in (0, 1):
        assert (out / "runs" / f"fold{k}" / "best.pt").exists()
    # folds 0 and 1 of 5 (the default split): each trains on 4-5 of the 6 tomograms, not on 3 disjoint ones
    folds = pd.read_csv(out / "runs" / "fold0" / "folds.csv")
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    assert "ensemble of folds 0-1 of 5" in (out / "report.md").read_text()
    # the recipe's second fold trains at the test spacing, and the two checkpoints' points are fused
    spacings = [
        read_checkpoint_config(out / "runs" / f"fold{k}" / "best.pt").config.data.spacing_a for k in (0, 1)
    ]
    assert spacings == [(64.0, 64.0, 64.0), (52.4, 52.4, 52.4)]
    assert "Fold 1 also sets `data.spacing_a=52.4,52.4,52.4`" in (out / "report.md").read_text()
    assert "points fused" in (out / "report.md").read_text()
    sub = pd.read_csv(out / "submission.csv")
    sample = pd.read_csv(out / "data" / "sample_submission.csv")
    assert sub["tomo_id"].tolist() == sample["tomo_id"].tolist() and len(sub) == 4

    report = (out / "report.md").read_text()
    assert "| F2 |" in report and "train fold 1" in report and "predict" in report
    assert "(misplaced) |" in report
    # every false positive and misplaced prediction is attributed to what it hit, and the report shows it
    result = json.loads((out / "result.json").read_text())
    assert result["predict_stages_s"]["tomograms"] == 4 and result["predict_stages_s"]["forward"] > 0
    sources = result["error_sources"]
    assert sum(sources["false_positive"].values()) == result["fp"]
    assert sum(sources["misplaced"].values()) == result["misplaced"]
    assert set(sources["false_positive"]) | set(sources["misplaced"]) <= set(KINDS) - {"unrecorded"}
    assert f"| what the false positives hit | {format_sources(sources['false_positive'])} |" in report
    assert printed[-3].startswith("false positives hit: ")
    assert printed[-2] == f"report: {out / 'report' / 'index.html'}"
    assert (out / "report" / "index.html").exists()

    # the synthetic test spacing (13.1 A / scale for most tomograms) is used, not the preset's 52.4 A
    assert not (out / "submission.csv.partial.jsonl").exists()  # a finished run removes its resume file

    pngs = sorted((out / "previews").glob("*.png"))
    assert [p.stem for p in pngs] == sorted(sample["tomo_id"])
    for p in pngs:
        with Image.open(p) as im:
            im.verify()
        # matplotlib figures 1200 px wide (three views and the heatmap per row)
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] == 1200

    # the checkpoints alone reproduce the demo's submission: `predict --recipe ensemble.json`, no --set
    again = tmp_path / "again.csv"
    argv = ["predict", str(out / "data"), "--recipe", str(out / "ensemble.json"), "--out", str(again)]
    assert main([*argv, "--devices", "cpu", "--quiet", "--keep-partial"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(again), sub)
    records = [json.loads(line) for line in (tmp_path / "again.csv.partial.jsonl").read_text().splitlines()]
    assert {round(r["spacing_a"], 1) for r in records if "spacing_a" in r} == {65.5}


@pytest.mark.parametrize(("cuda", "expected"), [(False, "tiny"), (True, "tiny_fine_gpu")])
def test_demo_picks_a_preset_made_for_synthetic_data(monkeypatch, cuda, expected):
    import torch

    from byu_motor.demo import DemoSettings, pick_preset

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert pick_preset(DemoSettings()) == expected
    assert pick_preset(DemoSettings(preset="resnet18_unet_s16")) == "resnet18_unet_s16"


@pytest.mark.parametrize(("folds", "n_folds"), [(3, 2), (0, 5), (1, 1)])
def test_demo_rejects_more_checkpoints_than_folds_before_any_work(tmp_path, capsys, folds, n_folds):
    from byu_motor.demo import DemoSettings, run_demo

    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--folds", str(folds), "--n-folds", str(n_folds)])
    assert rc == 2
    assert f"--folds {folds}, --n-folds {n_folds}" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"folds={folds}, n_folds={n_folds}"):
        run_demo(out, DemoSettings(folds=folds, n_folds=n_folds))
    assert not out.exists()


def test_tiny_demo_trains_its_second_fold_at_the_test_spacing_and_fuses_points():
    from byu_motor.demo import DemoSettings, fold_configs

    first, second = fold_configs("tiny", DemoSettings())
    assert (first.train.fold, second.train.fold) == (0, 1)
    assert first.data.spacing_a == (64.0, 64.0, 64.0) and second.data.spacing_a == (52.4, 52.4, 52.4)
    # apart from the resolution the two folds are trained alike
    assert first.override(["data.spacing_a=52.4,52.4,52.4", "train.fold=1"]).to_dict() == second.to_dict()
    # each checkpoint carries the demo's recipe: the test data's assumed spacing, its views, fused points
    assert first.infer.ensemble == "fusion" and first.infer.tta == ("flip_x",)
    assert first.infer.test_spacing_a == pytest.approx(52.4) and first.infer == second.infer
    half = fold_configs("tiny", DemoSettings(scale=0.5, tta=()))[0].infer
    assert half.test_spacing_a == pytest.approx(26.2) and half.tta == ()
    # one checkpoint: no second fold to set
    assert [c.data.spacing_a for c in fold_configs("tiny", DemoSettings(folds=1))] == [(64.0, 64.0, 64.0)]


def test_demo_fold_overrides_replace_the_recipe_and_shared_sets_win_for_every_fold():
    from byu_motor.demo import DemoSettings, fold_configs

    same = fold_configs("tiny", DemoSettings(fold_overrides={}))
    assert [c.data.spacing_a for c in same] == [(64.0, 64.0, 64.0)] * 2
    own = fold_configs("tiny", DemoSettings(fold_overrides={0: ["train.lr=1e-3"]}))
    assert [c.train.lr for c in own] == [1e-3, 2e-3] and own[1].data.spacing_a == (64.0, 64.0, 64.0)
    shared = fold_configs("tiny", DemoSettings(overrides=["data.spacing_a=40,40,40"], steps=7, seed=3))
    assert [c.data.spacing_a for c in shared] == [(40.0, 40.0, 40.0)] * 2
    assert {(c.train.steps, c.train.seed, c.train.n_folds) for c in shared} == {(7, 3, 5)}
    with pytest.raises(ValueError, match=r"fold_overrides for folds \[2\]"):
        DemoSettings(fold_overrides={2: ["train.lr=1e-3"]})


def test_demo_rejects_a_bad_fold_set_before_any_work(tmp_path, capsys):
    from byu_motor.commands.demo import parse_fold_sets
    from byu_motor.demo import DemoSettings, run_demo

    assert parse_fold_sets([], same=False) is None and parse_fold_sets([], same=True) == {}
    assert parse_fold_sets(
        ["1:data.spacing_a=52.4,52.4,52.4", "1:train.lr=1e-3", "0:train.ema=0"], same=False
    ) == {
        1: ["data.spacing_a=52.4,52.4,52.4", "train.lr=1e-3"],
        0: ["train.ema=0"],
    }
    out = tmp_path / "demo"
    for bad in ["data.spacing_a=52.4", "x:train.lr=1", "1:train.lr"]:
        assert main(["demo", "--out", str(out), "--fold-set", bad]) == 2
        assert f"--fold-set {bad!r}" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--fold-set", "2:train.lr=1e-3"]) == 2
    assert "fold_overrides for folds [2]" in capsys.readouterr().err
    for flag in ["--fold-set", "--set"]:
        bad = "1:train.no_such_key=1" if flag == "--fold-set" else "train.no_such_key=1"
        assert main(["demo", "--out", str(out), flag, bad]) == 2
        assert "no_such_key" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no_such_key"):
        run_demo(out, DemoSettings(fold_overrides={1: ["train.no_such_key=1"]}))
    assert not out.exists()
