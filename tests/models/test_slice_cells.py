"""The seed's slice-triplet plan for 2D members: which triplets run and which z cells each one fills."""

from __future__ import annotations

import pytest
import torch

from byu_motor.models import create_model
from byu_motor.models.slice_cells import seed_cells, slice_plan
from byu_motor.presets import get_preset

# submit_2d.py, worked by hand for 32 slices, 3-slice windows, 8 cells of 4 slices (scale 1/4): starts
# 0, 3, ..., 27 and the flush 29; e.g. start 6 spans cells 1.5..2.25, rounds to an empty range, and of floor
# 1 and round 2 the cell 1 ends closer (0.5 + 0.25 < 0.5 + 0.75).
SEED_32 = {0: 0, 3: 1, 6: 1, 9: 2, 12: 3, 15: 4, 18: 4, 21: 5, 24: 6, 27: 7, 29: 7}


def test_seed_plan_runs_non_overlapping_triplets_one_cell_each():
    starts, ranges = slice_plan("seed", 32, 3, 4)
    assert starts == list(SEED_32)
    assert ranges == [(c, c + 1) for c in SEED_32.values()]
    every, _ = slice_plan("every", 32, 3, 4)
    assert len(every) == 32 and len(starts) == 11  # the seed runs about a third of the triplets


def test_windows_a_multiple_of_12_deep_cut_the_seeds_global_triplets():
    # one 96-slice volume cut whole, or as two 48-slice windows: the same triplets fill the same cells
    whole = set(zip(*slice_plan("seed", 96, 3, 4)))
    halves = {
        (s + o, (lo + o // 4, hi + o // 4))
        for o in (0, 48)
        for s, (lo, hi) in zip(*slice_plan("seed", 48, 3, 4))
    }
    assert {s for s, _ in whole} == set(range(0, 94, 3)) and whole == halves
    assert get_preset("seed_maxvit_tiny_2d").infer.patch_size[0] % 12 == 0


@pytest.mark.parametrize("depth,cell_depth", [(16, 2), (40, 4), (13, 4), (24, 8), (3, 4), (2, 2)])
def test_every_cell_is_filled_and_windows_stay_inside(depth: int, cell_depth: int):
    cells = -(-depth // cell_depth)
    starts, ranges = slice_plan("seed", depth, 3, cell_depth)
    filled = {c for lo, hi in ranges for c in range(lo, hi)}
    assert filled == set(range(cells))
    assert all(0 <= s and (s + 3 <= depth or depth < 3 or s == 0) for s in starts)
    for s, (lo, hi) in zip(starts, ranges):  # a window fills the cells it overlaps (or its neighbour)
        assert lo * cell_depth - cell_depth < s + 3 and s < hi * cell_depth + cell_depth


def test_seed_cells_uses_round_half_to_even_and_the_grid_edge():
    assert seed_cells(0, 3, 0.5, 8) == (0, 2)  # 1.5 cells round to 2 (half to even)
    assert seed_cells(3, 6, 0.5, 8) == (1, 3)  # ends 1.5, 3: floor 1 fits better than round 2
    with pytest.raises(ValueError, match="do not fit"):
        seed_cells(38, 41, 0.25, 8)  # cells 9.5..10.25 lie past an 8-cell grid


def test_3d_call_seed_plan_averages_the_triplets_of_each_cell():
    torch.manual_seed(0)
    cfg = get_preset("tiny_2d").model
    cfg.stride = (4, 4, 4)
    model = create_model(cfg).eval()
    torch.nn.init.normal_(model.head[-1].weight, std=0.5)
    vol = torch.rand(1, 1, 32, 32, 32)
    calls = []
    model.forward2d = lambda x, f=model.forward2d: calls.append(x.shape[0]) or f(x)  # type: ignore[method-assign]
    with torch.no_grad():
        grid = model(vol)
        assert grid.shape == (1, 1, 8, 8, 8) and sum(calls) == 11
        per_start = {s: model.forward2d(vol[0, 0, s : s + 3][None]) for s in SEED_32}
        up = {
            s: torch.nn.functional.interpolate(v, scale_factor=2, mode="bilinear", align_corners=False)
            for s, v in per_start.items()
        }
    for cell in range(8):
        want = torch.stack([up[s] for s, c in SEED_32.items() if c == cell]).mean(0)[0, 0]
        torch.testing.assert_close(grid[0, 0, cell], want, atol=1e-5, rtol=1e-5)


def test_unknown_plan_is_refused():
    cfg = get_preset("tiny_2d").model
    cfg.slice_windows = "sometimes"
    with pytest.raises(ValueError, match="slice_windows"):
        create_model(cfg)
