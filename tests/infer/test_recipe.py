"""The checkpoint is the recipe: per-member and ensemble-wide settings, recipe files, predict with no --set."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from byu_motor.config import InferConfig
from byu_motor.data.io import write_tomogram
from byu_motor.infer.recipe import Member, apply_member, read_recipe_file, resolve_infer


def reader(table):
    return lambda path: table[path]


def test_members_keep_views_window_and_weight_and_the_ensemble_takes_the_union_of_views():
    table = {
        "a.pt": InferConfig(
            tta=("flip_x",), patch_size=(8, 16, 16), batch_windows=2, decode_upsample=2, peak_floor=0.01
        ),
        "b.pt": InferConfig(tta=("flip_z", "flip_x"), batch_windows=8),
    }
    cfg = resolve_infer([Member("a.pt", 2.0), Member("b.pt")], read_infer=reader(table))
    assert cfg.tta == ("flip_x", "flip_z") and cfg.patch_size is None
    assert cfg.members == {
        "a.pt": {
            "weight": 2.0,
            "tta": ["flip_x"],
            "patch_size": (8, 16, 16),
            "decode_upsample": 2,
            "peak_floor": 0.01,
        },
        "b.pt": {
            "weight": 1.0,
            "tta": ["flip_z", "flip_x"],
            "patch_size": None,
            "decode_upsample": 1,
            "peak_floor": 0.02,
        },
    }
    assert cfg.batch_windows == 2  # how the machine runs it: the first member's, never a conflict
    # a member's own overrides apply to it alone; the shared ones to all, last
    cfg = resolve_infer(
        [Member("a.pt", sets=["tta=rot90"]), Member("b.pt")], ["infer.topk=3"], read_infer=reader(table)
    )
    assert cfg.members["a.pt"]["tta"] == ["rot90"] and cfg.topk == 3


def test_ensemble_wide_disagreements_are_refused_naming_the_checkpoints():
    table = {"x/a.pt": InferConfig(threshold_value=0.3), "x/b.pt": InferConfig(threshold_value=0.5)}
    members = [Member("x/a.pt"), Member("x/b.pt")]
    with pytest.raises(ValueError, match=r"infer.threshold_value \(a.pt: 0.3, b.pt: 0.5\).*--set"):
        resolve_infer(members, read_infer=reader(table))
    # one value for all settles it
    assert resolve_infer(members, ["threshold_value=0.4"], read_infer=reader(table)).threshold_value == 0.4
    # same file names in two folders: the full paths are named
    table = {"f0/best.pt": InferConfig(topk=5), "f1/best.pt": InferConfig(topk=3)}
    with pytest.raises(ValueError, match="f0/best.pt: 5, f1/best.pt: 3"):
        resolve_infer([Member("f0/best.pt"), Member("f1/best.pt")], read_infer=reader(table))


def test_bad_ensembles_and_overrides_are_refused():
    table = {"a.pt": InferConfig()}
    with pytest.raises(ValueError, match="at least one"):
        resolve_infer([], read_infer=reader(table))
    with pytest.raises(ValueError, match="listed twice"):
        resolve_infer([Member("a.pt"), Member("a.pt")], read_infer=reader(table))
    with pytest.raises(ValueError, match="only infer"):
        resolve_infer([Member("a.pt")], ["model.stride=2"], read_infer=reader(table))
    with pytest.raises(ValueError, match="member a.pt.*unknown key"):
        resolve_infer([Member("a.pt", sets=["infer.nope=1"])], read_infer=reader(table))


def test_recipe_files_resolve_paths_next_to_the_file_and_name_bad_entries(tmp_path):
    path = tmp_path / "sub" / "ensemble.json"
    path.parent.mkdir()
    body = {"members": [{"checkpoint": "f0/best.pt", "weight": 2, "set": ["tta=flip_x"]}, "/abs/b.pt"]}
    path.write_text(json.dumps({**body, "set": ["infer.topk=3"]}))
    recipe = read_recipe_file(path)
    assert [m.checkpoint for m in recipe.members] == [str(path.parent / "f0/best.pt"), "/abs/b.pt"]
    assert recipe.members[0].weight == 2.0 and recipe.members[0].sets == ["tta=flip_x"]
    assert recipe.sets == ["infer.topk=3"]
    for bad, match in [
        ({"members": []}, "non-empty 'members'"),
        ({"members": [{"checkpoint": "a.pt", "weight": 0}]}, r"members\[0\]: weight must be a positive"),
        ({"members": ["a.pt", {"ckpt": "b.pt"}]}, r"members\[1\]: expected a checkpoint"),
        ({"members": ["a.pt"], "sets": []}, "unknown key"),
        ({"members": ["a.pt"], "set": "topk=3"}, "list of KEY=VALUE"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=f"recipe {path}.*{match}"):
            read_recipe_file(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON file"):
        read_recipe_file(path)


def test_apply_member_sets_weight_views_and_window_on_a_copy():
    from byu_motor.infer.spec import ModelSpec

    spec = ModelSpec(module=None, stride=4, spacing_a=10.0, patch_size=(8, 8, 8))  # type: ignore[arg-type]
    out = apply_member(spec, {"weight": 3.0, "tta": ["flip_x"], "patch_size": None})
    assert (out.weight, out.views, out.patch_size) == (3.0, ("flip_x",), (8, 8, 8))
    assert spec.weight == 1.0 and spec.views is None and apply_member(spec, None) is spec


@pytest.fixture
def tiny_checkpoint(tmp_path):
    import torch

    from byu_motor.models.checkpoint import save_checkpoint
    from byu_motor.models.detector import create_model
    from byu_motor.presets import get_preset

    cfg = get_preset("tiny")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", create_model(cfg.model), cfg, extra={"threshold": 0.0})
    rng = np.random.default_rng(0)
    for name in ("tomo_x", "tomo_y"):
        vol = rng.integers(0, 255, (24, 40, 40)).astype(np.uint8)
        write_tomogram(vol, tmp_path / "data" / "test" / name)
    return cfg, ckpt


def _spacings(path) -> list:
    return sorted(np.ravel([r["spacing_a"] for r in _partial(path).values()]).tolist())


def _partial(path) -> dict:
    lines = [json.loads(x) for x in open(f"{path}.partial.jsonl")]
    return {r["tomo_id"]: r for r in lines if r.get("event") == "result" or "tomo_id" in r}


@pytest.mark.slow
def test_a_tiny_checkpoint_predicts_its_recipe_with_no_set(tmp_path, tiny_checkpoint):
    from byu_motor.cli import main
    from byu_motor.infer.runner import run_prediction

    cfg, ckpt = tiny_checkpoint
    data = tmp_path / "data"
    base = ["predict", str(data), "--checkpoints", str(ckpt), "--devices", "cpu", "--quiet", "--keep-partial"]
    assert main([*base, "--out", str(tmp_path / "plain.csv")]) == 0
    # the recipe repeated by hand: every inference setting of the tiny preset passed explicitly
    by_hand = run_prediction(
        data, [str(ckpt)], tmp_path / "hand.csv", cfg.infer, devices="cpu", keep_partial=True
    )
    plain = pd.read_csv(tmp_path / "plain.csv")
    pd.testing.assert_frame_equal(plain, by_hand.reset_index(drop=True), check_dtype=False)
    cands = {t: r["candidates"] for t, r in _partial(tmp_path / "plain.csv").items()}
    assert cands == {t: r["candidates"] for t, r in _partial(tmp_path / "hand.csv").items()}
    # and it predicted at the recipe's 52.4 A (not the 13.1 A of a default config), with its two spacings
    assert _spacings(tmp_path / "plain.csv") and _spacings(tmp_path / "plain.csv") == pytest.approx(
        [52.4] * len(_spacings(tmp_path / "plain.csv"))
    )
    default = dataclasses.replace(cfg.infer, test_spacing_a=InferConfig().test_spacing_a)
    run_prediction(data, [str(ckpt)], tmp_path / "default.csv", default, devices="cpu", keep_partial=True)
    assert _spacings(tmp_path / "default.csv") == pytest.approx(
        [13.1] * len(_spacings(tmp_path / "plain.csv"))
    )
    # an override still wins over the checkpoint
    assert main([*base, "--out", str(tmp_path / "o.csv"), "--set", "test_spacing_a=40"]) == 0
    assert _spacings(tmp_path / "o.csv") == pytest.approx([40.0] * len(_spacings(tmp_path / "plain.csv")))


@pytest.mark.slow
def test_predict_recipe_file_and_the_recipe_command(tmp_path, tiny_checkpoint, capsys):
    from byu_motor.cli import main

    cfg, ckpt = tiny_checkpoint
    recipe = tmp_path / "ensemble.json"
    recipe.write_text(json.dumps({"members": [{"checkpoint": "tiny.pt", "set": ["tta=flip_z"]}]}))
    out = tmp_path / "r.csv"
    argv = ["predict", str(tmp_path / "data"), "--recipe", str(recipe), "--out", str(out), "--devices", "cpu"]
    assert main(argv) == 0
    assert "tta=flip_z|" in capsys.readouterr().out
    assert main(["recipe", str(ckpt)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (
        shown["infer"]["test_spacing_a"] == pytest.approx(52.4) and shown["model"] == cfg.to_dict()["model"]
    )
    assert main(["recipe", "tiny", "--set", "infer.topk=2"]) == 0
    assert json.loads(capsys.readouterr().out)["infer"]["topk"] == 2
    assert main(["recipe", str(recipe)]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["infer"]["tta"] == ["flip_z"] and resolved["members"][0]["checkpoint"].endswith("tiny.pt")
    assert main(["recipe", "no_such_preset"]) == 2
    assert "unknown preset 'no_such_preset'" in capsys.readouterr().err
