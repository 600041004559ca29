"""kernels/recipes/seed_full.json: the seed's final 5-member ensemble (3 x 3D, 2 x 2D; 9 candidate lists)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from byu_motor.infer.factory import default_predictor_factory
from byu_motor.infer.recipe import read_recipe_file, resolve_infer
from byu_motor.models import create_model, save_checkpoint
from byu_motor.presets import get_preset

RECIPE = Path(__file__).resolve().parents[2] / "kernels" / "recipes" / "seed_full.json"


def stand_in(folder: Path, preset: str) -> None:
    """A tiny checkpoint saved as ``<preset>.pt`` whose stored ``infer`` section is the seed member's."""
    cfg = get_preset("tiny_2d" if preset.endswith("_2d") else "tiny")
    cfg.infer = get_preset(preset).infer
    torch.manual_seed(0)
    save_checkpoint(folder / f"{preset}.pt", create_model(cfg.model), cfg)


def test_the_full_seed_recipe_resolves_to_nine_lists_with_per_member_strides(tmp_path):
    shutil.copy(RECIPE, tmp_path / "ensemble.json")
    recipe = read_recipe_file(tmp_path / "ensemble.json")
    names = [Path(m.checkpoint).stem for m in recipe.members]
    assert names == [
        "seed_resnext50",
        "seed_densenet121",
        "seed_x3d_m",
        "seed_maxvit_tiny_2d",
        "seed_coat_lite_medium_2d",
    ]
    for name in names:
        stand_in(tmp_path, name)
    cfg = resolve_infer(recipe.members, recipe.sets)
    assert (cfg.ensemble, cfg.views_apart, cfg.tta_identity, cfg.threshold) == (
        "wbf",
        True,
        False,
        "negative_share",
    )
    per = [cfg.members[m.checkpoint] for m in recipe.members]
    assert [p["decode_upsample"] for p in per] == [2, 2, 2, 1, 1]
    assert [p["peak_floor"] for p in per] == [0.02] * 3 + [0.01] * 2  # the seed's 3D and 2D floors
    assert [p["weight"] for p in per] == [1.0] * 5
    assert [len(p["tta"]) for p in per] == [2, 2, 2, 2, 1]
    assert [tuple(p["patch_size"] or get_preset(n).data.patch_size) for p, n in zip(per, names)] == [
        (224, 448, 448)
    ] * 3 + [(48, 896, 896)] * 2
    predictor = default_predictor_factory([m.checkpoint for m in recipe.members], cfg, "cpu")
    assert predictor.weights == [1.0] * 9  # 9 candidate lists fused by WBF, equal weights
    assert predictor.floors == [0.02] * 6 + [0.01] * 3
    # the 3D members' stride-4 stand-ins decode at stride 2, the 2D members on their own (2, 4, 4) grid
    assert [spec.decode_upsample for spec in predictor.models] == [2, 2, 2, 1, 1]
