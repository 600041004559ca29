"""ImageNet 2D -> 3D inflation from local torchvision files into the seed's ResNeXt50 and DenseNet121.

A volume constant along z must give, on every plane away from the z borders, exactly the 2D network's
features of that plane at every level (kernels repeated along depth and divided by their depth).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from byu_motor.models.encoders.seed import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    densenet121_seed,
    inflate_state_dict,
    resnext50_seed,
    torchvision_densenet_key,
)

DEPTH, SIDE = 256, 32  # the deepest level keeps 8 planes, the middle ones free of the z borders


def _randomise_batch_norm(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def _resnext_levels(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    a = net.relu(net.bn1(net.conv1(x)))
    out = [a]
    for stage in (nn.Sequential(net.maxpool, net.layer1), net.layer2, net.layer3, net.layer4):
        a = stage(a)
        out.append(a)
    return out


def _densenet_levels(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    f = net.features
    a = f.relu0(f.norm0(f.conv0(x)))
    out = [a]
    pre = f.pool0
    for i in (1, 2, 3):
        t = getattr(f, f"transition{i}")
        a = t.relu(t.norm(getattr(f, f"denseblock{i}")(pre(a))))
        out.append(a)
        pre = nn.Sequential(t.conv, t.pool)
    out.append(f.norm5(f.denseblock4(pre(a))))
    return out


CASES = {
    "resnext50_32x4d": (resnext50_seed, _resnext_levels),
    "densenet121": (densenet121_seed, _densenet_levels),
}


@pytest.mark.parametrize("name", list(CASES))
def test_z_constant_volume_gives_the_2d_features_on_every_plane(name: str, tmp_path):
    torch.manual_seed(0)
    build, levels_2d = CASES[name]
    net2 = getattr(torchvision.models, name)(weights=None)
    _randomise_batch_norm(net2)
    net2.eval()
    path = tmp_path / f"{name}.pth"
    torch.save(net2.state_dict(), path)
    enc = build(pretrained_file=str(path)).eval()

    img = torch.rand(1, 1, SIDE, SIDE)  # grey, in [0, 1] units (x / 255)
    vol = img.unsqueeze(2).expand(1, 1, DEPTH, SIDE, SIDE).contiguous()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        feats3 = enc(vol)
        feats2 = levels_2d(net2, (img.expand(1, 3, SIDE, SIDE) - mean) / std)
    assert len(feats3) == len(feats2) == 5
    border_differs = False
    for level, (f3, f2) in enumerate(zip(feats3, feats2)):
        n = f3.shape[2]
        assert f3.shape[:2] + f3.shape[3:] == f2.shape, level
        tol = 1e-4 * f2.abs().max().item()
        for z in range(3 * n // 8, 5 * n // 8):  # the middle quarter of the planes
            assert torch.allclose(f3[:, :, z], f2, atol=tol, rtol=1e-4), (level, z)
        border_differs |= not torch.allclose(f3[:, :, 0], f2, atol=tol, rtol=1e-4)
    assert border_differs  # zero padding along z shows at the borders: the comparison can fail


def test_a_kernel_is_repeated_along_depth_and_divided_by_it():
    conv2 = torch.randn(8, 3, 7, 7)
    target = nn.Sequential(nn.Conv3d(3, 8, 7, bias=False), nn.BatchNorm3d(8))
    bn = {k: torch.rand_like(v) if v.is_floating_point() else v for k, v in target[1].state_dict().items()}
    state = {"0.weight": conv2, "fc.weight": torch.ones(2)} | {f"1.{k}": v for k, v in bn.items()}
    out = inflate_state_dict(state, target, "w.pth", drop_prefixes=("fc.",))
    assert out["0.weight"].shape == (8, 3, 7, 7, 7)
    for d in range(7):
        assert torch.equal(out["0.weight"][:, :, d], conv2 / 7)
    assert torch.equal(out["1.running_var"], bn["running_var"]) and "fc.weight" not in out


def test_errors_name_the_file_and_the_first_key_that_does_not_fit(tmp_path):
    net2 = torchvision.models.densenet121(weights=None)
    state = net2.state_dict()
    bad = dict(state)
    bad["features.conv0.weight"] = torch.zeros(64, 3, 5, 5)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"bad\.pth.*'features\.conv0\.weight'.*\(64, 3, 5, 5\)"):
        densenet121_seed(pretrained_file=str(path))
    del bad["features.conv0.weight"]
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"bad\.pth.*'features\.conv0\.weight'.*missing"):
        densenet121_seed(pretrained_file=str(path))
    extra = dict(state) | {"features.extra.weight": torch.zeros(1)}
    torch.save(extra, path)
    with pytest.raises(ValueError, match=r"bad\.pth.*'features\.extra\.weight'"):
        densenet121_seed(pretrained_file=str(path))


def test_torchvision_dense_layer_keys_old_and_new_map_to_monai():
    new = "features.denseblock2.denselayer11.norm1.running_var"
    old = "features.denseblock2.denselayer11.norm.1.running_var"
    want = "features.denseblock2.denselayer11.layers.norm1.running_var"
    assert torchvision_densenet_key(new) == torchvision_densenet_key(old) == want
    assert torchvision_densenet_key("features.transition1.conv.weight") == "features.transition1.conv.weight"
