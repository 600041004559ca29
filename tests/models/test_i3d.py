"""I3D inflation: a z-constant volume gives the 2D network's response; local 2D weights are really used."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from byu_motor.models.encoders import ENCODERS, build_i3d, inflate_2d_to_3d


def _random_2d(name: str, in_chans: int = 1, features_only: bool = True) -> nn.Module:
    """A timm 2D net with random weights AND random BN statistics (so a BN copy bug cannot hide)."""
    torch.manual_seed(1)
    net = timm.create_model(name, pretrained=False, features_only=features_only, in_chans=in_chans)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def _z_constant(image: torch.Tensor, depth: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, depth, H, W], every plane equal to ``image``."""
    return image.unsqueeze(2).expand(-1, -1, depth, -1, -1).contiguous()


@pytest.mark.parametrize("name", ["test_resnet", "regnety_002"])  # ResNet (avg-down, deep stem); RegNet (SE)
def test_z_constant_input_gives_2d_features_on_every_plane(name):
    # Choice documented in inflate_2d_to_3d: with replicate padding along z the equality holds on every
    # plane of every level (zero padding would only keep it far from the z borders, see the next test).
    net2d = _random_2d(name)
    net3d = inflate_2d_to_3d(copy.deepcopy(net2d), z_padding="replicate").eval()
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        expected = net2d(image)
        got = net3d(_z_constant(image, 32))
    assert len(got) == len(expected) == 5
    for level, (feat2d, feat3d) in enumerate(zip(expected, got)):
        assert feat3d.shape[:2] == feat2d.shape[:2] and feat3d.shape[3:] == feat2d.shape[2:]
        for z in range(feat3d.shape[2]):
            torch.testing.assert_close(
                feat3d[:, :, z], feat2d, rtol=1e-4, atol=1e-4, msg=f"level {level} z {z}"
            )


def test_zero_z_padding_matches_only_away_from_borders():
    net2d = _random_2d("test_resnet")
    net3d = inflate_2d_to_3d(copy.deepcopy(net2d)).eval()  # default: zero padding (plain Conv3d)
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        stem2d = net2d(image)[0]
        stem3d = net3d(_z_constant(image, 32))[0]  # stride 2: 16 planes; the deep stem reaches 3 planes
    for z in range(4, 12):
        torch.testing.assert_close(stem3d[:, :, z], stem2d, rtol=1e-4, atol=1e-4)
    assert (stem3d[:, :, 0] - stem2d).abs().max() > 1e-2  # the border plane sees the zero padding


def test_conv_inflation_rules():
    conv = nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=2, dilation=2, groups=1, bias=True)
    pointwise = nn.Conv2d(4, 4, kernel_size=1)
    net = inflate_2d_to_3d(nn.Sequential(conv, pointwise, nn.MaxPool2d(3, 2, 1)), stem_stride=(1, 2, 2))
    c3, p3, pool = net
    assert isinstance(c3, nn.Conv3d) and c3.kernel_size == (3, 3, 3)
    assert c3.stride == (1, 2, 2)  # the stem override goes to the first strided layer only
    assert c3.padding == (2, 2, 2) and c3.dilation == (2, 2, 2)
    torch.testing.assert_close(c3.weight.sum(dim=2), conv.weight)
    torch.testing.assert_close(c3.bias, conv.bias)
    assert p3.kernel_size == (1, 1, 1)
    assert isinstance(pool, nn.MaxPool3d) and pool.kernel_size == (3, 3, 3) and pool.stride == (2, 2, 2)
    flat = inflate_2d_to_3d(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)), time_kernel="one")[0]
    assert flat.kernel_size == (1, 3, 3) and flat.padding == (0, 1, 1)


def test_unsupported_layer_is_named():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), timm.layers.LayerNorm2d(4))
    with pytest.raises(NotImplementedError, match="LayerNorm2d"):
        inflate_2d_to_3d(net)


@pytest.mark.parametrize("route", ["pth", "safetensors", "timm_overlay"])
def test_local_2d_weights_are_used(tmp_path, route):
    full2d = _random_2d("test_resnet", features_only=False)  # a classifier checkpoint, head included
    state = full2d.state_dict()
    if route == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "w.pth"
        torch.save(state, path)
    kwargs = (
        {"pretrained_cfg_overlay": {"file": str(path)}}
        if route == "timm_overlay"
        else {"pretrained_file": str(path)}
    )
    loaded = build_i3d("test_resnet", z_padding="replicate", **kwargs).eval()
    fresh = build_i3d("test_resnet", z_padding="replicate").eval()

    reference = _random_2d("test_resnet")  # same seed: the same weights as the file, features only
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        expected = reference(image)[-1]
        got = loaded(_z_constant(image, 32))[-1][:, :, 0]
        other = fresh(_z_constant(image, 32))[-1][:, :, 0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert (other - expected).abs().max() > 1e-2


def test_rgb_weights_adapted_to_one_channel(tmp_path):
    rgb = _random_2d("test_resnet", in_chans=3)
    torch.save(rgb.state_dict(), tmp_path / "rgb.pth")
    gray = build_i3d(
        "test_resnet", in_channels=1, pretrained_file=str(tmp_path / "rgb.pth"), z_padding="replicate"
    )
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        expected = rgb(image.expand(-1, 3, -1, -1))[-1]  # a grey image seen by the RGB network
        got = gray.eval()(_z_constant(image, 32))[-1][:, :, 0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_prefix_route_builds_any_timm_name():
    assert "i3d-test_resnet" not in ENCODERS
    encoder = ENCODERS.build("i3d-test_resnet", stem_stride=(1, 2, 2))
    assert encoder.strides == [(1, 2, 2), (2, 4, 4), (4, 8, 8), (8, 16, 16), (16, 32, 32)]
    assert ENCODERS.meta("i3d-test_resnet") == {}
    with pytest.raises(TypeError, match="bogus"):
        ENCODERS.build("i3d-test_resnet", bogus=1)


def test_overlay_without_file_is_refused():
    with pytest.raises(ValueError, match="file"):
        build_i3d("test_resnet", pretrained_cfg_overlay={"hf_hub_id": "x"})
