"""Tests for the seed's neck (factorized_fpn: branches, concatenation, one scSE decoder block) and conv3 head."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from byu_motor.config import ModelConfig
from byu_motor.models import NECKS, create_model
from byu_motor.models.seed_neck import ChannelLayerNorm3d, SCSE3d

LEVELS = [(2, 2, 2), (4, 4, 4), (8, 8, 8), (16, 16, 16), (32, 32, 32)]


def _neck(channels, **kw):
    return NECKS.build("factorized_fpn", in_channels=channels, strides=LEVELS, out_stride=(16, 16, 16), **kw)


def _features(channels, size=64, batch=1):
    return [torch.randn(batch, c, *(size // s[0],) * 3) for c, s in zip(channels, LEVELS)]


def test_branches_reach_every_other_level_and_concatenate_at_stride_16():
    chans = [4, 6, 8, 10, 12]
    neck = _neck(chans, out_channels=5, branch_channels=3).eval()
    assert neck.level == 3 and neck.others == [0, 1, 2, 4]
    # conv k3 C -> 2m (bias), GELU, channel LayerNorm, conv k3 2m -> m
    b = neck.branches[0]
    assert [type(m) for m in b] == [nn.Conv3d, nn.GELU, ChannelLayerNorm3d, nn.Conv3d]
    assert b[0].weight.shape == (6, 4, 3, 3, 3) and b[0].bias is not None
    assert b[3].weight.shape == (3, 6, 3, 3, 3)
    # decoder input: up2(s32) 12 + fused (10 + 4 * 3) = 34 channels; scSE on it, two convs to 5, scSE(5)
    att, conv1, conv2, att2 = neck.decoder
    assert isinstance(att, SCSE3d) and conv1[0].in_channels == 34 and conv2[0].out_channels == 5
    assert isinstance(att2, SCSE3d)
    with torch.no_grad():
        out = neck(_features(chans))
    assert len(out) == 1 and out[0].shape == (1, 5, 4, 4, 4)
    assert neck.strides == [(16, 16, 16)] and neck.out_channels == [5]


def test_branch_width_none_keeps_each_level_width_and_target_level_is_checked():
    chans = [4, 6, 8, 10, 12]
    neck = _neck(chans, out_channels=7, branch_channels=None, target_level=-2)
    assert [br[3].out_channels for br in neck.branches] == [4, 6, 8, 12]
    assert neck.decoder[1][0].in_channels == 12 + 10 + 4 + 6 + 8 + 12
    with pytest.raises(ValueError, match="target_level -3"):
        _neck(chans, target_level=-3)


def test_each_branch_is_resized_with_the_chosen_interpolation():
    chans = [2, 2, 2, 2, 2]
    feats = _features(chans)
    for mode in ("trilinear", "nearest"):
        neck = _neck(chans, out_channels=3, branch_channels=2, interpolation=mode).eval()
        branch_s2 = neck.branches[0](feats[0])
        want = nn.functional.interpolate(
            branch_s2, size=(4, 4, 4), mode=mode, align_corners=False if mode == "trilinear" else None
        )
        captured: dict[str, torch.Tensor] = {}

        def hook(module, inputs, output, store=captured):
            store["x"] = inputs[0]

        neck.decoder[0].register_forward_hook(hook)
        with torch.no_grad():
            neck(feats)
        # decoder input channels: [up2(s32) 2 | s16 2 | branch(s2) 2 | ...]
        assert torch.allclose(captured["x"][:, 4:6], want, atol=1e-6), mode
        assert torch.equal(captured["x"][:, 2:4], feats[3])


def test_channel_layer_norm_normalises_each_voxel_over_channels():
    ln = ChannelLayerNorm3d(5)
    y = ln(torch.randn(2, 5, 3, 4, 2) * 3 + 1)
    assert torch.allclose(y.mean(1), torch.zeros(2, 3, 4, 2), atol=1e-5)
    assert torch.allclose(y.var(1, unbiased=False), torch.ones(2, 3, 4, 2), atol=1e-3)


def test_scse_is_sum_of_channel_and_spatial_gates():
    torch.manual_seed(0)
    att = SCSE3d(32)
    assert att.cse[1].out_channels == 2  # 32 / 16
    x = torch.randn(1, 32, 2, 3, 3)
    cse = torch.sigmoid(att.cse[3](torch.relu(att.cse[1](x.mean((2, 3, 4), keepdim=True)))))
    sse = torch.sigmoid(att.sse[0](x))
    assert torch.allclose(att(x), x * cse + x * sse, atol=1e-6)


def test_conv3_head_starts_at_the_prior_and_is_one_3x3x3_conv():
    cfg = ModelConfig(
        encoder="resnet_tiny", neck="factorized_fpn", head="conv3", stride=(16, 16, 16), neck_channels=8
    )
    model = create_model(cfg)
    assert model.head.out.kernel_size == (3, 3, 3) and model.head.out.in_channels == 8
    assert model.head.out.bias.item() == pytest.approx(math.log(5e-5 / (1 - 5e-5)))
    assert model.head.out.bias.item() == pytest.approx(-9.90, abs=0.01)
    cfg.head_kwargs = {"prior": 0.5}
    assert create_model(cfg).head.out.bias.item() == pytest.approx(0.0)


def test_deep_supervision_adds_the_raw_deeper_level():
    chans = [4, 6, 8, 10, 12]
    neck = _neck(chans, out_channels=5, deep_supervision=True).eval()
    assert neck.strides == [(16, 16, 16), (32, 32, 32)] and neck.out_channels == [5, 12]
    feats = _features(chans)
    with torch.no_grad():
        out = neck(feats)
    assert torch.equal(out[1], feats[4])
