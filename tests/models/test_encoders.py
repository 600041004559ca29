"""Contract tests of every registered encoder: shapes, strides, channels, options, memory format, sizes."""

from __future__ import annotations

import copy
import math

import monai
import monai.networks.nets
import pytest
import torch
from monai.networks.nets import DenseNet121
from monai.networks.nets.mednext import create_mednext

from byu_motor.models.encoders import ENCODERS
from byu_motor.models.layers import count_parameters

TINY = [name for name in ENCODERS.names() if ENCODERS.meta(name).get("tiny")]


def _shape(name: str) -> tuple[int, int, int]:
    """Input (D, H, W), multiples of 32: MedNeXt's per-channel GroupNorm needs more than one voxel at stride 32."""
    return (32, 32, 64) if name.startswith("mednext") else (32, 32, 32)


def _build(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return ENCODERS.build(name, **kwargs)


def test_tiny_encoders_registered():
    assert set(TINY) == {"resnet_tiny", "densenet_tiny", "mednext_tiny", "x3d_tiny", "i3d_tiny"}


@pytest.mark.parametrize("name", TINY)
def test_forward_backward_shapes_and_grad_checkpointing(name):
    shape = _shape(name)
    plain = _build(name).train()
    ckpt = copy.deepcopy(plain)
    ckpt.set_grad_checkpointing(True)
    assert ckpt.grad_checkpointing and not plain.grad_checkpointing
    x = torch.randn(2, 1, *shape, requires_grad=True)
    features = plain(x)
    assert len(features) == len(plain.strides) == len(plain.out_channels) == 5
    assert plain.strides == [(2**i, 2**i, 2**i) for i in range(1, 6)]
    for feat, channels, stride in zip(features, plain.out_channels, plain.strides):
        assert feat.shape == (2, channels, *(n // s for n, s in zip(shape, stride)))
    sum(f.square().mean() for f in features).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    sum(f.square().mean() for f in ckpt(x.detach())).backward()
    for (param_name, p), (_, q) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert p.grad is not None and q.grad is not None, param_name
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=param_name)
    assert next(plain.parameters()).grad.abs().sum() > 0


def test_x3d_stage_strides_per_axis():
    model = _build("x3d_tiny", stage_strides=(2, (1, 2, 2), 2, 2)).eval()
    assert model.strides == [(2, 2, 2), (4, 4, 4), (4, 8, 8), (8, 16, 16), (16, 32, 32)]
    with torch.no_grad():
        features = model(torch.randn(1, 1, 32, 32, 32))
    assert [tuple(f.shape[2:]) for f in features] == [
        (16, 16, 16),
        (8, 8, 8),
        (8, 4, 4),
        (4, 2, 2),
        (2, 1, 1),
    ]


def test_grad_checkpointing_flag_from_factory():
    assert ENCODERS.build("x3d_tiny", grad_checkpointing=True).grad_checkpointing


@pytest.mark.parametrize("name", TINY)
def test_odd_sizes_lie_between_floor_and_ceil(name):
    # Documented behaviour: conv-padded stages give ceil(n / s); DenseNet's average-pool transitions and
    # MedNeXt's patchify stem floor. The detector pads to a multiple of the deepest stride anyway.
    model = _build(name).eval()
    size = (33, 35, 31)
    with torch.no_grad():
        features = model(torch.randn(1, 1, *size))
    for feat, stride in zip(features, model.strides):
        for n, s, got in zip(size, stride, feat.shape[2:]):
            assert n // s <= got <= math.ceil(n / s), (name, size, stride, tuple(feat.shape))


@pytest.mark.parametrize("name", TINY)
def test_stem_stride_and_in_channels(name):
    model = _build(name, stem_stride=(1, 2, 2), in_channels=2).eval()
    assert model.strides == [(2**i, 2 ** (i + 1), 2 ** (i + 1)) for i in range(5)]
    shape = _shape(name)
    shape = (shape[0] // 2, shape[1], shape[2])
    with torch.no_grad():
        features = model(torch.randn(1, 2, *shape))
    for feat, channels, stride in zip(features, model.out_channels, model.strides):
        assert feat.shape == (1, channels, *(n // s for n, s in zip(shape, stride)))


def test_resnet_without_max_pool_keeps_layer1_at_stem_resolution():
    pooled = _build("resnet_tiny").eval()
    model = _build("resnet_tiny", max_pool=False).eval()
    assert model.strides == [(2, 2, 2), (2, 2, 2), (4, 4, 4), (8, 8, 8), (16, 16, 16)]
    # same weights, only the pooling differs
    assert [p.shape for p in model.parameters()] == [p.shape for p in pooled.parameters()]
    with torch.no_grad():
        features = model(torch.randn(1, 1, 32, 32, 32))
    assert [tuple(f.shape[2:]) for f in features] == [
        (16, 16, 16),
        (16, 16, 16),
        (8, 8, 8),
        (4, 4, 4),
        (2, 2, 2),
    ]
    assert not any(isinstance(m, torch.nn.MaxPool3d) for m in model.modules())


def test_resnet_tiny_widths_and_layers_resize_the_stages():
    model = _build("resnet_tiny", widths=(16, 24, 32, 48), layers=(2, 1, 1, 3), max_pool=False).eval()
    assert model.out_channels == [16, 16, 24, 32, 48]
    blocks = [len(stage) for stage in list(model.stages)[1:]]
    assert blocks == [2, 1, 1, 3]
    with torch.no_grad():
        features = model(torch.randn(1, 1, 32, 32, 32))
    assert [f.shape[1] for f in features] == [16, 16, 24, 32, 48]


@pytest.mark.parametrize(
    "norm, layer", [("group", torch.nn.GroupNorm), ("instance", torch.nn.InstanceNorm3d)]
)
def test_resnet_norm_option_replaces_every_batch_norm(norm, layer):
    model = _build("resnet_tiny", max_pool=False, norm=norm)
    kinds = {
        type(m)
        for m in model.modules()
        if isinstance(m, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm))
    }
    assert kinds == {layer}  # stem, blocks and shortcut projections alike
    ref = _build("resnet_tiny", max_pool=False)
    assert count_parameters(model) == count_parameters(ref)  # affine weight + bias per channel, as batch norm
    # no batch statistics: one sample's features do not depend on the other samples of the batch
    model.train()
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        alone = model(x[:1])[-1]
        batched = model(x)[-1][:1]
    torch.testing.assert_close(alone, batched, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="unknown norm"):
        _build("resnet_tiny", norm="layer")


@pytest.mark.parametrize("name", TINY)
def test_channels_last_3d_forward_backward(name):
    model = _build(name).train()
    x = torch.randn(2, 1, *_shape(name))
    with torch.no_grad():
        expected = copy.deepcopy(model)(x)  # train-mode BN uses batch statistics: deterministic
    model = model.to(memory_format=torch.channels_last_3d)
    xs = x.to(memory_format=torch.channels_last_3d).requires_grad_()
    got = model(xs)
    for a, b in zip(expected, got):
        torch.testing.assert_close(b.contiguous(), a, rtol=1e-3, atol=1e-3)
    sum(f.mean() for f in got).backward()
    assert xs.grad.abs().sum() > 0


@pytest.mark.parametrize("name", TINY)
def test_unknown_keyword_is_an_error(name):
    with pytest.raises(TypeError, match="stem_stride_z"):
        ENCODERS.build(name, stem_stride_z=1)


def test_unknown_encoder_lists_known_names():
    with pytest.raises(KeyError, match="resnet18"):
        ENCODERS.get("no_such_encoder")


def test_mednext_needs_recent_monai(monkeypatch):
    monkeypatch.delattr(monai.networks.nets, "MedNeXt")
    monkeypatch.setattr(monai, "__version__", "1.3.2")
    with pytest.raises(ImportError, match=r"MedNeXt needs monai>=1\.4 \(installed: 1\.3\.2\)"):
        ENCODERS.build("mednext_tiny")


def _meta_params(name: str) -> int:
    with torch.device("meta"):
        return count_parameters(ENCODERS.build(name))


def test_resnets_count_like_inflated_timm_resnets():
    # MONAI-based 3D ResNets (and our ResNeXt block) against timm's 2D nets inflated: two independent
    # implementations of the same architecture must have the same parameter count.
    assert _meta_params("resnet18") == _meta_params("i3d-resnet18") == 33_160_000
    assert _meta_params("resnet34") == _meta_params("i3d-resnet34")
    assert _meta_params("resnet50") == _meta_params("i3d-resnet50")
    assert _meta_params("resnext50") == _meta_params("i3d-resnext50_32x4d")


def test_densenet121_counts_like_monai_without_classifier():
    with torch.device("meta"):
        full = DenseNet121(spatial_dims=3, in_channels=1, out_channels=1)
    expected = count_parameters(full) - count_parameters(full.class_layers)
    assert _meta_params("densenet121") == expected


@pytest.mark.parametrize(("name", "variant"), [("mednext_s", "S"), ("mednext_b", "B")])
def test_mednext_counts_like_monai_encoder(name, variant):
    with torch.device("meta"):
        full = create_mednext(variant, in_channels=1)
    parts = (full.stem, full.enc_stages, full.down_blocks, full.bottleneck)
    # our 2x2x2 patchify stem has 8 weights per filter where MONAI's 1x1x1 stem has 1
    expected = sum(count_parameters(p) for p in parts) + 7 * 32
    assert _meta_params(name) == expected


def test_x3d_block_counts_by_hand():
    model = ENCODERS.build("x3d_tiny")
    stem = 1 * 8 * 9 + 8 * 5 + 2 * 8  # 1x3x3 conv, depthwise 5x1x1, BN
    inner = 18  # 2.25 * 8
    se = (inner * 8 + 8) + (8 * inner + inner)  # reduced width rounded up to 8
    block = 8 * inner + 2 * inner + inner * 27 + 2 * inner + se + inner * 8 + 2 * 8 + (8 * 8 + 2 * 8)
    assert count_parameters(model.stages[0]) == stem
    assert count_parameters(model.stages[1]) == block
    assert _meta_params("x3d_m") > _meta_params("x3d_s")


@pytest.mark.parametrize("name", ["resnet18", "x3d_s"])
def test_small_production_encoder_forward(name):
    model = _build(name).eval()
    with torch.no_grad():
        features = model(torch.randn(1, 1, 32, 32, 32))
    assert [f.shape[1] for f in features] == model.out_channels
    assert [f.shape[2] for f in features] == [32 // s[0] for s in model.strides]
