"""Edge bands: detection against the generator's record, removal, and no false alarms on band-like content."""

from __future__ import annotations

import numpy as np
import pytest

from byu_motor import synth
from byu_motor.data.bands import SIDES, detect_edge_bands, remove_edge_bands


def _noise_volume(shape=(24, 96, 80), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    smooth = 118 + 0.15 * yy - 0.1 * xx + 4 * np.sin(zz / 5.0)  # content that is not a band
    return np.clip(smooth + rng.normal(0, 18, shape), 0, 255).astype(np.uint8)


def _add_band(volume: np.ndarray, side: str, width: int, level: float, stripes: np.ndarray) -> None:
    """Add a band (``level`` + per-position ``stripes``) along ``side`` in place, like the generator does."""
    v = volume.astype(np.float32)
    offset = (level + stripes).astype(np.float32)
    if side == "y0":
        v[:, :width, :] += offset[None, None, :]
    elif side == "y1":
        v[:, -width:, :] += offset[None, None, :]
    elif side == "x0":
        v[:, :, :width] += offset[None, :, None]
    else:
        v[:, :, -width:] += offset[None, :, None]
    volume[...] = np.clip(np.rint(v), 0, 255).astype(np.uint8)


def test_generator_bands_found_with_their_widths() -> None:
    recorded = 0
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        spec = synth.draw_spec(rng, scale=0.2, split="test")
        objects: list[dict] = []
        vol = synth.generate_tomogram(
            spec.shape,
            spec.spacing_a,
            spec.motors,
            np.random.default_rng(seed),
            cells=spec.cells,
            objects=objects,
        )
        truth = {o["side"]: o["width"] for o in objects if o["kind"] == "edge_band"}
        got = {b.side: b.width for b in detect_edge_bands(vol)}
        assert got == truth, f"seed {seed}: recorded {truth}, detected {got}"
        recorded += len(truth)
    assert recorded >= 3  # the draws hold bands to find (and, at 4 x 4 faces, sides without)
    assert recorded < 16


@pytest.mark.parametrize("side", SIDES)
def test_handmade_band_found_and_removed(side: str) -> None:
    plain = _noise_volume()
    along = plain.shape[2] if side in ("y0", "y1") else plain.shape[1]
    rng = np.random.default_rng(1)
    stripes = np.convolve(rng.normal(0, 8, along), np.ones(3) / 3, mode="same")
    banded = plain.copy()
    _add_band(banded, side, 6, -35.0, stripes)
    before = banded.copy()

    bands = detect_edge_bands(banded)
    assert [(b.side, b.width) for b in bands] == [(side, 6)]
    assert bands[0].step < -20  # a darker band
    mended = remove_edge_bands(banded, bands)
    np.testing.assert_array_equal(banded, before)  # the input is left alone
    assert mended.dtype == np.uint8 and mended.shape == banded.shape

    inside = np.ones(banded.shape, dtype=bool)
    inside[tuple(slice(None) if m is None else m for m in _band_index(side, 6))] = False
    np.testing.assert_array_equal(mended[inside], banded[inside])  # only the band changes
    # the band's offset is gone: mended and band-free volumes agree to within the slice-mean noise
    err_before = np.abs(banded[~inside].astype(float) - plain[~inside]).mean()
    err_after = np.abs(mended[~inside].astype(float).mean() - plain[~inside].astype(float).mean())
    assert err_before > 25 and err_after < 3
    assert detect_edge_bands(mended) == []


def _band_index(side: str, width: int) -> tuple:
    if side == "y0":
        return (None, slice(0, width), None)
    if side == "y1":
        return (None, slice(-width, None), None)
    if side == "x0":
        return (None, None, slice(0, width))
    return (None, None, slice(-width, None))


def test_no_band_on_plain_or_membrane_like_content() -> None:
    vol = _noise_volume()
    assert detect_edge_bands(vol) == []
    assert remove_edge_bands(vol) is vol
    # a dark sheet through all slices, slanted across the rows near a face: steps at a few places per row
    slanted = vol.astype(np.float32)
    for x in range(vol.shape[2]):
        y = 3 + x // 8
        slanted[:, y : y + 2, x] -= 60
    assert detect_edge_bands(np.clip(slanted, 0, 255).astype(np.uint8)) == []
    # a sheet parallel to a face over 30 % of its length is not a band either (the median along the face
    # sees noise); over 60 % it is
    partial = vol.astype(np.float32)
    partial[:, 5:7, : int(0.3 * vol.shape[2])] -= 60
    assert detect_edge_bands(np.clip(partial, 0, 255).astype(np.uint8)) == []
    partial[:, 5:7, : int(0.6 * vol.shape[2])] -= 60
    assert [b.side for b in detect_edge_bands(np.clip(partial, 0, 255).astype(np.uint8))] == ["y0"]


def test_band_wider_than_max_width_is_not_taken() -> None:
    vol = _noise_volume()
    _add_band(vol, "x1", 20, 40.0, np.zeros(vol.shape[1]))  # 25 % of 80 columns
    assert [b.side for b in detect_edge_bands(vol)] == []
    assert [(b.side, b.width) for b in detect_edge_bands(vol, max_width=0.3)] == [("x1", 20)]


def test_float_volume_and_argument_checks() -> None:
    vol = _noise_volume()
    v8 = vol.copy()
    _add_band(v8, "y1", 5, 30.0, np.zeros(v8.shape[2]))
    mended = remove_edge_bands(v8.astype(np.float32))
    assert mended.dtype == np.float32
    assert abs(float(mended[:, -5:, :].mean() - vol[:, -5:, :].mean())) < 3
    with pytest.raises(ValueError, match="Z, Y, X"):
        detect_edge_bands(vol[0])
    with pytest.raises(ValueError, match="min_ratio"):
        detect_edge_bands(vol, min_ratio=1.0)
    with pytest.raises(ValueError, match="max_width"):
        detect_edge_bands(vol, max_width=0.6)
