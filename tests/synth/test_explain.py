"""Tests of the distractor record of the synthetic generator and of the error attribution built on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from byu_motor import synth
from byu_motor.synth import KINDS, error_sources, explain_point, format_sources, lookalikes_above

AXES = ["Motor axis 0", "Motor axis 1", "Motor axis 2"]


def _spec_with_decoy_and_granule() -> tuple[synth.SynthSpec, int]:
    """A spec and volume seed whose rendering draws at least one decoy and one granule."""
    rng = np.random.default_rng(5)
    for _ in range(40):
        spec = synth.draw_spec(rng, 0.15, "train")
        for seed in range(6):
            objects: list[dict] = []
            synth.generate_tomogram(spec.shape, spec.spacing_a, spec.motors, np.random.default_rng(seed),
                                    cells=spec.cells, objects=objects)  # fmt: skip
            kinds = {o["kind"] for o in objects}
            if {"decoy", "granule"} <= kinds:
                return spec, seed
    raise AssertionError("no spec with a decoy and a granule in 240 tries")


def test_recording_does_not_change_the_volume_and_lists_objects_inside() -> None:
    spec, seed = _spec_with_decoy_and_granule()
    args = (spec.shape, spec.spacing_a, spec.motors)
    objects: list[dict] = []
    recorded = synth.generate_tomogram(*args, np.random.default_rng(seed), cells=spec.cells, objects=objects)
    plain = synth.generate_tomogram(*args, np.random.default_rng(seed), cells=spec.cells)
    np.testing.assert_array_equal(recorded, plain)
    shape = np.array(spec.shape)
    for obj in objects:
        assert obj["kind"] in {"decoy", "granule", "vesicle", "gold", "edge_band"}
        if obj["kind"] == "edge_band":
            assert obj["side"] in {"y0", "y1", "x0", "x1"} and 1 <= obj["width"] <= 0.07 * shape.max() + 1
        else:
            assert np.all(np.asarray(obj["zyx"]) >= 0) and np.all(np.asarray(obj["zyx"]) <= shape - 1)
            assert obj["radius_nm"] > 0
    # decoys and granules are drawn deep inside cells, never on a labelled motor
    for obj in objects:
        if obj["kind"] in ("decoy", "granule") and len(spec.motors):
            d_nm = np.linalg.norm(spec.motors - np.asarray(obj["zyx"]), axis=1).min() * spec.spacing_a / 10
            assert d_nm > 50.0


def _darkness(vol: np.ndarray, zyx, radius_vox: float) -> float:
    """Mean grey of a ring around a point minus the mean grey of a ball at it (dense = dark = positive)."""
    zz, yy, xx = np.indices(vol.shape, sparse=True)
    d = np.sqrt((zz - zyx[0]) ** 2 + (yy - zyx[1]) ** 2 + (xx - zyx[2]) ** 2)
    v = vol.astype(np.float64)
    return float(v[(d > radius_vox + 2) & (d <= radius_vox + 5)].mean() - v[d <= 0.6 * radius_vox].mean())


@pytest.mark.parametrize("kind", ["granule", "decoy"])
def test_without_leaves_one_kind_out_of_the_same_tomogram(kind: str) -> None:
    spec, seed = _spec_with_decoy_and_granule()
    args = (spec.shape, spec.spacing_a, spec.motors)
    with_it: list[dict] = []
    full = synth.generate_tomogram(*args, np.random.default_rng(seed), cells=spec.cells, objects=with_it)
    without_it: list[dict] = []
    ablated = synth.generate_tomogram(
        *args, np.random.default_rng(seed), cells=spec.cells, objects=without_it, without=[kind]
    )
    # the same objects in the same places (the random numbers are still drawn), the left-out kind marked
    assert [(o["kind"], o.get("zyx")) for o in with_it] == [(o["kind"], o.get("zyx")) for o in without_it]
    assert all(o.get("drawn", True) == (o["kind"] != kind) for o in without_it)
    # everything else matches up to the final contrast stretch; the left-out objects are gone
    assert np.corrcoef(full.ravel(), ablated.ravel())[0, 1] > 0.98
    voxel_nm = spec.spacing_a / 10.0
    for obj in (o for o in with_it if o["kind"] == kind):
        r = obj["radius_nm"] / voxel_nm if kind == "granule" else 2.0
        assert _darkness(full, obj["zyx"], r) > _darkness(ablated, obj["zyx"], r) + 10.0, obj
    # an undrawn object explains nothing
    entry = {"voxel_spacing": spec.spacing_a, "shape": list(spec.shape), "distractors": without_it}
    left_out = next(o for o in without_it if o["kind"] == kind)
    assert explain_point(entry, left_out["zyx"]) != kind
    with pytest.raises(ValueError, match="unknown look-alike"):
        synth.generate_tomogram(*args, np.random.default_rng(seed), cells=spec.cells, without=["vesicle"])


def test_dataset_without_granules_keeps_motors_and_notes_it(tmp_path: Path) -> None:
    synth.generate_dataset(tmp_path / "a", n_train=1, n_test=2, scale=0.1, seed=4)
    synth.generate_dataset(tmp_path / "b", n_train=1, n_test=2, scale=0.1, seed=4, without=["granule"])
    a = json.loads((tmp_path / "a" / "synth_meta.json").read_text())
    b = json.loads((tmp_path / "b" / "synth_meta.json").read_text())
    assert a.keys() == b.keys()
    for t in a:
        assert a[t]["motors"] == b[t]["motors"] and a[t]["shape"] == b[t]["shape"]
        assert "without" not in a[t] and b[t]["without"] == ["granule"]
    with pytest.raises(ValueError, match="unknown look-alike"):
        synth.generate_dataset(tmp_path / "c", n_train=1, n_test=0, scale=0.1, without=["ribosome"])


def test_dataset_meta_keeps_the_record(tmp_path: Path) -> None:
    synth.generate_dataset(tmp_path / "ds", n_train=2, n_test=2, scale=0.1, seed=3)
    meta = json.loads((tmp_path / "ds" / "synth_meta.json").read_text())
    assert len(meta) == 4
    for entry in meta.values():
        assert isinstance(entry["distractors"], list)
    assert sum(len(e["distractors"]) for e in meta.values()) > 0


ENTRY = {
    "shape": [40, 100, 120],
    "voxel_spacing": 100.0,
    "distractors": [
        {"kind": "granule", "zyx": [20.0, 50.0, 50.0], "radius_nm": 30.0},
        {"kind": "decoy", "zyx": [20.0, 50.0, 58.0], "radius_nm": 20.0},
        {"kind": "edge_band", "side": "x1", "width": 6},
    ],
}


@pytest.mark.parametrize(
    ("zyx", "kind"),
    [
        ([20, 50, 50], "granule"),  # the granule's centre
        ([20, 50, 47], "granule"),  # 300 A from the centre, inside the 300 A radius
        ([20, 50, 59], "decoy"),  # inside the decoy
        ([20, 50, 55], "decoy"),  # 100 A outside the decoy's surface, 200 A outside the granule's
        ([20, 50, 62], "decoy"),  # 200 A outside the decoy's surface
        ([20, 50, 65], "other"),  # 500 A outside the decoy's surface: beyond the 300 A margin
        ([20, 10, 112], "edge band"),  # 7 voxels from the x face: band of 6 + 3 voxels of slack
        ([20, 10, 100], "other"),
        ([20, 10, 5], "other"),  # no band on the x0 side
    ],
)
def test_explain_point(zyx, kind) -> None:
    assert explain_point(ENTRY, zyx) == kind
    assert kind in KINDS


def test_explain_point_margin_and_unrecorded() -> None:
    # 700 A from the decoy's centre = 500 A outside its 200 A radius
    assert explain_point(ENTRY, [20, 50, 65], margin_a=500.0) == "decoy"
    assert explain_point(ENTRY, [20, 50, 65], margin_a=499.0) == "other"
    assert explain_point({"shape": [1, 1, 1], "voxel_spacing": 10.0}, [0, 0, 0]) == "unrecorded"


def test_error_sources_counts_fp_and_misplaced_only() -> None:
    neg = {"shape": [40, 100, 120], "voxel_spacing": 100.0,
           "distractors": [{"kind": "granule", "zyx": [10.0, 30.0, 30.0], "radius_nm": 40.0}]}  # fmt: skip
    pos = {"shape": [40, 100, 120], "voxel_spacing": 100.0,
           "distractors": [{"kind": "decoy", "zyx": [20.0, 80.0, 80.0], "radius_nm": 20.0}]}  # fmt: skip
    meta = {"neg": neg, "neg2": neg, "pos": pos, "hit": pos, "abstain": pos}
    solution = pd.DataFrame(
        [["neg", -1, -1, -1, 100.0], ["neg2", -1, -1, -1, 100.0], ["pos", 20, 20, 20, 100.0],
         ["hit", 20, 20, 20, 100.0], ["abstain", 20, 20, 20, 100.0]],
        columns=["tomo_id", *AXES, "Voxel spacing"],
    )  # fmt: skip
    submission = pd.DataFrame(
        [["neg", 10, 31, 30], ["neg2", 30, 90, 60], ["pos", 20, 80, 81], ["hit", 20, 25, 25],
         ["abstain", -1, -1, -1]],
        columns=["tomo_id", *AXES],
    )  # fmt: skip
    out = error_sources(solution, submission, meta)
    assert out == {"false_positive": {"granule": 1, "other": 1}, "misplaced": {"decoy": 1}}
    assert format_sources(out["misplaced"]) == "decoy 1"
    assert format_sources({}) == "none"
    with pytest.raises(ValueError, match="ghost"):
        error_sources(solution, pd.concat([submission, pd.DataFrame([["ghost", 1, 1, 1]], columns=submission.columns)]),
                      meta)  # fmt: skip


def test_lookalikes_above_counts_every_candidate_near_each_object() -> None:
    entry = {"shape": [40, 100, 120], "voxel_spacing": 100.0,
             "distractors": [{"kind": "granule", "zyx": [10.0, 30.0, 30.0], "radius_nm": 40.0},  # 400 A
                             {"kind": "granule", "zyx": [10.0, 70.0, 70.0], "radius_nm": 20.0},
                             {"kind": "decoy", "zyx": [30.0, 50.0, 90.0], "radius_nm": 20.0},
                             {"kind": "granule", "zyx": [5.0, 5.0, 5.0], "radius_nm": 20.0, "drawn": False},
                             {"kind": "edge_band", "side": "x1", "width": 6}]}  # fmt: skip
    meta = {"a": entry, "b": entry}
    cands = {
        # the motor outscores the first granule, whose own candidate (7 voxels = 700 A from its centre:
        # 300 A outside its 400 A radius) still counts; the second granule's candidate is 800 A away
        "a": [
            (20.0, 20.0, 90.0, 0.9),
            (10.0, 30.0, 37.0, 0.6),
            (10.0, 70.0, 78.0, 0.7),
            (5.0, 5.0, 5.0, 0.9),
        ],
        # a candidate 301 A outside the first granule does not count; the decoy scores below the threshold
        "b": [(10.0, 30.0, 37.01, 0.8), (30.0, 50.0, 90.0, 0.49)],
    }
    assert lookalikes_above(cands, meta, 0.5) == {"granule": (1, 4), "decoy": (0, 2), "vesicle": (0, 0)}
    assert lookalikes_above(cands, meta, 0.4, kinds=("decoy",)) == {"decoy": (1, 2)}
    # a wider margin reaches the second granule (800 A = 200 A radius + 600 A) and "b"'s first one
    assert lookalikes_above(cands, meta, 0.5, margin_a=600.0)["granule"] == (3, 4)
    assert lookalikes_above(cands, meta, 0.5, margin_a=599.0)["granule"] == (2, 4)
    # a tomogram without candidates scores nothing, its objects still count as drawn
    assert lookalikes_above({}, meta, 0.0) == {"granule": (0, 4), "decoy": (0, 2), "vesicle": (0, 0)}
