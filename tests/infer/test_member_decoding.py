"""Per-member decoding stride: in one ensemble a 3D member decodes its logits upsampled (stride 4 -> 2) while
a 2D member keeps its own grid, as in the seed's 9-list ensemble (3D at stride 8, 2D at (4, 8, 8))."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from byu_motor.data.grid import Grid
from byu_motor.infer.factory import default_predictor_factory
from byu_motor.infer.recipe import Member, resolve_infer
from byu_motor.models import create_model, save_checkpoint
from byu_motor.presets import get_preset

# the ensemble-wide settings the tiny and tiny_2d recipes disagree on, chosen for both
COMMON = [
    "infer.threshold=fixed",
    "infer.threshold_value=0.0",
    "infer.scales=1.0",
    "infer.scale_merge=mean",
    "infer.ensemble=fusion",
    "infer.steps=[]",
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("ckpts")
    paths = []
    for name in ("tiny", "tiny_2d"):
        cfg = get_preset(name)
        torch.manual_seed(0)
        paths.append(str(save_checkpoint(folder / f"{name}.pt", create_model(cfg.model), cfg)))
    return paths


def test_each_member_decodes_at_its_own_stride(checkpoints):
    members = [Member(checkpoints[0], sets=["infer.decode_upsample=2"]), Member(checkpoints[1])]
    cfg = resolve_infer(members, COMMON)
    assert [cfg.members[p]["decode_upsample"] for p in checkpoints] == [2, 1]
    predictor = default_predictor_factory(checkpoints, cfg, "cpu")
    vol = np.random.default_rng(0).integers(0, 255, (24, 48, 40)).astype(np.uint8)
    parts = predictor.scale_logits(vol, 64.0)
    assert len(parts) == 2
    for spec, want_stride, part in zip(predictor.models, [(2, 2, 2), (2, 4, 4)], parts):
        ((logits, grid),) = part
        res = Grid(vol.shape, 64.0).resampled(spec.spacing3).shape
        assert tuple(logits.shape) == tuple(-(-r // s) for r, s in zip(res, want_stride))
        assert tuple(grid.shape) == tuple(logits.shape)
    # the same ensemble with the 3D member at its own stride: coarser logits for it only
    plain = default_predictor_factory(
        checkpoints, resolve_infer([Member(p) for p in checkpoints], COMMON), "cpu"
    )
    coarse = plain.scale_logits(vol, 64.0)
    assert coarse[0][0][0].shape[0] < parts[0][0][0].shape[0]
    assert coarse[1][0][0].shape == parts[1][0][0].shape


def test_a_members_upsampling_must_divide_its_own_stride(checkpoints):
    # 4 divides the 3D member's stride (4, 4, 4) but not the 2D member's (2, 4, 4)
    cfg = resolve_infer(
        [Member(checkpoints[0], sets=["infer.decode_upsample=4"]), Member(checkpoints[1])], COMMON
    )
    default_predictor_factory(checkpoints, cfg, "cpu")
    bad = resolve_infer(
        [Member(checkpoints[0]), Member(checkpoints[1], sets=["infer.decode_upsample=4"])], COMMON
    )
    with pytest.raises(ValueError, match=r"decode_upsample=4 does not divide the model stride \(2, 4, 4\)"):
        default_predictor_factory(checkpoints, bad, "cpu")


def test_ensemble_wide_disagreement_is_still_refused(checkpoints):
    members = [Member(checkpoints[0], sets=["infer.peak_radius_a=900"]), Member(checkpoints[1])]
    with pytest.raises(ValueError, match="infer.peak_radius_a"):
        resolve_infer(members, [*COMMON, "infer.decode_upsample=1"])
    # members differing on decode_upsample are fine; a shared key left unset is still named
    no_merge = [c for c in COMMON if "scale_merge" not in c]
    members = [Member(checkpoints[0], sets=["infer.decode_upsample=2"]), Member(checkpoints[1])]
    with pytest.raises(ValueError, match="infer.scale_merge"):
        resolve_infer(members, no_merge)


@pytest.mark.parametrize("ensemble", ["fusion", "wbf", "logits"])
def test_each_candidate_list_is_decoded_at_its_members_peak_floor(checkpoints, monkeypatch, ensemble):
    """The seed decodes its 3D lists at 0.02 and its 2D lists at 0.01; a merged logit map at the config's."""
    import byu_motor.infer.predictor as predictor_module

    seen: list[float] = []
    real = predictor_module.seed_decode_peaks
    monkeypatch.setattr(
        predictor_module,
        "seed_decode_peaks",
        lambda p, g, o, r, floor, *a: seen.append(floor) or real(p, g, o, r, floor, *a),
    )
    shared = [*COMMON, "infer.peak_decoder=seed", f"infer.ensemble={ensemble}", "infer.views_apart=true"]
    members = [
        Member(checkpoints[0], sets=["infer.peak_floor=0.02", "infer.tta=identity,flip_x"]),
        Member(checkpoints[1], sets=["infer.peak_floor=0.01", "infer.tta=identity"]),
    ]
    cfg = resolve_infer(members, shared)
    assert [cfg.members[p]["peak_floor"] for p in checkpoints] == [0.02, 0.01]
    predictor = default_predictor_factory(checkpoints, cfg, "cpu")
    assert predictor.floors == [0.02, 0.02, 0.01]  # one per member x view list
    vol = np.random.default_rng(0).integers(0, 255, (24, 48, 40)).astype(np.uint8)
    predictor.predict_volume(vol, 64.0)
    assert seen == ([cfg.peak_floor] if ensemble == "logits" else [0.02, 0.02, 0.01])
