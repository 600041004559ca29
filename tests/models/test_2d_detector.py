"""2D members: the seed's parameter counts, the 2D and 3D forward contracts, config routing, checkpoints."""

from __future__ import annotations

import pytest
import torch

from byu_motor.config import Config, ModelConfig
from byu_motor.models import create_model, load_checkpoint, save_checkpoint
from byu_motor.models.detector2d import SliceDetector
from byu_motor.presets import get_preset

# name -> (the seed's reported parameter count, encoder channels)
SEED_2D = {
    "seed_maxvit_tiny_2d": (86.1e6, [64, 64, 128, 256, 512]),
    "seed_coat_lite_medium_2d": (99.6e6, [128, 256, 320, 512]),
}


def seed_regression_head_params(
    crop: int = 896, channels: int = 512, per_kpt: int = 64, hidden: int = 1024
) -> int:
    """Parameters of the seed's direct-regression head ("decoupled_v2"), built in training but never used.

    LayerNorm2d over the stride-32 map, a 1x1 conv to ``per_kpt`` channels, a Linear from the flattened
    ``per_kpt x (crop/32)^2`` map to ``hidden``, then two small Linears (2 coordinates, 1 score).
    """
    cells = (crop // 32) ** 2
    return (
        2 * channels
        + (channels * per_kpt + per_kpt)
        + (per_kpt * cells * hidden + hidden)
        + (hidden * 2 + 2)
        + (hidden + 1)
    )


@pytest.mark.parametrize("name", list(SEED_2D))
def test_parameter_counts_match_the_seed_with_its_unused_regression_head(name: str):
    cfg = get_preset(name)
    want, channels = SEED_2D[name]
    with torch.device("meta"):
        model = create_model(cfg.model)
    assert isinstance(model, SliceDetector)
    n = sum(p.numel() for p in model.parameters())
    # the seed's 86.1 M / 99.6 M include a 51.4 M regression head (loss weight 0, dropped at inference)
    total = n + seed_regression_head_params()
    assert abs(total - want) / want < 0.01, (
        f"{name}: {n / 1e6:.2f} M + head = {total / 1e6:.2f} M vs {want / 1e6} M"
    )
    assert model.encoder.out_channels == channels
    assert model.stride == (4, 8, 8) and model.stride_2d == 16
    # fused stride-16 map: the target level plus 64 per other level = 512 for both encoders
    assert model.neck.decoder.skip_norm.weight.shape[0] == 512


def test_seed_2d_recipe():
    cfg = get_preset("seed_maxvit_tiny_2d")
    assert cfg.data.spacing_a == (32.0, 16.0, 16.0) and cfg.data.patch_size[1:] == (896, 896)
    assert (cfg.train.lr, cfg.train.batch_size * cfg.train.grad_accum, cfg.train.bg_ratio) == (1e-4, 32, 0.05)
    assert get_preset("seed_coat_lite_medium_2d").train.bg_ratio == 0.25
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_normalisation_comes_from_the_encoders_pretrained_config():
    with torch.device("meta"):
        coat = create_model(get_preset("seed_coat_lite_medium_2d").model)
    assert coat.encoder.mean == pytest.approx((0.485, 0.456, 0.406))
    assert coat.encoder.std == pytest.approx((0.229, 0.224, 0.225))


def test_3d_call_every_plan_averages_the_2d_logits_of_each_slice_triplet():
    torch.manual_seed(0)
    cfg = get_preset("tiny_2d").model
    cfg.slice_windows = "every"
    model = create_model(cfg).eval()
    torch.nn.init.normal_(model.head[-1].weight, std=0.5)
    vol = torch.rand(1, 1, 5, 40, 48)
    with torch.no_grad():
        grid = model(vol)
        assert grid.shape == (1, 1, 3, 10, 12)  # ceil(5/2), ceil(40/4), ceil(48/4)
        slices = vol[0, 0]
        idx = [[max(z - 1, 0), z, min(z + 1, 4)] for z in range(5)]
        logits2d = torch.cat([model.forward2d(slices[i][None]) for i in idx])  # [5, 1, 5, 6] at stride 8
        up = torch.nn.functional.interpolate(logits2d, scale_factor=2, mode="bilinear", align_corners=False)
    want = torch.stack([up[0:2].mean(0), up[2:4].mean(0), up[4:5].mean(0)], dim=1)[None]
    torch.testing.assert_close(grid, want[..., :10, :12], atol=1e-5, rtol=1e-5)


def test_create_model_routes_on_dims_and_names_bad_settings():
    with pytest.raises(ValueError, match="dims"):
        create_model(ModelConfig(dims=4))
    with pytest.raises(ValueError, match="no_such_net"):
        create_model(
            ModelConfig(dims=2, encoder="no_such_net", neck="factorized_fpn", head="conv3", in_channels=3)
        )
    with pytest.raises(ValueError, match="odd"):
        create_model(
            ModelConfig(dims=2, encoder="resnet10t", neck="factorized_fpn", head="conv3", in_channels=2)
        )


def test_checkpoint_round_trip_rebuilds_the_2d_member(tmp_path):
    cfg = get_preset("tiny_2d")
    model = create_model(cfg.model).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, cfg)
    loaded = load_checkpoint(path)
    x = torch.rand(1, 1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(x), model(x))
