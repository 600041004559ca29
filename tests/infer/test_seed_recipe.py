"""kernels/recipes/seed_3d.json: the seed's 3D ensemble as a recipe file the infer notebook reads."""

from __future__ import annotations

from pathlib import Path

from byu_motor.config import Config
from byu_motor.infer.recipe import read_recipe_file
from byu_motor.infer.tta import list_views
from byu_motor.presets import list_presets

RECIPE = Path(__file__).resolve().parents[2] / "kernels" / "recipes" / "seed_3d.json"


def test_the_seed_recipe_names_the_seed_presets_and_their_views():
    recipe = read_recipe_file(RECIPE)
    names = [Path(m.checkpoint).name for m in recipe.members]
    assert names == ["resnext50_fpn_s16.pt", "densenet121_unet_s16.pt", "x3d_m_fpn_s16.pt"]
    assert all(Path(n).stem in list_presets() for n in names)
    views = []
    for member in recipe.members:
        infer = Config().override([*recipe.sets, *member.sets]).infer
        assert set(infer.tta) <= set(list_views())
        views.append(infer.tta)
        assert (infer.tiling, infer.decode_upsample, infer.ensemble) == ("seed", 2, "wbf")
        assert (infer.fusion_radius_a, infer.threshold, infer.negative_share) == (
            1000.0,
            "negative_share",
            0.55,
        )
    assert views == [("flip_z", "rot90"), ("flip_x", "flip_y"), ("rot90",)]
