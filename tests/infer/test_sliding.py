"""Sliding-window geometry, border weights, heatmap resampling and merge equivalences (analytic models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from byu_motor.data.grid import Grid
from byu_motor.data.normalize import Normalizer
from byu_motor.infer.sliding import SlidingWindow, border_ramp, resample_heatmap, window_starts


class PoolModel(nn.Module):
    """Translation-equivariant (for stride-aligned shifts): squares the input then averages s^3 blocks."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = (stride,) * 3
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return F.avg_pool3d(x * x + 0.5 * x, self.stride, self.stride)


class FakeOOMModel(PoolModel):
    """Raises a CUDA out-of-memory error for batches above ``max_batch`` (CPU-testable retry path)."""

    def __init__(self, stride: int, max_batch: int):
        super().__init__(stride)
        self.max_batch = max_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.max_batch:
            self.calls.append(-x.shape[0])
            raise torch.cuda.OutOfMemoryError("fake OOM for the test")
        return super().forward(x)


class ConstModel(nn.Module):
    def __init__(self, stride: int, value: float):
        super().__init__()
        self.stride, self.value = stride, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        b, _, d, h, w = x.shape
        return torch.full((b, 1, d // s, h // s, w // s), self.value)


def random_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def full_forward(model: nn.Module, volume: np.ndarray, stride: int, norm: Normalizer) -> torch.Tensor:
    """Reference: one forward over the whole volume padded (high end) with its normalised mean grey."""
    padded = [-(-n // stride) * stride for n in volume.shape]
    step = max(1, int(round((volume.size / 1e6) ** (1 / 3))))
    pad_value = float(norm(torch.tensor(float(volume[::step, ::step, ::step].mean()))))
    x = torch.full((1, 1, *padded), pad_value)
    z, y, w = volume.shape
    x[0, 0, :z, :y, :w] = norm(torch.from_numpy(volume))
    with torch.no_grad():
        out = model(x)[0, 0]
    return out[: -(-z // stride), : -(-y // stride), : -(-w // stride)]


def test_window_starts_hand_cases():
    assert window_starts(40, 16, 4, 0.25) == [0, 12, 24]
    assert window_starts(44, 16, 4, 0.25) == [0, 12, 24, 28]
    assert window_starts(16, 16, 4, 0.5) == [0]
    assert window_starts(20, 16, 1, 0.5) == [0, 4]
    # overlap 0.9 of a 16-window at stride 8 still steps by one stride
    assert window_starts(32, 16, 8, 0.9) == [0, 8, 16]
    with pytest.raises(ValueError):
        window_starts(42, 16, 4, 0.25)  # not padded to the stride
    with pytest.raises(ValueError):
        window_starts(40, 16, 4, 1.0)


def test_border_ramp_hand_values():
    np.testing.assert_allclose(border_ramp(8, 2, 0.5, False, False), [0.5, 0.75, 1, 1, 1, 1, 0.75, 0.5])
    np.testing.assert_allclose(border_ramp(8, 2, 0.5, True, False), [1, 1, 1, 1, 1, 1, 0.75, 0.5])
    np.testing.assert_allclose(border_ramp(8, 2, 0.5, False, True), [0.5, 0.75, 1, 1, 1, 1, 1, 1])
    np.testing.assert_allclose(border_ramp(4, 4, 0.2, False, False), [0.2, 0.6, 0.6, 0.2])
    with pytest.raises(ValueError):
        border_ramp(4, 1, 0.0, False, False)


def test_resample_heatmap_identity_and_linear_field():
    src = Grid((40, 30, 20), 7.0).strided(4)  # (10, 8, 5) cells of 28 A
    dst = Grid((40, 30, 20), 7.0).strided(2)  # (20, 15, 10) cells of 14 A
    lg = torch.randn(src.shape)
    assert torch.equal(resample_heatmap(lg, src, src), lg)
    # a field linear in physical position is reproduced exactly between the first and last source centres
    phys_src = [(np.arange(n) + 0.5) * sp for n, sp in zip(src.shape, src.spacing_a)]
    zz, yy, xx = np.meshgrid(*phys_src, indexing="ij")
    field = torch.tensor(0.01 * zz - 0.02 * yy + 0.03 * xx + 1.0, dtype=torch.float32)
    out = resample_heatmap(field, src, dst)
    assert tuple(out.shape) == dst.shape
    # beyond the first/last source centres the edge value is held: evaluate at clamped positions
    phys_dst = [
        np.clip((np.arange(n) + 0.5) * sp, ps[0], ps[-1])
        for n, sp, ps in zip(dst.shape, dst.spacing_a, phys_src)
    ]
    dz, dy, dx = np.meshgrid(*phys_dst, indexing="ij")
    expect = 0.01 * dz - 0.02 * dy + 0.03 * dx + 1.0
    np.testing.assert_allclose(out.numpy(), expect, atol=1e-4)
    assert float(expect[0, 0, 0]) != pytest.approx(float(out[1, 1, 1]))  # the field really varies
    with pytest.raises(ValueError):
        resample_heatmap(torch.zeros(3, 3, 3), src, dst)


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("shape", [(32, 40, 24), (29, 37, 23)])
@pytest.mark.parametrize("merge,border_weight", [("mean", 1.0), ("mean", 0.3), ("max", 0.5)])
def test_sliding_equals_full_forward(stride, shape, merge, border_weight):
    vol = random_volume(shape, seed=stride)
    norm = Normalizer()
    model = PoolModel(stride)
    sw = SlidingWindow(
        patch_size=(16, 16, 12), overlap=0.5, batch_windows=3, border_weight=border_weight, merge=merge
    )
    out = sw(model, vol, (stride,) * 3, norm)
    ref = full_forward(model, vol, stride, norm)
    assert tuple(out.shape) == tuple(-(-n // stride) for n in shape)
    assert len(model.calls) > 3  # really several windows
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_constant_model_weighted_mean_is_constant():
    sw = SlidingWindow(patch_size=(16, 16, 16), overlap=0.4, border_weight=0.2)
    out = sw(ConstModel(4, -1.7), random_volume((40, 50, 36)), (4, 4, 4), Normalizer())
    assert tuple(out.shape) == (10, 13, 9)
    torch.testing.assert_close(out, torch.full_like(out, -1.7))


def test_border_weights_prefer_window_centres():
    """Two windows disagree on the overlap; the weighted mean leans to the window whose centre is nearer."""

    class WindowIdModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.n = 0

        def forward(self, x):
            vals = []
            for _ in range(x.shape[0]):
                vals.append(float(self.n))
                self.n += 1
            return (
                torch.tensor(vals).reshape(-1, 1, 1, 1, 1).expand(-1, 1, x.shape[2], x.shape[3], x.shape[4])
            )

    sw = SlidingWindow(patch_size=(4, 1, 8), overlap=0.5, batch_windows=1, border_weight=0.5)
    out = sw(WindowIdModel(), random_volume((4, 1, 12)), (1, 1, 1), Normalizer())
    # windows: x in [0, 8) -> 0, [4, 12) -> 1; ramp over 4 cells: weights 0.5, 0.625, 0.75, 0.875
    row = out[0, 0].numpy()
    np.testing.assert_allclose(row[:4], 0.0)
    np.testing.assert_allclose(row[8:], 1.0)
    w_left = np.array([0.875, 0.75, 0.625, 0.5])  # falling towards x=7, the left window's right border
    w_right = np.array([0.5, 0.625, 0.75, 0.875])
    np.testing.assert_allclose(row[4:8], w_right / (w_left + w_right), rtol=1e-6)


def test_oom_halves_batch_and_keeps_result():
    vol = random_volume((24, 40, 40), seed=3)
    ref = SlidingWindow(patch_size=(16, 16, 16), overlap=0.5, batch_windows=8)(
        PoolModel(2), vol, 2, Normalizer()
    )
    model = FakeOOMModel(2, max_batch=2)
    sw = SlidingWindow(patch_size=(16, 16, 16), overlap=0.5, batch_windows=8)
    out = sw(model, vol, 2, Normalizer())
    assert sw.oom_retries == 2
    assert model.calls[:3] == [-8, -4, 2]
    assert max(model.calls) == 2
    torch.testing.assert_close(out, ref)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        SlidingWindow(patch_size=(16, 16, 16), batch_windows=2)(
            FakeOOMModel(2, max_batch=0), vol, 2, Normalizer()
        )


def test_small_volume_is_padded_to_the_patch():
    vol = random_volume((5, 7, 6), seed=4)
    model = PoolModel(2)
    out = SlidingWindow(patch_size=(16, 16, 16))(model, vol, 2, Normalizer())
    assert tuple(out.shape) == (3, 4, 3)
    assert model.calls == [1]
    torch.testing.assert_close(out, full_forward(model, vol, 2, Normalizer()))


def test_wrong_output_shape_is_reported():
    with pytest.raises(ValueError, match="does not match"):
        SlidingWindow(patch_size=(8, 8, 8))(ConstModel(2, 0.0), random_volume((8, 8, 8)), 4, Normalizer())
