"""Tests for byu_motor.data.folds on the real label file: complete, balanced, deterministic, validated."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from byu_motor.data.folds import make_folds, read_folds, split_records, write_folds
from byu_motor.data.layout import read_labels


@pytest.fixture(scope="module")
def records(real_labels_csv):
    return read_labels(real_labels_csv)


def test_every_tomogram_in_one_fold_sizes_and_positive_rate_balanced(records):
    folds = make_folds(records, n_folds=5, seed=0)
    assert len(records) == 648
    assert set(folds) == set(records) and len(folds) == 648
    assert set(folds.values()) == {0, 1, 2, 3, 4}
    sizes = Counter(folds.values())
    assert max(sizes.values()) - min(sizes.values()) <= 1
    positives = Counter(folds[t] for t, r in records.items() if r.has_motor)
    n_pos = sum(r.has_motor for r in records.values())
    assert n_pos == 362
    assert max(positives.values()) - min(positives.values()) <= 2
    rates = [positives[f] / sizes[f] for f in range(5)]
    assert max(rates) - min(rates) < 0.03
    # the 13.1 A tomograms (the test-like spacing) are spread evenly too
    s131 = Counter(folds[t] for t, r in records.items() if round(r.spacing_a) == 13)
    assert max(s131.values()) - min(s131.values()) <= 2


def test_deterministic_and_seed_dependent(records):
    assert make_folds(records, seed=0) == make_folds(records, seed=0)
    assert make_folds(records, seed=0) != make_folds(records, seed=1)


def test_dataframe_input_gives_same_folds(records, real_labels_csv):
    frame = pd.read_csv(real_labels_csv)
    assert make_folds(frame, seed=3) == make_folds(records, seed=3)


def test_write_read_round_trip_and_validation(tmp_path, records):
    folds = make_folds(records, n_folds=4, seed=2)
    path = tmp_path / "folds.csv"
    write_folds(path, folds)
    assert path.read_text().splitlines()[0] == "tomo_id,fold"
    assert read_folds(path, known_ids=records) == folds
    with pytest.raises(ValueError, match="unknown tomo_id tomo_003acc"):
        read_folds(path, known_ids=[t for t in records if t != "tomo_003acc"])
    bad = tmp_path / "bad.csv"
    bad.write_text("tomo_id,fold\ntomo_a,1\ntomo_a,2\n")
    with pytest.raises(ValueError, match="tomo_a appears twice"):
        read_folds(bad)
    bad.write_text("tomo_id,fold\ntomo_b,x\n")
    with pytest.raises(ValueError, match="line 2.*tomo_b"):
        read_folds(bad)
    bad.write_text("id,fold\n")
    with pytest.raises(ValueError, match="header"):
        read_folds(bad)


def test_split_records(records):
    folds = make_folds(records, n_folds=5, seed=0)
    train, val = split_records(records, folds, 2)
    assert set(train).isdisjoint(val) and len(train) + len(val) == 648
    assert all(folds[t] == 2 for t in val)
    with pytest.raises(ValueError, match="tomo_"):
        split_records(records, {}, 0)
    assert np.isclose(len(val), 648 / 5, atol=1)
