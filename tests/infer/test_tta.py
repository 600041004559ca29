"""TTA views: exact inverses, alignment with odd volume sizes, and the analytic ball under every view."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.config import InferConfig
from byu_motor.data.normalize import Normalizer
from byu_motor.infer import ModelSpec, Predictor
from byu_motor.infer.sliding import SlidingWindow
from byu_motor.infer.tta import get_views, list_views
from tests.infer.test_predictor import CENTRE, RADIUS_A, SHAPE, SPACING_A, BallModel, ball_volume, top_error

ALL = ("flip_z", "flip_y", "flip_x", "rot90", "rot180", "rot270")


def test_registry_lists_views_and_rejects_unknown():
    assert set(ALL) <= set(list_views())
    assert [v.name for v in get_views(("flip_x", "identity", "flip_x"))] == ["identity", "flip_x"]
    with pytest.raises(KeyError, match="flip_w"):
        get_views(("flip_w",))


@pytest.mark.parametrize("name", ALL)
def test_inverse_undoes_forward(name):
    (view,) = [v for v in get_views((name,)) if v.name == name]
    x = torch.randn(2, 1, 5, 7, 9)
    y = view.forward(x)
    assert not torch.equal(y, x)
    torch.testing.assert_close(view.inverse(y), x, rtol=0, atol=0)


class RampModel(nn.Module):
    """Not flip-equivariant: average pooling plus a position ramp along one axis of the window."""

    def __init__(self, stride: int, axis: int):
        super().__init__()
        self.stride, self.axis = stride, axis

    def forward(self, x):
        out = F.avg_pool3d(x, self.stride, self.stride)
        n = out.shape[2 + self.axis]
        shape = [1, 1, 1, 1, 1]
        shape[2 + self.axis] = n
        return out + torch.arange(n, dtype=torch.float32).reshape(shape)


@pytest.mark.parametrize("name,axis", [("flip_z", 0), ("flip_y", 1), ("flip_x", 2), ("rot180", 1)])
def test_flip_inverse_is_applied_to_logits(name, axis):
    """mean(identity, inverse(model(flip x))) = avg_pool(x) + (n - 1) / 2 when the ramp is flipped back."""
    vol = np.random.default_rng(0).integers(0, 256, (16, 20, 12), dtype=np.uint8)
    sw = SlidingWindow(patch_size=None, views=(name,))
    out = sw(RampModel(4, axis), vol, 4, Normalizer())
    x = Normalizer()(torch.from_numpy(vol))[None, None]
    n = out.shape[axis]
    torch.testing.assert_close(out, F.avg_pool3d(x, 4, 4)[0, 0] + (n - 1) / 2)


@pytest.fixture(scope="module")
def ball_case():
    vol = ball_volume(SHAPE, CENTRE, RADIUS_A / SPACING_A)
    m = ModelSpec(BallModel(2), 2, 20.0, patch_size=(24, 32, 24))
    base, grid = Predictor([m], InferConfig()).predict_heatmap(vol, SPACING_A)
    return vol, m, base, grid


@pytest.mark.parametrize("views", [(v,) for v in ALL] + [ALL])
def test_each_view_on_odd_volume_keeps_heatmap_and_finds_ball(ball_case, views):
    """Odd sizes are padded to the stride before any view, so cells stay aligned: with a model symmetric
    under the view the heatmap must not change, and the ball is found within one voxel."""
    vol, m, base, grid = ball_case
    pred = Predictor([m], InferConfig(tta=views))
    heat, grid2 = pred.predict_heatmap(vol, SPACING_A)
    assert grid == grid2
    np.testing.assert_allclose(heat, base, atol=1e-5)
    assert top_error(pred.predict_volume(vol, SPACING_A)) < 1.0


def test_rotations_need_equal_in_plane_strides():
    with pytest.raises(ValueError, match="strides"):
        SlidingWindow(views=("rot90",))(
            RampModel(1, 0), np.zeros((4, 4, 4), np.uint8), (1, 1, 2), Normalizer()
        )


def test_composed_views_apply_in_order_and_invert_exactly():
    (view,) = get_views(("rot90+flip_z",), add_identity=False)
    assert view.name == "rot90+flip_z" and view.swaps_yx
    x = torch.randn(2, 1, 5, 7, 7)
    expected = torch.flip(torch.rot90(x, 1, dims=(3, 4)), dims=(2,))
    torch.testing.assert_close(view.forward(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(view.inverse(view.forward(x)), x, rtol=0, atol=0)
    assert not get_views(("rot90+rot90",), add_identity=False)[0].swaps_yx
    with pytest.raises(KeyError, match="flip_w"):
        get_views(("rot90+flip_w",))


def test_identity_is_added_unless_asked_not_to():
    assert [v.name for v in get_views(("flip_z", "rot90+flip_z"))] == ["identity", "flip_z", "rot90+flip_z"]
    names = [v.name for v in get_views(("flip_z", "rot90+flip_z"), add_identity=False)]
    assert names == ["flip_z", "rot90+flip_z"]
    assert [v.name for v in get_views((), add_identity=False)] == ["identity"]
