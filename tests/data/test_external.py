"""Tests of byu_motor.data.external and `byu-motor convert`: MRC / OME-Zarr in, competition layout out."""

from __future__ import annotations

import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import zarr

from byu_motor.data.external import (
    ExternalVolumeError,
    percentile_range,
    read_mrc,
    read_ome_zarr,
    read_volume,
    source_stem,
    to_uint8,
)
from byu_motor.data.io import read_tomogram
from byu_motor.data.layout import LABEL_COLUMNS, read_labels


def make_mrc(path: Path, data: np.ndarray, voxel_a: tuple[float, float, float] | None) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        if voxel_a is not None:
            mrc.voxel_size = voxel_a  # (x, y, z) in Angstrom, MRC's order
    return path


def make_ome_zarr(
    path: Path,
    data: np.ndarray,
    scale: list[float],
    unit: str | None = "nanometer",
    zarr_format: int = 2,
    extra_global_scale: list[float] | None = None,
) -> Path:
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    array = group.create_array(
        "0", shape=data.shape, dtype=data.dtype, chunks=(2,) * (data.ndim - 2) + data.shape[-2:]
    )
    array[...] = data
    names = ["c", "z", "y", "x"][-data.ndim :]
    axes = [{"name": n, "type": "channel" if n == "c" else "space"} for n in names]
    for a in axes:
        if a["type"] == "space" and unit is not None:
            a["unit"] = unit
    meta: dict = {
        "version": "0.4",
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }
    if extra_global_scale is not None:
        meta["coordinateTransformations"] = [{"type": "scale", "scale": extra_global_scale}]
    if zarr_format == 2:
        group.attrs["multiscales"] = [meta]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [meta]}
    return path


def ramp(shape: tuple[int, int, int]) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def test_read_mrc_keeps_axes_and_spacing(tmp_path: Path) -> None:
    data = ramp((6, 10, 12))
    vol = read_mrc(make_mrc(tmp_path / "a.mrc", data, (12.0, 11.0, 10.0)))
    np.testing.assert_array_equal(vol.data, data)
    assert vol.shape == (6, 10, 12)
    assert vol.spacing_a == pytest.approx((10.0, 11.0, 12.0))  # returned as (z, y, x)
    assert read_mrc(make_mrc(tmp_path / "b.mrc", data, None)).spacing_a is None


def test_read_ome_zarr_nanometer_to_angstrom(tmp_path: Path) -> None:
    data = ramp((1, 5, 8, 9))  # leading channel axis of size 1
    path = make_ome_zarr(tmp_path / "TS_01.ome.zarr", data, [1.0, 1.31, 1.31, 1.31])
    vol = read_volume(path)
    assert vol.shape == (5, 8, 9)
    assert vol.spacing_a == pytest.approx((13.1, 13.1, 13.1))
    np.testing.assert_array_equal(vol.data[1:3], data[0, 1:3])
    assert source_stem(path) == "TS_01"


def test_read_ome_zarr_v3_angstrom_and_global_scale(tmp_path: Path) -> None:
    data = ramp((4, 6, 7))
    path = make_ome_zarr(
        tmp_path / "v.zarr",
        data,
        [8.0, 8.0, 8.0],
        unit="angstrom",
        zarr_format=3,
        extra_global_scale=[2, 2, 2],
    )
    vol = read_ome_zarr(path)
    assert vol.spacing_a == pytest.approx((16.0, 16.0, 16.0))
    np.testing.assert_array_equal(vol.data[0:4], data)


def test_read_ome_zarr_errors(tmp_path: Path) -> None:
    path = make_ome_zarr(tmp_path / "u.zarr", ramp((3, 4, 5)), [1, 1, 1], unit="furlong")
    with pytest.raises(ExternalVolumeError, match="furlong"):
        read_ome_zarr(path)
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=2)
    plain.create_array("0", shape=(2, 2, 2), dtype="f4")
    with pytest.raises(ExternalVolumeError, match="multiscales"):
        read_ome_zarr(tmp_path / "plain.zarr")
    with pytest.raises(ExternalVolumeError, match="no such file"):
        read_volume(tmp_path / "x.tif")
    (tmp_path / "x.tif").write_text("")
    with pytest.raises(ExternalVolumeError, match="unknown volume format"):
        read_volume(tmp_path / "x.tif")


def test_missing_optional_dependency_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mrcfile", None)  # makes `import mrcfile` raise ImportError
    with pytest.raises(ImportError, match=r"pip install byu_motor\[mrc\]"):
        read_mrc(tmp_path / "a.mrc")
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(ImportError, match=r"pip install byu_motor\[zarr\]"):
        read_ome_zarr(tmp_path / "a.zarr")


def test_to_uint8_percentile_stretch() -> None:
    data = ramp((10, 10, 10))  # values 0..999
    out = to_uint8(data, 0.5, 99.5, chunk_slices=3)
    # numpy's linear percentiles of 0..999: 0.5% -> 4.995, 99.5% -> 994.005
    lo, hi = 4.995, 994.005
    expected = np.clip(np.rint((data.astype(np.float64) - lo) * 255 / (hi - lo)), 0, 255)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8 and out.flat[0] == 0 and out.flat[-1] == 255 and out.flat[500] == 128
    full = to_uint8(-data.astype(np.float64), 0, 100)  # float64 input, inverted: max -> 0, min -> 255
    assert full.flat[0] == 255 and full.flat[-1] == 0


