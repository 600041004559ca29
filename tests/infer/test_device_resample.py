"""Resampling on the model's device gives the host path's voxels and the same candidate coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from byu_motor.config import INFER_RUN_FIELDS, InferConfig
from byu_motor.data.grid import resample_tensor, resample_volume
from byu_motor.data.normalize import Normalizer
from byu_motor.infer import Predictor
from byu_motor.infer.device_volume import VolumeStager
from byu_motor.infer.sliding import SlidingWindow
from tests.infer.test_predictor import CENTRE, SPACING_A, ball_volume, spec, top_error


@pytest.mark.parametrize("mode", ["trilinear", "area", "nearest"])
@pytest.mark.parametrize("out_shape", [(20, 31, 17), (45, 80, 60), (45, 67, 53)])
def test_resample_tensor_matches_the_host_resampler(mode, out_shape):
    vol = np.random.default_rng(0).integers(0, 256, (45, 67, 53), dtype=np.uint8)
    host = resample_volume(vol, out_shape, mode=mode)
    dev = resample_tensor(torch.from_numpy(vol), out_shape, mode=mode, chunk_slices=7).numpy()
    assert dev.shape == out_shape and dev.dtype == np.uint8
    assert int(np.abs(dev.astype(int) - host.astype(int)).max()) <= 1


def test_resample_tensor_rejects_a_float_volume():
    with pytest.raises(ValueError, match="uint8"):
        resample_tensor(torch.zeros(4, 4, 4), (2, 2, 2))


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("scales", [(1.0,), (0.9, 1.1)])
def test_device_path_finds_the_ball_where_the_host_path_does(stride, scales):
    ball = ball_volume((45, 67, 53), CENTRE, 80.0 / SPACING_A)
    found = {}
    for on_device in (False, True):
        cfg = InferConfig(topk=3, scales=scales, tta=("flip_x", "rot90"), resample_on_device=on_device)
        predictor = Predictor([spec(stride)], cfg)
        predictor._stager.tensor_on_cpu = True  # the GPU's path: tensor resampler, windows cut from tensors
        calls: list[int] = []
        predictor._stager.uploaded = lambda v, up=predictor._stager.uploaded, c=calls: c.append(1) or up(v)
        found[on_device] = predictor.predict_volume(ball, SPACING_A)
        assert bool(calls) == on_device
    assert top_error(found[True]) < 1.0 and top_error(found[False]) < 1.0
    gap = np.abs(np.asarray(found[True][0][:3]) - np.asarray(found[False][0][:3]))
    assert float(gap.max()) < 1.0  # within one original voxel of the host path
    assert found[True][0][3] == pytest.approx(found[False][0][3], abs=0.02)


def test_views_in_one_pass_give_the_views_one_by_one():
    ball = ball_volume((45, 67, 53), CENTRE, 80.0 / SPACING_A)
    model, norm = spec(2).module.eval(), Normalizer()
    kw = dict(patch_size=(24, 32, 24), views=("flip_z", "rot90", "rot180", "rot270+flip_x"))
    together = SlidingWindow(batch_views=True, **kw)
    assert [len(g) for g in together._view_batches((2, 1, 24, 32, 24))] == [3, 2]  # rotations swap y and x
    apart = SlidingWindow(batch_views=False, **kw)
    torch.testing.assert_close(
        together(model, ball, 2, norm), apart(model, ball, 2, norm), rtol=1e-5, atol=1e-5
    )


def test_windows_cut_from_a_device_tensor_equal_those_cut_from_the_host_array():
    vol = np.random.default_rng(2).integers(0, 256, (30, 41, 37), dtype=np.uint8)
    model, norm = spec(2).module.eval(), Normalizer(mode="tomogram")
    sw = SlidingWindow(patch_size=(16, 16, 16), views=("flip_x",))
    torch.testing.assert_close(sw(model, torch.from_numpy(vol), 2, norm), sw(model, vol, 2, norm))
    with pytest.raises(ValueError, match="uint8"):
        sw(model, torch.zeros(8, 8, 8), 2, norm)


def test_stager_uploads_once_per_tomogram_and_uses_the_host_for_denoising():
    vol = np.random.default_rng(1).integers(0, 256, (12, 16, 14), dtype=np.uint8)
    stager = VolumeStager("cpu", on_device=True)
    a = stager.resampled(vol, (6, 8, 7), "trilinear", None)
    b = stager.resampled(vol, (12, 16, 14), "trilinear", None)
    assert isinstance(a, np.ndarray) and b is vol  # on a CPU the host array is the device's
    assert stager.uploaded(vol) is stager.uploaded(vol)  # one copy per tomogram, not one per call
    assert isinstance(stager.resampled(vol, (6, 8, 7), "trilinear", "median"), np.ndarray)
    stager.release()
    assert isinstance(
        VolumeStager("cpu", on_device=False).resampled(vol, (6, 8, 7), "area", None), np.ndarray
    )


def test_the_new_settings_are_run_fields():
    assert {"resample_on_device", "batch_views"} <= set(INFER_RUN_FIELDS)


def test_stager_resamples_once_per_shape_on_a_device(monkeypatch):
    """Members at one spacing share the device resampling (simulated device: the CPU taken for another)."""
    import byu_motor.infer.device_volume as dv

    calls = []
    monkeypatch.setattr(dv, "resample_tensor", lambda v, shape, **k: calls.append(shape) or v[: shape[0]])
    vol = np.random.default_rng(3).integers(0, 256, (12, 16, 14), dtype=np.uint8)
    stager = VolumeStager("cpu", on_device=True)
    stager.device = torch.device("meta")  # any non-CPU device takes the upload path
    monkeypatch.setattr(stager, "uploaded", lambda v: torch.from_numpy(v))
    a = stager.resampled(vol, (6, 16, 14), "trilinear", None)
    b = stager.resampled(vol, (6, 16, 14), "trilinear", None)
    stager.resampled(vol, (6, 16, 14), "area", None)
    assert a is b and calls == [(6, 16, 14), (6, 16, 14)]
    stager.release()
    stager.resampled(vol, (6, 16, 14), "trilinear", None)
    assert len(calls) == 3


@pytest.mark.parametrize("on_device", [False, True])
def test_the_seed_truncating_cast(on_device: bool) -> None:
    """``infer.resample_cast=floor`` truncates as the seed's ``.to(torch.uint8)`` of the float resampling:
    never above the rounded voxels, at most one level below, half a level darker on average."""
    vol = np.random.default_rng(3).integers(0, 256, (45, 67, 53), dtype=np.uint8)
    shape = (37, 55, 43)  # 13.1 -> 16 A
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(vol).float()[None, None], size=shape, mode="trilinear"
    )
    seed = ref[0, 0].to(torch.uint8).numpy().astype(int)  # the seed's cast: truncation
    stager = VolumeStager("cpu", on_device, cast="floor")
    if on_device:
        floor = resample_tensor(torch.from_numpy(vol), shape, cast="floor").numpy().astype(int)
    else:
        floor = np.asarray(stager.resampled(vol, shape, "trilinear", None)).astype(int)
    rounded = resample_volume(vol, shape).astype(int)
    assert np.all(floor <= rounded) and np.all(rounded - floor <= 1)
    assert 0.45 < float((rounded - floor).mean()) < 0.55
    assert float((floor == seed).mean()) > 0.999  # equal but where float rounding straddles an integer
    with pytest.raises(ValueError, match="cast"):
        resample_volume(vol, shape, cast="ceil")
    with pytest.raises(ValueError, match="resample_cast"):
        Predictor([spec(2)], InferConfig(resample_cast="trunc"))
