"""kernels/recipes/seed_3d.json: the seed's 3D ensemble as a recipe file the infer notebook reads."""

from __future__ import annotations

from pathlib import Path

from byu_motor.config import Config
from byu_motor.infer.recipe import read_recipe_file
from byu_motor.infer.tta import get_views, view_groups
from byu_motor.presets import get_preset, list_presets

RECIPE = Path(__file__).resolve().parents[2] / "kernels" / "recipes" / "seed_3d.json"


def test_the_seed_recipe_names_the_seed_presets_and_their_views():
    recipe = read_recipe_file(RECIPE)
    names = [Path(m.checkpoint).name for m in recipe.members]
    assert names == ["seed_resnext50.pt", "seed_densenet121.pt", "seed_x3d_m.pt"]
    assert all(Path(n).stem in list_presets() for n in names)
    views = []
    for member in recipe.members:
        infer = Config().override([*recipe.sets, *member.sets]).infer
        assert [v.name for v in get_views(infer.tta, add_identity=False)] == list(infer.tta)  # all known
        views.append(infer.tta)
        assert len(view_groups(infer.tta, infer.views_apart, infer.tta_identity)) == 2  # one list per view
        assert (infer.tiling, infer.decode_upsample, infer.ensemble) == ("seed", 2, "wbf")
        assert (infer.peak_decoder, infer.peak_floor, infer.peak_radius_a, infer.peak_max) == (
            "seed",
            0.02,
            1000.0,
            100,
        )
        assert (infer.fusion_radius_a, infer.threshold, infer.negative_share) == (
            1000.0,
            "negative_share",
            0.55,
        )
    # the seed's pairs: ResNeXt50 {zyx_z, zxy_z}, DenseNet121 {zyx_x, zyx_y}, X3D-M {zyx, zxy}
    assert views == [("flip_z", "rot90+flip_z"), ("flip_x", "flip_y"), ("identity", "rot90")]
    # the presets carry the same recipe: their checkpoints predict the seed's way with no file at all
    for name, member, own in zip(names, recipe.members, views):
        preset = get_preset(Path(name).stem).infer
        resolved = Config(infer=preset).override([*recipe.sets, *member.sets]).infer
        assert resolved == preset and preset.tta == own


def test_the_seed_recipe_fuses_six_lists_and_finds_a_ball(monkeypatch):
    import numpy as np

    import byu_motor.infer.merges as merges
    from byu_motor.infer import ModelSpec, Predictor
    from tests.infer.test_predictor import BallModel, ball_volume

    recipe = read_recipe_file(RECIPE)
    cfg = Config().override(list(recipe.sets)).infer
    member_views = [Config().override(list(m.sets)).infer.tta for m in recipe.members]
    cfg.tta = tuple(dict.fromkeys(v for views in member_views for v in views))
    specs = [
        ModelSpec(BallModel(16, sigma_vox=3.0), 16, 16.0, patch_size=(32, 64, 64), views=views)
        for views in member_views
    ]
    seen = []
    real = merges.wbf_points
    monkeypatch.setattr(
        merges, "wbf_points", lambda lists, *a, **k: seen.append(len(lists)) or real(lists, *a, **k)
    )
    centre = (30.2, 41.7, 50.3)
    ball = ball_volume((60, 90, 100), centre, 150 / 13.1)
    cands = Predictor(specs, cfg).predict_volume(ball, 13.1)
    assert seen == [6]
    # stride 8 at 16 A over 13.1 A voxels: a cell is 9.8 voxels; the cell centre is within half its diagonal
    assert np.linalg.norm(np.asarray(cands[0][:3]) - centre) < 0.5 * 8 * 16 / 13.1 * 3**0.5
