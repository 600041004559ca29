"""The 2.5D encoder: a timm 2D network on slice triplets, depth pooled by 2 after each stage, in a 3D detector."""

from __future__ import annotations

import pytest
import torch

from byu_motor.config import ModelConfig
from byu_motor.models import create_model
from byu_motor.models.slice_encoder import SliceStackEncoder


def test_depth_is_sampled_every_second_slice_and_halved_per_stage():
    enc = SliceStackEncoder("convnext_atto").eval()
    assert enc.strides == [(4, 4, 4), (8, 8, 8), (16, 16, 16), (32, 32, 32)]
    x = torch.rand(1, 1, 32, 64, 64)
    with torch.no_grad():
        feats = enc(x)
    assert [tuple(f.shape[2:]) for f in feats] == [(8, 16, 16), (4, 8, 8), (2, 4, 4), (1, 2, 2)]
    # the first level is the 2D stage-0 output of the triplets centred at 0, 2, 4, ... pooled in pairs
    idx = [[max(c - 1, 0), c, c + 1] for c in range(0, 32, 2)]
    imgs = (x[0, 0][torch.tensor(idx)] - enc.mean) / enc.std
    with torch.no_grad():
        first = enc.net.stages_0(enc.net.stem_1(enc.net.stem_0(imgs)))  # [16, C, 16, 16]
    want = first.view(8, 2, *first.shape[1:]).mean(1).permute(1, 0, 2, 3)[None]
    torch.testing.assert_close(feats[0], want, atol=1e-5, rtol=1e-5)


def test_a_3d_detector_takes_the_2p5d_encoder():
    cfg = ModelConfig(
        encoder="slices_2p5d",
        encoder_kwargs={"timm_name": "convnext_atto"},
        neck="factorized_fpn",
        head="conv3",
        stride=(16, 16, 16),
        neck_channels=32,
        neck_kwargs={"target_level": -2, "branch_channels": 16},
    )
    model = create_model(cfg).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 40, 64, 48)).shape == (1, 1, 3, 4, 3)
    with pytest.raises(ValueError, match="stage by stage"):
        SliceStackEncoder("coat_lite_tiny", img_size=128)
