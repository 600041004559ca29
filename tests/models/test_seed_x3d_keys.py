"""SlowFast's X3D-M checkpoint layout (``x3d_m.pyth``) loads into ``x3d_m_seed``: every tensor used, none left."""

from __future__ import annotations

import pytest
import torch

from byu_motor.models.encoders.seed import slowfast_x3d_key, x3d_m_seed

BN = ("weight", "bias", "running_mean", "running_var")


def _w(*shape: int) -> torch.Tensor:
    return torch.randn(*shape) * 0.05  # small enough that 26 random blocks stay finite


def _bn(prefix: str, c: int) -> dict[str, torch.Tensor]:
    out = {f"{prefix}.{k}": torch.rand(c) + 0.5 for k in BN}
    out[f"{prefix}.num_batches_tracked"] = torch.tensor(7)
    return out


def _slowfast_x3d_m() -> dict[str, torch.Tensor]:
    """The SlowFast X3D-M state dict, written out from its definition (dims 24-48-96-192, depths 3-5-11-7,
    bottleneck 2.25, SE 1/16 on every other block, 1x3x3 + depthwise 5x1x1 stem) with random values."""
    sd = {
        "s1.pathway0_stem.conv_xy.weight": _w(24, 3, 1, 3, 3),
        "s1.pathway0_stem.conv.weight": _w(24, 1, 5, 1, 1),
        **_bn("s1.pathway0_stem.bn", 24),
    }
    c_in = 24
    se_width = {54: 8, 108: 8, 216: 16, 432: 32}  # SlowFast's round_width(inner / 16)
    for stage, (dim, depth) in enumerate(zip((24, 48, 96, 192), (3, 5, 11, 7)), start=2):
        inner = int(2.25 * dim)
        for j in range(depth):
            p = f"s{stage}.pathway0_res{j}"
            if j == 0:
                sd[f"{p}.branch1.weight"] = _w(dim, c_in, 1, 1, 1)
                sd |= _bn(f"{p}.branch1_bn", dim)
            sd[f"{p}.branch2.a.weight"] = _w(inner, c_in if j == 0 else dim, 1, 1, 1)
            sd |= _bn(f"{p}.branch2.a_bn", inner)
            sd[f"{p}.branch2.b.weight"] = _w(inner, 1, 3, 3, 3)
            sd |= _bn(f"{p}.branch2.b_bn", inner)
            if j % 2 == 0:
                w = se_width[inner]
                sd[f"{p}.branch2.se.fc1.weight"] = _w(w, inner, 1, 1, 1)
                sd[f"{p}.branch2.se.fc1.bias"] = _w(w)
                sd[f"{p}.branch2.se.fc2.weight"] = _w(inner, w, 1, 1, 1)
                sd[f"{p}.branch2.se.fc2.bias"] = _w(inner)
            sd[f"{p}.branch2.c.weight"] = _w(dim, inner, 1, 1, 1)
            sd |= _bn(f"{p}.branch2.c_bn", dim)
        c_in = dim
    sd["head.conv_5.weight"] = _w(432, 192, 1, 1, 1)
    sd["head.lin_5.weight"] = _w(2048, 432, 1, 1, 1)
    sd["head.projection.weight"] = _w(400, 2048)
    sd["head.projection.bias"] = _w(400)
    return sd


def test_slowfast_layout_loads_with_every_tensor_used_and_none_left_over(tmp_path):
    torch.manual_seed(0)
    sd = _slowfast_x3d_m()
    path = tmp_path / "x3d_m.pyth"
    torch.save({"epoch": 300, "model_state": sd, "cfg": "MODEL: x3d"}, path)
    enc = x3d_m_seed(pretrained_file=str(path))
    ours = enc.state_dict()
    used = {slowfast_x3d_key(k): k for k in sd if not k.startswith("head.")}
    assert set(used) == {k for k in ours if not k.startswith("stages.0.0.")}  # all but the input adapter
    for name, key in used.items():
        assert torch.equal(ours[name], sd[key]), key
    assert torch.equal(ours["stages.0.0.mean"].flatten(), torch.full((3,), 0.45))  # 114.75 / 255
    assert enc.out_channels == [24, 24, 48, 96, 192]
    with torch.no_grad():
        feats = enc.eval()(torch.rand(1, 1, 32, 32, 32))
    assert [f.shape[2] for f in feats] == [16, 8, 4, 2, 1] and all(torch.isfinite(f).all() for f in feats)


def test_slowfast_layout_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "x3d_m.pyth"
    sd = _slowfast_x3d_m()
    sd["s3.pathway0_res1.branch2.b.weight"] = _w(108, 1, 3, 3, 1)
    torch.save({"model_state": sd}, path)
    with pytest.raises(ValueError, match=r"x3d_m\.pyth.*'s3\.pathway0_res1\.branch2\.b\.weight'.*shape"):
        x3d_m_seed(pretrained_file=str(path))
    sd = _slowfast_x3d_m()
    sd["s5.pathway0_res7.branch2.a.weight"] = _w(432, 192, 1, 1, 1)  # stage 5 has 7 blocks
    torch.save({"model_state": sd}, path)
    with pytest.raises(ValueError, match=r"x3d_m\.pyth.*'s5\.pathway0_res7\.branch2\.a\.weight'"):
        x3d_m_seed(pretrained_file=str(path))
    sd = _slowfast_x3d_m()
    del sd["s2.pathway0_res0.branch2.se.fc1.bias"]
    torch.save({"model_state": sd}, path)
    with pytest.raises(ValueError, match=r"x3d_m\.pyth.*stages\.1\.0\.se\.fc1\.bias.*not in the file"):
        x3d_m_seed(pretrained_file=str(path))
