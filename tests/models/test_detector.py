"""Tests for necks, heads, the Detector and create_model: every tiny encoder x every neck, shapes, strides."""

from __future__ import annotations

import functools
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.config import ModelConfig
from byu_motor.models import ENCODERS, NECKS, Detector, create_model
from byu_motor.models.necks import match_stride

TEST_ENCODER = "_test_encoder"


class _TestEncoder(nn.Module):
    """A few strided convs: levels at stem_stride * 2**i (per axis), tiny channels."""

    def __init__(
        self,
        in_channels: int = 1,
        stem_stride: int | tuple[int, int, int] = 2,
        grad_checkpointing: bool = False,
        pretrained_file: str | None = None,
        levels: int = 5,
        width: int = 4,
    ):
        super().__init__()
        if pretrained_file is not None and not os.path.exists(pretrained_file):
            raise FileNotFoundError(pretrained_file)
        stem = (stem_stride,) * 3 if isinstance(stem_stride, int) else tuple(stem_stride)
        self.stages = nn.ModuleList()
        self.out_channels, self.strides = [], []
        c_in, stride = in_channels, stem
        for i in range(levels):
            step = stem if i == 0 else (2, 2, 2)
            c_out = width * 2**i
            self.stages.append(
                nn.Sequential(
                    nn.Conv3d(c_in, c_out, 3, stride=step, padding=1), nn.BatchNorm3d(c_out), nn.ReLU()
                )
            )
            if i > 0:
                stride = tuple(s * 2 for s in stride)
            self.out_channels.append(c_out)
            self.strides.append(stride)
            c_in = c_out
        self.grad_checkpointing = grad_checkpointing

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


@pytest.fixture(scope="module", autouse=True)
def test_encoder_registered():
    """Register the test encoder for the module's tests, then remove it (Registry has no unregister)."""
    ENCODERS._items[TEST_ENCODER] = _TestEncoder
    ENCODERS._meta[TEST_ENCODER] = {"tiny": True}
    yield TEST_ENCODER
    ENCODERS._items.pop(TEST_ENCODER, None)
    ENCODERS._meta.pop(TEST_ENCODER, None)


TINY_ENCODERS = [n for n in ENCODERS.names() if ENCODERS.meta(n).get("tiny")] + [TEST_ENCODER]
ALL_NECKS = NECKS.names()
ODD_SHAPE = (33, 47, 29)
SMALL_ODD_SHAPE = (17, 29, 37)  # padded to 32x32x64: cheap, and the deepest map keeps 2 voxels


def _ceil_shape(shape, stride):
    return tuple(math.ceil(n / s) for n, s in zip(shape, stride))


@functools.cache
def _encoder_strides(name: str) -> list[tuple[int, int, int]]:
    with torch.device("meta"):  # no weights initialised: only the strides are wanted
        return [tuple(s) for s in ENCODERS.build(name, in_channels=1).strides]


def _stride_possible(strides, target) -> bool:
    """Hand rule of the brief: a level with exactly that stride, or a finer stride dividing the shallowest."""
    strides = [tuple(s) for s in strides]
    return tuple(target) in strides or all(s % t == 0 for s, t in zip(strides[0], target))


@pytest.mark.parametrize("neck", ALL_NECKS)
@pytest.mark.parametrize("encoder", TINY_ENCODERS)
def test_every_tiny_encoder_with_every_neck(encoder: str, neck: str):
    torch.manual_seed(0)
    enc_strides = _encoder_strides(encoder)
    x = torch.randn(1, 1, *SMALL_ODD_SHAPE)
    built = []
    for s in (4, 8, 16):
        cfg = ModelConfig(encoder=encoder, neck=neck, stride=(s, s, s), neck_channels=8)
        if not _stride_possible(enc_strides, (s, s, s)):
            with pytest.raises(ValueError, match=encoder) as err:
                create_model(cfg)
            assert "strides" in str(err.value) and str(tuple(enc_strides[0])) in str(err.value)
            continue
        model = create_model(cfg).eval()
        assert model.stride == (s, s, s)
        with torch.no_grad():
            out = model(x)
        assert isinstance(out, torch.Tensor)
        assert out.shape == (1, 1, *_ceil_shape(SMALL_ODD_SHAPE, (s, s, s)))
        assert torch.isfinite(out).all()
        built.append(model)
    assert built, f"encoder {encoder} gives none of the strides 4, 8, 16 ({enc_strides})"

    # Training step: every parameter must get a gradient (DDP refuses unused parameters).
    model = built[-1].train()
    model(torch.randn(1, 1, 32, 32, 64)).float().mean().backward()  # deepest map 1x1x2: BatchNorm is happy
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


