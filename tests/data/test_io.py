"""Tests of byu_motor.data.io: threaded slice reading, decode-time reduction and the wraparound repair."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from byu_motor.data import io as io_module
from byu_motor.data.grid import Grid
from byu_motor.data.io import (
    TomogramReadError,
    detect_wraparound,
    fix_wraparound,
    mend_isolated_extremes,
    read_tomogram,
    write_tomogram,
)


def write_png_slices(volume: np.ndarray, folder: Path, pad: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for z, plane in enumerate(volume):
        name = f"slice_{z:04d}.png" if pad else f"slice_{z}.png"
        Image.fromarray(plane).save(folder / name)
    return folder


def smooth_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 3)
    v = 120 + 60 * np.sin(3 * z + phase[0]) * np.cos(4 * y + phase[1]) + 40 * np.sin(5 * x + phase[2])
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    vol = np.random.default_rng(0).integers(0, 256, (6, 9, 7), dtype=np.uint8)
    folder = write_png_slices(vol, tmp_path / "t")
    for threads in (1, 3):
        out = read_tomogram(folder, num_threads=threads)
        assert out.dtype == np.uint8 and out.shape == (6, 9, 7)
        np.testing.assert_array_equal(out, vol)


def test_copy_fallback_gives_the_same_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vol = np.random.default_rng(3).integers(0, 256, (3, 5, 6), dtype=np.uint8)
    folder = write_png_slices(vol, tmp_path / "t")
    monkeypatch.setattr(io_module, "_zero_copy_works", lambda: False)
    np.testing.assert_array_equal(read_tomogram(folder, num_threads=2), vol)


@pytest.mark.parametrize("reduce", [1, 2])
def test_decoding_into_out_gives_the_same_bytes(tmp_path: Path, reduce: int) -> None:
    vol = smooth_volume((5, 20, 18), seed=4)  # JPEG: reduce 2 takes the DCT-scaling path
    write_tomogram(vol, tmp_path / "t", quality=90)
    ref = read_tomogram(tmp_path / "t", reduce=reduce, num_threads=2)
    for threads in (1, 2):
        buf = np.full(ref.shape, 7, dtype=np.uint8)
        got = read_tomogram(tmp_path / "t", reduce=reduce, num_threads=threads, out=buf)
        assert got is buf
        assert got.tobytes() == ref.tobytes()


def test_out_of_another_shape_or_dtype_is_one_value_error(tmp_path: Path) -> None:
    folder = write_png_slices(np.zeros((3, 4, 5), dtype=np.uint8), tmp_path / "t")
    bad = [
        np.empty((3, 4, 6), np.uint8),
        np.empty((3, 4, 5), np.float32),
        np.empty((3, 5, 4), np.uint8).transpose(0, 2, 1),  # right shape, not C-contiguous
        [[0] * 5] * 4,
    ]
    for out in bad:
        with pytest.raises(ValueError, match=r"out= must be .*\(3, 4, 5\)") as err:
            read_tomogram(folder, out=out)
        assert str(tmp_path / "t") in str(err.value) and not isinstance(err.value, TomogramReadError)
    with pytest.raises(ValueError, match="out="):
        read_tomogram(folder, reduce=2, out=np.empty((3, 4, 5), np.uint8))  # reduced shape is (2, 2, 3)


def test_jpeg_round_trip_is_close(tmp_path: Path) -> None:
    vol = smooth_volume((4, 32, 40))
    write_tomogram(vol, tmp_path / "t", quality=95)
    out = read_tomogram(tmp_path / "t")
    assert out.shape == vol.shape
    assert np.abs(out.astype(int) - vol).mean() < 1.5


def test_slices_ordered_by_integer_index_and_other_files_ignored(tmp_path: Path) -> None:
    # slice_10 must come after slice_9 although "slice_10" < "slice_9" as strings.
    vol = (np.arange(12, dtype=np.uint8) * 10)[:, None, None] * np.ones((1, 4, 5), dtype=np.uint8)
    folder = write_png_slices(vol, tmp_path / "t", pad=False)
    (folder / "notes.txt").write_text("not a slice")
    Image.fromarray(np.full((4, 5), 255, np.uint8)).save(folder / "thumbnail.png")
    Image.fromarray(np.full((4, 5), 255, np.uint8)).save(folder / "slice_x.png")
    out = read_tomogram(folder, num_threads=2)
    assert out[:, 0, 0].tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110]


def test_colour_slices_become_grayscale(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    for z in range(2):
        Image.fromarray(np.full((3, 4, 3), (200, 100, 50), np.uint8), mode="RGB").save(
            folder / f"slice_{z}.png"
        )
    out = read_tomogram(folder)
    # ITU-R 601-2 luma as Pillow computes it: 200*0.299 + 100*0.587 + 50*0.114 = 124.2
    assert out.shape == (2, 3, 4) and np.all(out == 124)


@pytest.mark.parametrize("reduce", [2, 4])
def test_reduce_png_is_block_average(tmp_path: Path, reduce: int) -> None:
    # Values constant on each reduce x reduce in-plane block (also the partial last block), linear in z,
    # so the block average is exact: out[k, i, j] = 8 * mean(z in group k) + 3 i + 5 j.
    shape = (5, 7, 10)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    vol = (8 * z + 3 * (y // reduce) + 5 * (x // reduce)).astype(np.uint8)
    folder = write_png_slices(vol, tmp_path / "t")
    out = read_tomogram(folder, reduce=reduce, num_threads=2)
    expected_shape = tuple(-(-n // reduce) for n in shape)
    assert out.shape == expected_shape == Grid(shape, 13.1).strided(reduce).shape
    groups = [np.arange(5)[k * reduce : (k + 1) * reduce] for k in range(expected_shape[0])]
    for k, group in enumerate(groups):
        for i in range(expected_shape[1]):
            for j in range(expected_shape[2]):
                assert out[k, i, j] == round(8 * group.mean()) + 3 * i + 5 * j


def test_reduce_z_rounds_half_up(tmp_path: Path) -> None:
    vol = np.stack([np.full((2, 2), v, np.uint8) for v in (1, 2, 7)])
    out = read_tomogram(write_png_slices(vol, tmp_path / "t"), reduce=2)
    assert out[:, 0, 0].tolist() == [2, 7]  # (1 + 2) / 2 = 1.5 -> 2; lone last slice kept


def test_reduce_jpeg_uses_dct_scaling_close_to_block_mean(tmp_path: Path) -> None:
    vol = smooth_volume((5, 37, 45), seed=1)
    write_tomogram(vol, tmp_path / "t", quality=98)
    out = read_tomogram(tmp_path / "t", reduce=2)
    assert out.shape == (3, 19, 23)
    # Edge padding makes a partial block (last z group, last row/column) the mean of what it covers.
    padded = np.pad(vol.astype(np.float64), ((0, 1), (0, 1), (0, 1)), mode="edge")
    block = padded.reshape(3, 2, 19, 2, 23, 2).mean(axis=(1, 3, 5))
    assert np.abs(out - block).mean() < 2.0


@pytest.mark.parametrize("reduce", [2, 4])
def test_reduce_averages_rather_than_subsamples(tmp_path: Path, reduce: int) -> None:
    # A one-voxel 3D checkerboard of 0/255: any averaging over r-blocks gives ~127.5 everywhere, while
    # keeping every r-th voxel would give only 0 or 255.
    board = ((np.indices((4, 32, 32)).sum(axis=0) % 2) * 255).astype(np.uint8)
    write_tomogram(board, tmp_path / "t", quality=95)
    out = read_tomogram(tmp_path / "t", reduce=reduce)
    assert out.shape == (4 // reduce, 32 // reduce, 32 // reduce)
    assert np.abs(out.astype(int) - 127.5).max() <= 8


def test_reduce_rejects_other_factors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reduce"):
        read_tomogram(tmp_path, reduce=3)


def test_missing_slice_index(tmp_path: Path) -> None:
    folder = write_png_slices(np.zeros((4, 3, 3), np.uint8), tmp_path / "t")
    (folder / "slice_0002.png").unlink()
    with pytest.raises(TomogramReadError, match=r"slice index 2 is missing") as info:
        read_tomogram(folder)
    assert str(folder) in str(info.value)


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    write_tomogram(smooth_volume((3, 16, 16)), folder)
    bad = folder / "slice_0001.jpg"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 3])  # truncated JPEG
    with pytest.raises(TomogramReadError, match="slice_0001.jpg"):
        read_tomogram(folder, num_threads=2)
    bad.write_bytes(b"not an image at all")
    with pytest.raises(TomogramReadError, match="slice_0001.jpg"):
        read_tomogram(folder, num_threads=1)


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(TomogramReadError, match="empty"):
        read_tomogram(tmp_path / "empty")
    with pytest.raises(TomogramReadError, match="nowhere"):
        read_tomogram(tmp_path / "nowhere")


def test_slice_of_another_size(tmp_path: Path) -> None:
    folder = write_png_slices(np.zeros((3, 4, 5), np.uint8), tmp_path / "t")
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(folder / "slice_0002.png")
    with pytest.raises(TomogramReadError, match="slice_0002.png.*4x6"):
        read_tomogram(folder)


def stretched_volume(seed: int = 0, mean: float = 118.0, std: float = 52.0) -> np.ndarray:
    """A per-tomogram stretched uint8 volume: unimodal around ``mean``, ~1% saturated at each end."""
    v = np.random.default_rng(seed).normal(mean, std, (24, 40, 40))
    lo, hi = np.percentile(v, [1, 99])
    return np.clip(np.rint((v - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)


def test_wraparound_detected_and_repaired_exactly() -> None:
    normal = stretched_volume()
    wrapped = (normal.astype(np.int16) - 127) % 256  # what the broken quantisation produced
    wrapped = wrapped.astype(np.uint8)
    assert detect_wraparound(wrapped)
    fixed = fix_wraparound(wrapped, seam_tolerance=None)  # the arithmetic alone (white noise has no seam)
    np.testing.assert_array_equal(fixed, normal)
    assert fixed is not wrapped and not np.array_equal(wrapped, normal)
    same = fix_wraparound(wrapped, inplace=True, seam_tolerance=None)
    assert same is wrapped
    np.testing.assert_array_equal(wrapped, normal)


def jpeg_round_trip(volume: np.ndarray, quality: int = 95) -> np.ndarray:
    """Each slice written as a JPEG and read back, as the tomograms were stored."""
    out = np.empty_like(volume)
    for z, plane in enumerate(volume):
        buf = BytesIO()
        Image.fromarray(plane).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out[z] = np.asarray(Image.open(buf).convert("L"))
    return out


def smooth_tomogram(seed: int = 0) -> np.ndarray:
    """Smooth texture stretched to uint8 (unimodal, ~1 % saturated at each end) with a saturated dark ball
    (a dense core, such as a gold bead, blurred like the rest)."""
    from scipy import ndimage as ndi

    v = ndi.gaussian_filter(np.random.default_rng(seed).normal(0.0, 1.0, (6, 96, 96)), (0, 2, 2))
    lo, hi = np.percentile(v, [1, 99])
    yy, xx = np.ogrid[:96, :96]
    core = np.zeros(v.shape)
    core[:, (yy - 48) ** 2 + (xx - 40) ** 2 < 64] = 1.0
    v -= 3.0 * (hi - lo) * ndi.gaussian_filter(core, (0, 2, 2))
    return np.clip(np.rint((v - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)


def test_wraparound_repair_mends_the_jpeg_seam() -> None:
    truth = smooth_tomogram()
    reference = jpeg_round_trip(truth).astype(int)  # the best any repair can do
    stored = jpeg_round_trip(((truth.astype(np.int16) - 127) % 256).astype(np.uint8))
    assert detect_wraparound(stored)
    plain = fix_wraparound(stored, seam_tolerance=None).astype(int)
    mended = fix_wraparound(stored).astype(int)
    wrong_plain = np.abs(plain - reference) > 96
    wrong_mended = np.abs(mended - reference) > 96
    # compression blurs the stored jumps: the arithmetic alone leaves black and white specks (~1 %)
    assert wrong_plain.mean() > 0.01
    assert wrong_mended.sum() < 0.4 * wrong_plain.sum()
    assert np.abs(mended - reference).mean() < 0.6 * np.abs(plain - reference).mean()
    # the saturated dense core (true black) is black again, not speckled with white
    yy, xx = np.ogrid[:96, :96]
    core = np.broadcast_to((yy - 48) ** 2 + (xx - 40) ** 2 < 49, truth.shape)
    assert wrong_mended[core].sum() < 0.2 * wrong_plain[core].sum()
    # voxels away from both seams are left as the arithmetic made them
    calm = (plain >= 32) & (plain <= 223)
    np.testing.assert_array_equal(mended[calm], plain[calm])


def test_mending_reads_each_speck_on_its_side_of_the_seams() -> None:
    vol = np.full((2, 9, 9), 40, np.uint8)  # a dark field
    vol[1] = 140  # a mid-grey field
    vol[0, 4, 4] = 253  # white in the dark: true black across the black/white seam
    vol[1, 4, 4] = 255  # white in mid-grey: the blurred mid-grey seam
    mended = vol.copy()
    assert mend_isolated_extremes(mended) == 2
    assert mended[0, 4, 4] == 0 and mended[1, 4, 4] == 140
    loose = vol.copy()
    assert mend_isolated_extremes(loose, tolerance=250) == 1  # the fold does not depend on the tolerance
    assert loose[0, 4, 4] == 0 and loose[1, 4, 4] == 255
    with pytest.raises(ValueError, match="uint8"):
        mend_isolated_extremes(vol.astype(np.int16))
    with pytest.raises(ValueError, match="windows"):
        mend_isolated_extremes(vol, half_window=0)


@pytest.mark.parametrize("kind", ["normal", "inverted", "dark", "bright"])
def test_wraparound_not_detected_on_good_volumes(kind: str) -> None:
    vol = {
        "normal": stretched_volume(1),
        "inverted": 255 - stretched_volume(2),
        "dark": np.clip(stretched_volume(3).astype(int) - 60, 0, 255).astype(np.uint8),
        "bright": np.clip(stretched_volume(4).astype(int) + 60, 0, 255).astype(np.uint8),
    }[kind]
    assert not detect_wraparound(vol)


def test_wraparound_rejects_non_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        detect_wraparound(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        fix_wraparound(np.zeros((2, 2, 2), np.int16))
