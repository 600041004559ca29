"""Tests for byu_motor.data.cache: decoded once, resampled, motors mapped, stale entries rebuilt, atomic."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from byu_motor.config import DataConfig
from byu_motor.data.cache import VolumeCache
from byu_motor.data.grid import Grid, resample_volume
from byu_motor.data.io import read_tomogram, write_tomogram
from byu_motor.data.layout import TomoRecord


class CountingReader:
    """read_tomogram that counts its calls (how often the cache decodes)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, folder):
        self.calls += 1
        return read_tomogram(folder)


@pytest.fixture
def tomo(tmp_path):
    rng = np.random.default_rng(0)
    vol = np.clip(rng.normal(120, 30, (12, 20, 24)), 0, 255).astype(np.uint8)
    folder = tmp_path / "train" / "tomo_x"
    write_tomogram(vol, folder)
    record = TomoRecord("tomo_x", vol.shape, 10.0, np.array([[6.0, 9.0, 11.0]]), 1)
    return folder, record


def test_get_resamples_and_maps_motors(tmp_path, tomo):
    folder, record = tomo
    cfg = DataConfig(spacing_a=(20.0, 20.0, 20.0), norm="tomogram")
    cache = VolumeCache(tmp_path / "cache", cfg)
    cv = cache.get(folder, record)
    assert isinstance(cv.volume, np.memmap) and cv.volume.dtype == np.uint8
    assert cv.volume.shape == (6, 10, 12) == cv.grid.shape
    expected = resample_volume(read_tomogram(folder), (6, 10, 12), mode="trilinear")
    np.testing.assert_array_equal(np.asarray(cv.volume), expected)
    # voxel centre 6 at 10 A is at 65 A; on the 20 A grid that is voxel 2.75 (= (6 + 0.5) / 2 - 0.5)
    np.testing.assert_allclose(cv.motors, [[2.75, 4.25, 5.25]])
    assert cv.src_grid == Grid((12, 20, 24), 10.0)
    assert cv.normalizer.mode == "tomogram"
    assert cv.normalizer.mean == pytest.approx(expected.mean() / 255.0, abs=0.01)
    assert cv.mean_grey == pytest.approx(expected.mean(), abs=2.0)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]


def test_decoded_once_rebuilt_when_source_changes(tmp_path, tomo):
    folder, record = tomo
    reader = CountingReader()
    cache = VolumeCache(tmp_path / "cache", DataConfig(spacing_a=(20.0, 20.0, 20.0)), reader=reader)
    first = np.array(cache.get(folder, record).volume)
    cache.get(folder, record)
    assert reader.calls == 1
    # a fresh cache object on the same folder reuses the entry too
    VolumeCache(tmp_path / "cache", DataConfig(spacing_a=(20.0, 20.0, 20.0)), reader=reader).get(
        folder, record
    )
    assert reader.calls == 1
    Image.fromarray(np.full((20, 24), 255, np.uint8)).save(folder / "slice_0003.jpg", quality=95)
    st = os.stat(folder / "slice_0003.jpg")
    os.utime(folder / "slice_0003.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = np.array(cache.get(folder, record).volume)
    assert reader.calls == 2
    assert second[1].mean() > first[1].mean() + 20  # slices 2-3 feed output slice 1


def test_spacing_change_is_another_entry(tmp_path, tomo):
    folder, record = tomo
    reader = CountingReader()
    a = VolumeCache(tmp_path / "cache", DataConfig(spacing_a=(20.0, 20.0, 20.0)), reader=reader)
    b = VolumeCache(tmp_path / "cache", DataConfig(spacing_a=(40.0, 40.0, 40.0)), reader=reader)
    assert a.entry_paths(record)[0] != b.entry_paths(record)[0]
    assert a.get(folder, record).volume.shape == (6, 10, 12)
    assert b.get(folder, record).volume.shape == (3, 5, 6)
    assert a.get(folder, record).volume.shape == (6, 10, 12)  # the first entry survived
    assert reader.calls == 2
    c = VolumeCache(tmp_path / "cache", DataConfig(spacing_a=(20.0, 20.0, 20.0), interp="area"))
    assert c.entry_paths(record)[0] != a.entry_paths(record)[0]


def test_wraparound_is_fixed(tmp_path):
    rng = np.random.default_rng(1)
    good = np.clip(rng.normal(120, 25, (8, 16, 16)), 0, 255).astype(np.uint8)
    wrapped = (good.astype(np.int16) + 129).astype(np.uint8)  # the inverse of +127 modulo 256
    record = TomoRecord("tomo_w", good.shape, 10.0)
    cache = VolumeCache(
        tmp_path / "c", DataConfig(spacing_a=(10.0, 10.0, 10.0)), reader=lambda f: wrapped.copy()
    )
    cv = cache.get(tmp_path, record)
    assert cv.wraparound_fixed
    np.testing.assert_array_equal(np.asarray(cv.volume), good)
    assert cv.motors.shape == (0, 3)


def test_prepare_in_order_and_pickles_small(tmp_path, tomo):
    folder, record = tomo
    other = tmp_path / "train" / "tomo_y"
    write_tomogram(np.full((6, 8, 8), 90, np.uint8), other)
    rec2 = TomoRecord("tomo_y", (6, 8, 8), 20.0)
    cache = VolumeCache(tmp_path / "cache", DataConfig(spacing_a=(20.0, 20.0, 20.0)))
    vols = cache.prepare([(folder, record), (other, rec2)], workers=2, progress=False)
    assert [v.tomo_id for v in vols] == ["tomo_x", "tomo_y"]
    back = pickle.loads(pickle.dumps(vols[0]))
    assert len(pickle.dumps(vols[0])) < 4000
    np.testing.assert_array_equal(np.asarray(back.volume), np.asarray(vols[0].volume))


def test_missing_folder_is_named(tmp_path):
    cache = VolumeCache(tmp_path / "c", DataConfig())
    with pytest.raises(FileNotFoundError, match="tomo_missing"):
        cache.get(tmp_path / "tomo_missing", TomoRecord("tomo_missing", (4, 4, 4), 10.0))


def test_native_entries_keep_the_tomogram_and_are_apart(tmp_path, tomo):
    folder, record = tomo
    cfg = DataConfig(spacing_a=(20.0, 20.0, 20.0))
    native = VolumeCache(tmp_path / "cache", cfg, native=True).get(folder, record)
    resampled = VolumeCache(tmp_path / "cache", cfg).get(folder, record)
    np.testing.assert_array_equal(np.asarray(native.volume), read_tomogram(folder))
    assert native.grid == native.src_grid == Grid((12, 20, 24), 10.0)
    np.testing.assert_allclose(native.motors, record.motors)
    assert resampled.volume.shape == (6, 10, 12) and native.path != resampled.path