def test_match_stride_rules():
    strides = [(2, 2, 2), (4, 4, 4), (8, 8, 8), (16, 16, 16)]
    assert match_stride(strides, (8, 8, 8)) == (2, (1, 1, 1))
    assert match_stride(strides, (1, 1, 1)) == (0, (2, 2, 2))
    aniso = [(1, 2, 2), (2, 4, 4), (4, 8, 8)]
    assert match_stride(aniso, (2, 4, 4)) == (1, (1, 1, 1))
    assert match_stride(aniso, (1, 1, 1)) == (0, (1, 2, 2))
    for bad in [(3, 3, 3), (32, 32, 32), (4, 4, 4)]:
        with pytest.raises(ValueError, match="my_encoder"):
            match_stride(aniso if bad == (4, 4, 4) else strides, bad, "my_encoder")


def test_unavailable_stride_names_encoder_and_strides():
    cfg = ModelConfig(encoder=TEST_ENCODER, neck="fpn", stride=(6, 6, 6), neck_channels=8)
    with pytest.raises(ValueError) as err:
        create_model(cfg)
    msg = str(err.value)
    assert TEST_ENCODER in msg and "(2, 2, 2)" in msg and "(32, 32, 32)" in msg


@pytest.mark.parametrize("neck", ALL_NECKS)
@pytest.mark.parametrize("stride", [2, 4])
def test_upsampling_below_the_shallowest_level(neck: str, stride: int):
    # Stem stride 8: strides 2 and 4 need upsampling inside the neck.
    cfg = ModelConfig(
        encoder=TEST_ENCODER,
        neck=neck,
        stride=(stride,) * 3,
        neck_channels=8,
        encoder_kwargs={"stem_stride": 8, "levels": 2},
    )
    model = create_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, *ODD_SHAPE))
    assert out.shape == (1, 1, *_ceil_shape(ODD_SHAPE, (stride,) * 3))


def test_anisotropic_stride():
    cfg = ModelConfig(
        encoder=TEST_ENCODER,
        neck="unet",
        stride=(4, 8, 8),
        neck_channels=8,
        encoder_kwargs={"stem_stride": (1, 2, 2), "levels": 4},
    )
    model = create_model(cfg).eval()
    assert model.stride == (4, 8, 8) and model.pad_multiple == (8, 16, 16)
    with torch.no_grad():
        out = model(torch.randn(1, 1, *ODD_SHAPE))
    assert out.shape == (1, 1, 9, 6, 4)  # ceil(33/4), ceil(47/8), ceil(29/8)


class _PoolEncoder(nn.Module):
    """Average pools: level i is the mean over each s_i cube, so every output cell is known exactly."""

    out_channels = [1, 1]
    strides = [(4, 4, 4), (8, 8, 8)]

    def forward(self, x):
        return [F.avg_pool3d(x, 4), F.avg_pool3d(x, 8)]


class _PickLevel(nn.Module):
    strides = [(4, 4, 4)]
    out_channels = [1]

    def forward(self, feats):
        return [feats[0]]


class _Identity(nn.Module):
    def forward(self, feats):
        return feats[0]


