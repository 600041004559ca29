"""Label readers: the seed's tables and external lists (real files), format detection, file:line errors."""

from __future__ import annotations

import numpy as np
import pytest

from byu_motor.data.label_formats import (
    EXTERNAL_LIST_GRID,
    detect_format,
    read_grid_list,
    read_label_file,
    read_z_list,
    rescale_motors,
)
from byu_motor.data.layout import LabelError
from tests.conftest import SEED_LABELS

SEED = SEED_LABELS


def _counts(records):
    return len(records), sum(r.has_motor for r in records.values()), sum(r.n_motors for r in records.values())


def test_gt_v3_counts():
    records = read_label_file(SEED / "processed" / "gt_v3.csv")
    assert _counts(records) == (648, 426, 577)
    rec = records["tomo_00e047"]
    assert rec.shape == (300, 959, 928) and rec.spacing_a == 15.6
    np.testing.assert_allclose(rec.motors, [[169.0, 546.0, 603.0]])


def test_external_gt_counts():
    records = read_label_file(SEED / "processed" / "external_gt.csv")
    assert _counts(records) == (1287, 1287, 1668)


def test_gt_keeps_the_official_count_and_matches_the_official_file(real_labels_csv):
    wide = read_label_file(SEED / "processed" / "gt.csv")
    official = read_label_file(real_labels_csv)
    assert wide == official  # same shapes, spacings, motors and Number of motors (ori_num_motors)


def test_train_labels_v2_reads_as_official_and_equals_gt_v2():
    assert detect_format(SEED / "processed" / "train_labels_v2.csv") == "official"
    long = read_label_file(SEED / "processed" / "train_labels_v2.csv")
    wide = read_label_file(SEED / "processed" / "gt_v2.csv")
    assert _counts(long) == (648, 417, 523)
    assert {t: r.motors.tolist() for t, r in long.items()} == {t: r.motors.tolist() for t, r in wide.items()}


def test_external_lists():
    path = SEED / "external" / "brendanartley_external_labels.csv"
    assert detect_format(path) == "grid_list"
    grid = read_grid_list(path)
    assert len(grid) == 1288 and sum(len(m) for m in grid.values()) == 1617
    records = read_label_file(path)
    assert records["aba2013-04-06-10"].shape == EXTERNAL_LIST_GRID and np.isnan(
        records["aba2013-04-06-10"].spacing_a
    )
    zs = read_z_list(SEED / "external" / "tatamikenn_irregular_labels.csv")  # its header follows a blank line
    assert len(zs) == 62 and sum(len(v) for v in zs.values()) == 71 and set(zs) <= set(grid)
    with pytest.raises(LabelError, match="z only|gives no y, x"):
        read_label_file(SEED / "external" / "tatamikenn_irregular_labels.csv")


def test_grid_list_mapped_into_the_seed_grid_lands_within_the_hit_radius_of_its_refined_motors():
    ext = read_label_file(SEED / "processed" / "external_gt.csv")
    path = SEED / "external" / "brendanartley_external_labels.csv"
    shapes = {t: (r.shape, r.spacing_a) for t, r in ext.items()}
    with pytest.raises(
        LabelError, match="mba2011-07-18-1 has no shape"
    ):  # the run the seed found no volume for
        read_label_file(path, shapes=shapes)
    shapes["mba2011-07-18-1"] = (EXTERNAL_LIST_GRID, 16.0)
    mapped = read_label_file(path, shapes=shapes)
    dist_a = []
    for tid, rec in ext.items():
        d = np.linalg.norm(mapped[tid].motors[:, None] - rec.motors[None], axis=-1).min(axis=1)
        dist_a += (d * rec.spacing_a).tolist()
    assert len(dist_a) == 1616 and max(dist_a) <= 1000  # the refined labels kept every listed motor
    assert np.median(dist_a) > 16  # but not at the listed points: the model's coordinates replaced them


def test_rescale_round_trip():
    pts = np.array([[0.0, 0.0, 0.0], [127.0, 511.0, 511.0], [10.5, 20.25, 300.0]])
    there = rescale_motors(pts, (128, 512, 512), (300, 959, 928))
    np.testing.assert_allclose(rescale_motors(there, (300, 959, 928), (128, 512, 512)), pts)
    assert there[0, 0] < 1.0 and there[1, 0] > 298.0


WIDE_HEADER = "tomo_id,Z,Y,X,voxel_spacing,num_motors,motor_z,motor_y,motor_x,motor_zyx\n"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ('t1,10,20,30,15.0,1,1,2,3,"[[1, 2, 3]]"\nt2,10,20,30,abc,0,-1,-1,-1,[]\n', "line 3.*voxel_spacing"),
        ('t1,10,20,30,15.0,2,1,2,3,"[[1, 2, 3]]"\n', "line 2.*num_motors is 2"),
        ('t1,10,20,30,15.0,1,1,2,3,"[[1, 2]]"\n', "line 2.*not a list"),
        ('t1,10,20,30,15.0,1,1,2,3,"[[11, 2, 3]]"\n', "line 2.*outside"),
        ("t1,10,20,30,15.0,0,-1,-1,-1,[]\nt1,10,20,30,15.0,0,-1,-1,-1,[]\n", "line 3.*appears again"),
    ],
)
def test_wide_bad_rows_name_file_and_line(tmp_path, row, reason):
    path = tmp_path / "gt.csv"
    path.write_text(WIDE_HEADER + row)
    with pytest.raises(LabelError, match=f"gt.csv:{reason.replace('line ', '')}"):
        read_label_file(path)


def test_unknown_header_is_named(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(LabelError, match="x.csv: unknown label format"):
        read_label_file(path)


def test_the_seed_split_file_holds_out_single_motor_tomograms_in_four_folds():
    """The seed's cv/v3/skf4_rd42.json through ``held_out_ids``: 141-145 validation tomograms per fold (SEED_RECIPE
    5.7), disjoint, all of them gt_v3 tomograms with at most one motor (multi-motor ones always train)."""
    from byu_motor.data.folds import held_out_ids

    records = read_label_file(SEED / "processed" / "gt_v3.csv")
    folds = [held_out_ids(SEED / "cv" / "v3" / "skf4_rd42.json", k) for k in range(4)]
    assert [141 <= len(f) <= 145 for f in folds] == [True] * 4
    assert len(set().union(*folds)) == sum(len(f) for f in folds)
    held = set().union(*folds)
    assert held <= set(records) and all(len(records[t].motors) <= 1 for t in held)
    assert sum(len(r.motors) > 1 for r in records.values()) == 79 and len(held) == 648 - 79