def test_to_uint8_chunking_and_special_values() -> None:
    data = np.random.default_rng(0).normal(0, 1, (9, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(to_uint8(data, chunk_slices=1), to_uint8(data, chunk_slices=100))
    data[0, 0, 0] = np.nan
    assert to_uint8(data)[0, 0, 0] == 0
    assert np.all(to_uint8(np.full((2, 3, 3), 5.0)) == 0)  # constant volume
    u8 = np.arange(27, dtype=np.uint8).reshape(3, 3, 3)
    np.testing.assert_array_equal(to_uint8(u8), u8)  # already a uint8 tomogram: unchanged
    assert to_uint8(u8, 0, 100, stretch_uint8=True).max() == 255


def test_percentile_range_exact_then_sampled() -> None:
    data = np.random.default_rng(2).normal(0, 1, (40, 40, 40)).astype(np.float32)
    exact = np.percentile(data, [0.5, 99.5])
    assert percentile_range(data) == pytest.approx(tuple(exact))
    # A ~1/27 strided sample still gives the N(0, 1) tails (+-2.576) to within a few hundredths of sigma.
    sampled = percentile_range(data, max_samples=3000)
    assert sampled != pytest.approx(tuple(exact), abs=1e-9)
    assert sampled == pytest.approx((-2.576, 2.576), abs=0.2)


def run_convert(argv: list[str]) -> int:
    from byu_motor.cli import main

    return main(["convert", *argv])


def test_convert_mrc_and_zarr_to_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    mrc_path = make_mrc(tmp_path / "cellA.mrc", rng.normal(0, 1, (6, 16, 20)).astype(np.float32), (15.6,) * 3)
    zarr_path = make_ome_zarr(tmp_path / "cellB.ome.zarr", rng.normal(5, 2, (5, 12, 14)), [1.97, 1.97, 1.97])
    motors = tmp_path / "motors.csv"
    motors.write_text("tomo_id,z,y,x\ncellA,2,3,4\n")
    data_dir = tmp_path / "data"
    rc = run_convert([str(mrc_path), str(zarr_path), "--out", str(data_dir), "--motors", str(motors)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in (data_dir / "train").iterdir()) == ["cellA", "cellB"]
    assert len(list((data_dir / "train" / "cellA").glob("slice_*.jpg"))) == 6
    assert read_tomogram(data_dir / "train" / "cellB").shape == (5, 12, 14)
    header = (data_dir / "train_labels.csv").read_text().splitlines()[0]
    assert header == ",".join(LABEL_COLUMNS)
    records = read_labels(data_dir / "train_labels.csv")
    assert records["cellA"].motors.tolist() == [[2.0, 3.0, 4.0]]
    assert records["cellA"].shape == (6, 16, 20) and records["cellA"].spacing_a == pytest.approx(15.6)
    assert records["cellB"].motors.shape == (0, 3) and records["cellB"].spacing_a == pytest.approx(19.7)
    assert records["cellB"].n_motors_column == 0

    # A second run appends (row_id continues), with a prefix and a spacing override; the CSV names the
    # tomogram both by source stem and by output id: the output id wins.
    motors.write_text("tomo_id,z,y,x\ncellA,2,3,4\next_cellA,5,15,19\n")
    rc = run_convert(
        [str(mrc_path), "--out", str(data_dir), "--tomo-id-prefix", "ext_", "--spacing-a", "13.1"]
        + ["--motors", str(motors)]
    )
    assert rc == 0, capsys.readouterr().err
    records = read_labels(data_dir / "train_labels.csv")
    assert list(records) == ["cellA", "cellB", "ext_cellA"]
    assert records["ext_cellA"].motors.tolist() == [[5.0, 15.0, 19.0]]
    assert records["ext_cellA"].spacing_a == 13.1
    lines = (data_dir / "train_labels.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2"]


def test_convert_refuses_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = np.random.default_rng(1).normal(0, 1, (4, 8, 8)).astype(np.float32)
    no_spacing = make_mrc(tmp_path / "nospacing.mrc", data, None)
    data_dir = tmp_path / "data"
    assert run_convert([str(no_spacing), "--out", str(data_dir)]) == 2
    assert "--spacing-a" in capsys.readouterr().err
    aniso = make_mrc(tmp_path / "aniso.mrc", data, (10.0, 10.0, 20.0))
    assert run_convert([str(aniso), "--out", str(data_dir)]) == 2
    assert "anisotropic" in capsys.readouterr().err
    motors = tmp_path / "m.csv"
    motors.write_text("tomo_id,z,y,x\nnospacing,1,2,8\n")  # x = 8 is outside a width of 8
    assert (
        run_convert([str(no_spacing), "--out", str(data_dir), "--spacing-a", "10", "--motors", str(motors)])
        == 2
    )
    assert "outside" in capsys.readouterr().err
    motors.write_text("tomo_id,z,y,x\ntypo,1,2,3\n")
    assert (
        run_convert([str(no_spacing), "--out", str(data_dir), "--spacing-a", "10", "--motors", str(motors)])
        == 2
    )
    assert "match no INPUT" in capsys.readouterr().err
    assert not (data_dir / "train_labels.csv").exists()
    assert run_convert([str(no_spacing), "--out", str(data_dir), "--spacing-a", "10"]) == 0
    assert run_convert([str(no_spacing), "--out", str(data_dir), "--spacing-a", "10"]) == 2  # same tomo_id
    assert "already exists" in capsys.readouterr().err


def test_convert_test_split_writes_no_labels(tmp_path: Path) -> None:
    path = make_mrc(tmp_path / "t.mrc", ramp((3, 8, 8)), (13.1,) * 3)
    assert run_convert([str(path), "--out", str(tmp_path / "d"), "--split", "test"]) == 0
    assert (tmp_path / "d" / "test" / "t" / "slice_0002.jpg").exists()
    assert not (tmp_path / "d" / "train_labels.csv").exists()