def test_cell_k_covers_input_voxels_k_s_to_k_plus_1_s():
    """With zero padding at the far end, cell k of the stride-4 map is sum(x[4k:4k+4]) / 64."""
    torch.manual_seed(0)
    model = Detector(_PoolEncoder(), _PickLevel(), _Identity(), pad_mode="constant")
    assert model.pad_multiple == (8, 8, 8)
    x = torch.rand(1, 1, *ODD_SHAPE, dtype=torch.float64)
    out = model(x)
    assert out.shape == (1, 1, 9, 12, 8)
    for k in [(0, 0, 0), (8, 11, 7), (3, 5, 2)]:
        z, y, xx = (4 * v for v in k)
        expected = x[0, 0, z : z + 4, y : y + 4, xx : xx + 4].sum() / 64  # voxels past the end are zeros
        assert torch.isclose(out[0, 0, k[0], k[1], k[2]], expected)


def test_replicate_padding_repeats_the_last_voxel():
    model = Detector(_PoolEncoder(), _PickLevel(), _Identity(), pad_mode="replicate")
    x = torch.rand(1, 1, 5, 8, 8, dtype=torch.float64)  # z padded from 5 to 8
    out = model(x)
    assert out.shape == (1, 1, 2, 2, 2)
    block = torch.cat([x[0, 0, 4:5, :4, :4]] * 4)  # slices 4..7 all equal slice 4
    assert torch.isclose(out[0, 0, 1, 0, 0], block.mean())


@pytest.mark.parametrize("neck", ALL_NECKS)
def test_deep_supervision_train_list_eval_tensor(neck: str):
    cfg = ModelConfig(
        encoder=TEST_ENCODER, neck=neck, stride=(4, 4, 4), neck_channels=8, deep_supervision=True
    )
    model = create_model(cfg)
    x = torch.randn(2, 1, *ODD_SHAPE)
    outs = model.train()(x)
    assert isinstance(outs, list) and len(outs) >= 2
    assert outs[0].shape == (2, 1, *_ceil_shape(ODD_SHAPE, (4, 4, 4)))
    for t, s in zip(outs[1:], model.output_strides[1:]):
        assert s[0] > 4
        assert t.shape == (2, 1, *_ceil_shape(ODD_SHAPE, s))
    sum(t.mean() for t in outs).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    with torch.no_grad():
        out = model.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == outs[0].shape


def test_head_bias_encodes_the_prior():
    model = create_model(ModelConfig(encoder=TEST_ENCODER, neck="fpn", stride=(8, 8, 8), neck_channels=8))
    assert model.head.out.bias.item() == pytest.approx(math.log(0.01 / 0.99))
    model = create_model(
        ModelConfig(
            encoder=TEST_ENCODER, neck="fpn", stride=(8, 8, 8), neck_channels=8, head_kwargs={"prior": 0.5}
        )
    )
    assert model.head.out.bias.item() == pytest.approx(0.0)


@pytest.mark.parametrize("neck", ALL_NECKS)
def test_channels_last_3d_matches_contiguous(neck: str):
    torch.manual_seed(0)
    model = create_model(
        ModelConfig(encoder=TEST_ENCODER, neck=neck, stride=(4, 4, 4), neck_channels=8)
    ).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last_3d)
        out = model(x.to(memory_format=torch.channels_last_3d))
    assert torch.allclose(ref, out, atol=1e-5)


@pytest.mark.parametrize("neck", ["unet", "fpn_factorized"])
def test_grad_checkpointing_gives_same_gradients(neck: str):
    torch.manual_seed(0)
    cfg = ModelConfig(
        encoder=TEST_ENCODER, neck=neck, stride=(2, 2, 2), neck_channels=4, deep_supervision=True
    )
    plain = create_model(cfg)
    cfg.grad_checkpointing = True
    ckpt = create_model(cfg)
    ckpt.load_state_dict(plain.state_dict())
    assert ckpt.neck.grad_checkpointing
    x = torch.randn(1, 1, 32, 32, 64)
    for m in (plain, ckpt):
        sum(t.pow(2).mean() for t in m.train()(x)).backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_unknown_names_are_listed():
    with pytest.raises(ValueError, match="unknown encoder 'nope'.*" + TEST_ENCODER):
        create_model(ModelConfig(encoder="nope"))
    with pytest.raises(ValueError, match="unknown neck 'nope'.*fpn"):
        create_model(ModelConfig(encoder=TEST_ENCODER, neck="nope"))
