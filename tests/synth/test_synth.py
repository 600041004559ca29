"""Tests of the synthetic tomogram generator and the `byu-motor synth` command."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from byu_motor import synth
from byu_motor.data.layout import read_labels
from byu_motor.synth import spec as synth_spec
from byu_motor.synth.cells import cell_sdf_at

LABEL_COLUMNS = [
    "row_id",
    "tomo_id",
    "Motor axis 0",
    "Motor axis 1",
    "Motor axis 2",
    "Array shape (axis 0)",
    "Array shape (axis 1)",
    "Array shape (axis 2)",
    "Voxel spacing",
    "Number of motors",
]
REAL_SPACINGS = {13.1, 15.6, 16.8, 19.7, 16.1, 13.3, 19.3, 19.2, 6.5, 13.2}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    synth.generate_dataset(out, n_train=3, n_test=2, scale=0.1, seed=7)
    return out


def test_layout_files_and_columns(dataset: Path) -> None:
    labels = pd.read_csv(dataset / "train_labels.csv")
    assert list(labels.columns) == LABEL_COLUMNS
    sub = pd.read_csv(dataset / "sample_submission.csv")
    assert list(sub.columns) == ["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"]
    sol = pd.read_csv(dataset / "test_labels.csv")
    assert list(sol.columns) == ["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2", "Voxel spacing"]
    meta = json.loads((dataset / "synth_meta.json").read_text())

    train_ids = sorted(p.name for p in (dataset / "train").iterdir())
    test_ids = sorted(p.name for p in (dataset / "test").iterdir())
    assert len(train_ids) == 3 and len(test_ids) == 2
    assert sorted(labels["tomo_id"].unique()) == train_ids
    assert sorted(sub["tomo_id"]) == test_ids == sorted(sol["tomo_id"])
    assert (sub[["Motor axis 0", "Motor axis 1", "Motor axis 2"]] == -1).all().all()
    assert set(meta) == set(train_ids) | set(test_ids)
    for tomo_id, info in meta.items():
        assert tomo_id.startswith("tomo_") and len(tomo_id) == 11
        int(tomo_id[5:], 16)  # six hex characters
        assert {"inverted", "wrapped", "difficulty", "seed"} <= set(info)

    # every slice exists with the labelled (Y, X) size, and nothing beyond Z
    for tomo_id, group in labels.groupby("tomo_id"):
        z, y, x = (int(group[f"Array shape (axis {i})"].iloc[0]) for i in range(3))
        files = sorted((dataset / "train" / tomo_id).glob("slice_*.jpg"))
        assert [f.name for f in files] == [f"slice_{i:04d}.jpg" for i in range(z)]
        with Image.open(files[z // 2]) as im:
            assert im.mode == "L" and im.size == (x, y)


def test_labels_parse_and_motors_inside(dataset: Path) -> None:
    labels = pd.read_csv(dataset / "train_labels.csv")
    assert list(labels["row_id"]) == list(range(len(labels)))
    for _, group in labels.groupby("tomo_id"):
        shape = np.array([group[f"Array shape (axis {i})"].iloc[0] for i in range(3)])
        coords = group[["Motor axis 0", "Motor axis 1", "Motor axis 2"]].to_numpy()
        n = int(group["Number of motors"].iloc[0])
        if n == 0:
            assert len(group) == 1 and (coords == -1).all()
        else:
            assert len(group) == n
            assert (coords >= 0).all() and (coords < shape).all()
        # scale 0.1: spacing is a real spacing / 0.1
        assert round(float(group["Voxel spacing"].iloc[0]) * 0.1, 4) in REAL_SPACINGS
    records = read_labels(dataset / "train_labels.csv")
    assert set(records) == set(labels["tomo_id"])
    for rec in records.values():
        assert len(rec.motors) == rec.n_motors_column
    sol = pd.read_csv(dataset / "test_labels.csv")
    for _, row in sol.iterrows():
        c = row[["Motor axis 0", "Motor axis 1", "Motor axis 2"]].to_numpy(dtype=float)
        assert (c == -1).all() or (c >= 0).all()


def test_same_seed_same_bytes_and_workers(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synth.generate_dataset(again, n_train=3, n_test=2, scale=0.1, seed=7, workers=2)
    first = _hashes(dataset)
    assert len(first) > 20
    assert _hashes(again) == first
    other = tmp_path / "other"
    synth.generate_dataset(other, n_train=1, n_test=0, scale=0.1, seed=8)
    assert (other / "train_labels.csv").read_bytes() != (dataset / "train_labels.csv").read_bytes()


def _spec_with_motors(seed: int, scale: float, min_motors: int) -> synth.SynthSpec:
    rng = np.random.default_rng(seed)
    while True:
        spec = synth.draw_spec(rng, scale, "train")
        if len(spec.motors) >= min_motors:
            return spec


def _darkness_score(vol: np.ndarray, centers: np.ndarray, radius_vox: float) -> np.ndarray:
    """Mean of a shell (1.8-2.8 radii) minus mean of a ball (radius): > 0 for a dark compact object."""
    r = int(np.ceil(2.8 * radius_vox))
    off = np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1].reshape(3, -1).T
    dist = np.linalg.norm(off, axis=1)
    ball = off[dist <= radius_vox]
    shell = off[(dist >= 1.8 * radius_vox) & (dist <= 2.8 * radius_vox)]
    v = vol.astype(np.float64)
    hi = np.array(vol.shape) - 1
    scores = []
    for c in np.rint(centers).astype(int):
        b = np.clip(c + ball, 0, hi)
        s = np.clip(c + shell, 0, hi)
        scores.append(v[tuple(s.T)].mean() - v[tuple(b.T)].mean())
    return np.array(scores)


def _motor_and_random_scores(vol, spec, seed=0):
    radius_vox = 20.0 / (spec.spacing_a / 10.0)  # about the bell's radius
    margin = int(np.ceil(2.8 * radius_vox))
    rng = np.random.default_rng(seed)
    rand = rng.uniform(margin, np.array(vol.shape) - 1 - margin, size=(300, 3))
    return _darkness_score(vol, spec.motors, radius_vox), _darkness_score(vol, rand, radius_vox)


def test_labels_sit_on_dark_motors() -> None:
    spec = _spec_with_motors(seed=11, scale=0.25, min_motors=2)
    vol = synth.generate_tomogram(
        spec.shape, spec.spacing_a, spec.motors, np.random.default_rng(1), cells=spec.cells
    )
    assert vol.dtype == np.uint8 and vol.shape == spec.shape
    motor, rand = _motor_and_random_scores(vol, spec)
    # most labelled motors are darker than their surroundings than 90% of random places are
    assert np.mean(motor > np.percentile(rand, 90)) >= 0.75
    # the same test on labels shifted by 150 nm fails: the score is about the motors, not the cell
    shifted = spec.motors + np.array([0, 150.0, 0]) / (spec.spacing_a / 10.0)
    radius_vox = 20.0 / (spec.spacing_a / 10.0)
    off = _darkness_score(vol, shifted, radius_vox)
    assert np.median(off) < np.median(motor)


def test_intensity_statistics_like_real() -> None:
    spec = _spec_with_motors(seed=3, scale=0.2, min_motors=1)
    vol = synth.generate_tomogram(
        spec.shape, spec.spacing_a, spec.motors, np.random.default_rng(2), cells=spec.cells
    )
    assert 105 <= vol.mean() <= 130
    assert 40 <= vol.std() <= 65
    assert 0.003 <= np.mean(vol == 0) <= 0.04
    assert 0.003 <= np.mean(vol == 255) <= 0.04


def test_difficulty_lowers_motor_contrast_to_noise() -> None:
    spec = _spec_with_motors(seed=5, scale=0.2, min_motors=1)

    def render(difficulty: float) -> np.ndarray:
        rng = np.random.default_rng(4)  # same geometry for every difficulty
        vol = synth.generate_tomogram(
            spec.shape, spec.spacing_a, spec.motors, rng, difficulty, cells=spec.cells
        )
        return vol.astype(np.float64)

    clean = render(0.0)
    motor_clean, _ = _motor_and_random_scores(clean, spec)
    cnr = []
    for difficulty in (0.5, 1.0, 2.5):
        vol = render(difficulty)
        # the stretch is nearly affine: fit vol ~ a * clean + b, the residual is the added noise
        dc, dv = clean - clean.mean(), vol - vol.mean()
        a = float((dc * dv).mean() / (dc * dc).mean())
        noise = (dv - a * dc).std()
        cnr.append(a * motor_clean.mean() / noise)
    assert motor_clean.mean() > 0
    assert cnr[0] > 1.5 * cnr[1] > 1.5 * 1.5 * cnr[2]


def test_inverted_and_wrapped_rendering() -> None:
    spec = _spec_with_motors(seed=1, scale=0.1, min_motors=1)
    args = (spec.shape, spec.spacing_a, spec.motors)
    plain = synth.generate_tomogram(*args, np.random.default_rng(9), cells=spec.cells)
    inverted = synth.generate_tomogram(*args, np.random.default_rng(9), cells=spec.cells, inverted=True)
    wrapped = synth.generate_tomogram(*args, np.random.default_rng(9), cells=spec.cells, wrapped=True)
    np.testing.assert_array_equal(inverted, 255 - plain)
    np.testing.assert_array_equal(((wrapped.astype(np.int16) + 127) % 256).astype(np.uint8), plain)
    assert not np.array_equal(wrapped, plain)


def test_generate_without_cells_builds_them() -> None:
    motors = np.array([[15.0, 40.0, 40.0]])
    vol = synth.generate_tomogram((30, 80, 80), 100.0, motors, np.random.default_rng(0))
    assert vol.shape == (30, 80, 80) and vol.dtype == np.uint8
    with pytest.raises(ValueError, match="spacing_a"):
        synth.generate_tomogram((30, 80, 80), 0.0, motors, np.random.default_rng(0))


def test_sampler_distributions() -> None:
    rng = np.random.default_rng(123)
    specs = [synth.draw_spec(rng, 0.25, "train") for _ in range(300)]
    inverted = np.mean([s.inverted for s in specs])
    wrapped = np.mean([s.wrapped for s in specs])
    assert 0.01 <= inverted <= 0.11 and 0.003 <= wrapped <= 0.08
    counts = np.array([len(s.motors) for s in specs])
    assert 0.33 <= np.mean(counts == 0) <= 0.55 and 0.38 <= np.mean(counts == 1) <= 0.6
    assert counts.max() >= 2
    zfrac = []
    for s in specs:
        assert round(s.spacing_a * 0.25, 4) in REAL_SPACINGS
        voxel_nm = s.spacing_a / 10.0
        edge = 37.0 / voxel_nm
        for m in s.motors:
            assert edge <= m[1] <= s.shape[1] - 1 - edge and edge <= m[2] <= s.shape[2] - 1 - edge
            assert 0 <= m[0] < s.shape[0]
            # the motor sits in the envelope of a cell: label depth below the outer membrane is right
            depths = [(-cell_sdf_at(c, m[None], s.spacing_a)[0][0], c.periplasm_nm) for c in s.cells]
            err = min(abs(d - (p + synth_spec.MOTOR_BELOW_INNER_NM)) for d, p in depths)
            assert err < 1.5 * voxel_nm
            zfrac.append(m[0] / s.shape[0])
        if len(s.motors) > 1:
            d = np.linalg.norm(s.motors[:, None] - s.motors[None], axis=-1) * voxel_nm
            assert d[np.triu_indices(len(s.motors), 1)].min() >= synth_spec.MIN_MOTOR_SEPARATION_NM
    assert 0.38 <= np.median(zfrac) <= 0.55
    test_counts = [len(synth.draw_spec(rng, 0.25, "test").motors) for _ in range(100)]
    assert set(test_counts) <= {0, 1} and 0.3 <= np.mean(test_counts) <= 0.7


def test_sample_tomogram_spec_scale() -> None:
    tomo_id, shape, spacing_a, motors = synth.sample_tomogram_spec(np.random.default_rng(4), 0.5, "train")
    assert tomo_id.startswith("tomo_")
    real = [row for row in synth_spec.SHAPE_SPACING_TABLE if row[3] == pytest.approx(spacing_a * 0.5)]
    assert any(shape == tuple(round(v * 0.5) for v in row[:3]) for row in real)
    assert motors.shape[1] == 3


def test_cli_synth(tmp_path: Path) -> None:
    from byu_motor.cli import main

    rc = main(
        ["synth", str(tmp_path / "d"), "--n-train", "1", "--n-test", "1", "--scale", "0.08", "--seed", "2"]
    )
    assert rc == 0
    assert (tmp_path / "d" / "train_labels.csv").exists() and (tmp_path / "d" / "test_labels.csv").exists()
    assert len(list((tmp_path / "d" / "test").iterdir())) == 1


def test_cli_synth_without(tmp_path: Path, capsys) -> None:
    from byu_motor.cli import main

    args = ["synth", str(tmp_path / "d"), "--n-train", "0", "--n-test", "1", "--scale", "0.08"]
    assert main([*args, "--without", "granule,decoy"]) == 0
    meta = json.loads((tmp_path / "d" / "synth_meta.json").read_text())
    assert all(e["without"] == ["decoy", "granule"] for e in meta.values())
    assert main([*args, "--without", "granule,ribosome"]) == 2
    assert "ribosome" in capsys.readouterr().err
