"""Tests of the time-budget planner and the shedding ladder (fake clock: no sleeping)."""

from __future__ import annotations

import logging

import pytest

from byu_motor.config import InferConfig
from byu_motor.infer.budget import (
    DEFAULT_VOXELS,
    BudgetPlanner,
    PlanLevel,
    PredictionCut,
    build_levels,
    check_budget,
    check_stop,
    level_cost,
    stop_when,
    window_factor,
)
from byu_motor.infer.testset import listed_sizes, tomogram_shape


def test_ladder_order_and_costs() -> None:
    cfg = InferConfig(tta=("flip_z", "rot90"), overlap=0.5)
    levels = build_levels(cfg, ["a.pt", "b.pt", "c.pt"])
    names = [lv.name for lv in levels]
    assert names == [
        "tta=flip_z,rot90|models=3|overlap=0.5",
        "tta=flip_z|models=3|overlap=0.5",
        "tta=none|models=3|overlap=0.5",
        "tta=none|models=2|overlap=0.5",
        "tta=none|models=1|overlap=0.5",
        "tta=none|models=1|overlap=0.25",
        "tta=none|models=1|overlap=0",
    ]
    assert levels[1].shed == "TTA view 'rot90'"
    assert levels[3].shed == "ensemble member 'c.pt'" and levels[3].models == (0, 1)
    assert levels[6].shed == "overlap 0.25 -> 0"
    # views x models x windows: 3 views x 3 models x (1 / 0.5^3) windows
    assert levels[0].cost == pytest.approx(3 * 3 * 8)
    assert window_factor(0.0) == 1.0
    costs = [lv.cost for lv in levels]
    assert costs == sorted(costs, reverse=True) and len(set(costs)) == len(costs)


def test_extra_assumed_spacings_are_shed_first() -> None:
    cfg = InferConfig(tta=("flip_x",), overlap=0.0, scales=(1.0, 1.25, 0.8), scale_merge="lift")
    levels = build_levels(cfg, ["a.pt", "b.pt"])
    assert [lv.name for lv in levels] == [
        "tta=flip_x|models=2|overlap=0|scales=1,1.25,0.8",
        "tta=flip_x|models=2|overlap=0|scales=1,1.25",
        "tta=flip_x|models=2|overlap=0|scales=1",
        "tta=none|models=2|overlap=0|scales=1",
        "tta=none|models=1|overlap=0|scales=1",
    ]
    assert [lv.shed for lv in levels[1:3]] == ["assumed spacing x0.8", "assumed spacing x1.25"]
    assert [lv.scales for lv in levels] == [(1.0, 1.25, 0.8), (1.0, 1.25), (1.0,), (1.0,), (1.0,)]
    # a pass at s x the spacing resamples to s^3 the voxels: 2 views x 2 models x (1 + 1.953125 + 0.512)
    assert levels[0].cost == pytest.approx(2 * 2 * 3.465125)
    assert levels[1].cost == pytest.approx(2 * 2 * 2.953125) and levels[2].cost == pytest.approx(4.0)


def test_ladder_without_extras_is_one_level() -> None:
    levels = build_levels(InferConfig(tta=(), overlap=0.0), ["only.pt"])
    assert len(levels) == 1 and levels[0].cost == 1.0
    # identity is not a view to shed
    assert len(build_levels(InferConfig(tta=("identity",), overlap=0.0), ["m"])) == 1


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def simulate(total_s: float, n: int, levels: list[PlanLevel], unit_s: float) -> tuple[list, BudgetPlanner]:
    """Run the planner over n items whose time is exactly unit_s x cost of the chosen level."""
    clock = FakeClock()
    planner = BudgetPlanner(total_s, n, levels, safety=0.1, clock=clock, on_change=lambda lvl, msg: None)
    chosen = []
    for _ in range(n):
        level = planner.next_level()
        chosen.append(level)
        if level is None:
            break
        seconds = unit_s * levels[level].cost
        clock.t += seconds
        planner.record(level, seconds)
    return chosen, planner


LEVELS = [PlanLevel("full", 4.0), PlanLevel("half", 2.0), PlanLevel("min", 1.0)]


def test_ample_budget_keeps_full_level() -> None:
    chosen, planner = simulate(total_s=1000, n=20, levels=LEVELS, unit_s=1.0)  # needs 80 s
    assert chosen == [0] * 20 and planner.changes == []


def test_tight_budget_sheds_and_fits() -> None:
    # 20 items: full = 80 s, min = 20 s. With 50 s the planner must shed but can finish every item.
    chosen, planner = simulate(total_s=50, n=20, levels=LEVELS, unit_s=1.0)
    assert None not in chosen
    assert chosen[0] == 0 and max(chosen) >= 1
    used = sum(LEVELS[lv].cost for lv in chosen)
    assert used <= 50
    assert "shedding" in planner.changes[0]
    # each later change is either a further shed or a restore once the projection has room again
    assert all("shedding" in m or "restoring" in m for m in planner.changes)


def test_impossible_budget_stops_before_deadline() -> None:
    chosen, planner = simulate(total_s=10, n=20, levels=LEVELS, unit_s=1.0)
    assert chosen[-1] is None
    predicted = [c for c in chosen if c is not None]
    assert sum(LEVELS[lv].cost for lv in predicted) <= 10
    assert 2 <= len(predicted) < 20 and planner.stopped


def test_warmup_outlier_does_not_shed_forever() -> None:
    clock = FakeClock()
    planner = BudgetPlanner(100, 20, LEVELS, safety=0.05, clock=clock, on_change=lambda lvl, msg: None)
    times = [20.0] + [1.0 * LEVELS[0].cost] * 3  # first tomogram pays a 20 s warm-up
    levels_used = []
    for k in range(19):
        level = planner.next_level()
        levels_used.append(level)
        seconds = times[k] if k < len(times) else LEVELS[level].cost * 1.0
        clock.t += seconds
        planner.record(level, seconds)
    # 20 items x 4 s = 80 s + warm-up does not fit 100 s at full: it sheds, but not to the end forever
    assert max(levels_used) >= 1
    assert levels_used[-1] is not None


def test_logs_a_warning_when_shedding(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    levels = build_levels(InferConfig(tta=("flip_z",), overlap=0.0), ["m.pt"])
    planner = BudgetPlanner(10, 10, levels, safety=0.1, clock=clock)
    with caplog.at_level(logging.WARNING):
        level = planner.next_level()
        clock.t += 2.0
        planner.record(level, 2.0)
        assert planner.next_level() == 1
    assert "shedding TTA view 'flip_z'" in caplog.text


def test_level_cost_scales() -> None:
    assert level_cost(("a", "b"), 2, 0.0) == 6
    assert level_cost((), 1, 0.5) == pytest.approx(8.0)
    assert level_cost((), 1, 0.0, (1.0, 2.0)) == pytest.approx(9.0)


# ---------------------------------------------------------------------------------------------------------
# Size-aware planning, the pessimistic prior, cutting short, budget validation.

SMALL, HUGE = 1_000.0, 200_000.0  # voxels
RATE = 1e-7  # true seconds per voxel per unit cost (below the planner's prior of 1e-6)
LADDER = [PlanLevel("full", 6.0), PlanLevel("mid", 2.0), PlanLevel("min", 1.0)]


def run_sized(
    sizes: list[float], total_s: float, warmup_s: float = 0.0, batches: int = 10
) -> tuple[FakeClock, BudgetPlanner, list[int | None]]:
    """Plan ``sizes`` on a fake clock: a tomogram takes RATE x voxels x cost (+ warm-up on the first), slept
    in ``batches`` steps with a cut check before each, as the sliding window does."""
    clock = FakeClock()
    planner = BudgetPlanner(total_s, len(sizes), LADDER, clock=clock, on_change=lambda *a: None, sizes=sizes)
    chosen: list[int | None] = []
    for k, voxels in enumerate(sizes):
        level = planner.next_level(voxels)
        chosen.append(level)
        if level is None:
            break
        t0 = clock.t
        seconds = RATE * voxels * LADDER[level].cost + (warmup_s if k == 0 else 0.0)
        try:
            for _ in range(batches):
                if planner.should_stop():
                    raise PredictionCut("deadline")
                clock.t += seconds / batches
        except PredictionCut:
            planner.record_cut(f"t{k}")
            continue
        planner.record(level, clock.t - t0, voxels)
    return clock, planner, chosen


ORDERS = {
    "small_then_huge": [SMALL] * 8 + [HUGE] * 4,
    "huge_first": [HUGE] * 4 + [SMALL] * 8,
    "alternating": [SMALL, HUGE] * 6,
}


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_sizes_in_adversarial_order_stay_inside_the_budget(order: str) -> None:
    sizes = ORDERS[order]
    cheapest, richest = RATE * sum(sizes), RATE * sum(sizes) * 6.0
    total = 0.5 * richest  # the richest level does not fit, the cheapest easily does
    assert cheapest < 0.5 * total
    clock, planner, chosen = run_sized(sizes, total)
    assert clock.t <= planner.total_s - planner.reserve_s
    assert None not in chosen and planner.cut == 0 and planner.done == len(sizes)
    # nothing measured yet and a pessimistic prior: the first tomogram calibrates at the cheapest level
    assert chosen[0] == len(LADDER) - 1
    # the budget is then put to use: some tomogram runs richer than the cheapest level
    assert min(chosen) < len(LADDER) - 1  # type: ignore[type-var]


def test_generous_budget_runs_the_first_tomogram_at_the_richest_level() -> None:
    sizes = ORDERS["huge_first"]
    # the prior (1e-6 s per voxel and cost) times every voxel at the richest level, with room to spare
    clock, planner, chosen = run_sized(sizes, total_s=2.0 * 1e-6 * sum(sizes) * 6.0)
    assert chosen == [0] * len(sizes) and planner.changes == []


def test_slow_first_tomogram_warm_up_keeps_the_budget() -> None:
    sizes = [SMALL] * 3 + [HUGE] * 3 + [SMALL] * 3
    total = 0.5 * RATE * sum(sizes) * 6.0
    clock, planner, chosen = run_sized(sizes, total, warmup_s=0.25 * total)
    assert clock.t <= planner.total_s - planner.reserve_s
    # the warm-up is left out of the worst rate once three tomograms are measured: the run goes on
    assert planner.done == len(sizes) and planner.cut == 0 and None not in chosen


def test_a_tomogram_slower_than_measured_is_cut_and_nothing_starts_after() -> None:
    clock = FakeClock()
    sizes = [SMALL] * 5
    planner = BudgetPlanner(1.0, 5, LADDER, clock=clock, on_change=lambda *a: None, sizes=sizes)
    level = planner.next_level(SMALL)
    clock.t += 0.01
    planner.record(level, 0.01, SMALL)
    assert planner.next_level(SMALL) is not None and not planner.should_stop()
    clock.t = planner.deadline()  # this tomogram is far slower than any before: the deadline arrives
    assert planner.should_stop()
    planner.record_cut("t1")
    assert planner.cut == 1 and planner.stopped and planner.next_level(SMALL) is None
    assert "cut short" in planner.changes[-1]


def test_stop_when_makes_check_stop_raise_only_inside() -> None:
    flag = [False]
    with stop_when(lambda: flag[0]):
        check_stop()  # not yet
        flag[0] = True
        with pytest.raises(PredictionCut):
            check_stop()
    check_stop()  # outside: no deadline applies


def test_sliding_window_checks_should_stop_between_batches() -> None:
    import numpy as np
    import torch

    from byu_motor.data.normalize import Normalizer
    from byu_motor.infer.sliding import SlidingWindow

    calls = []

    class Model(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape[0])
            return x[:, :, ::2, ::2, ::2]

    volume = np.full((16, 16, 16), 100, dtype=np.uint8)
    sw = SlidingWindow(patch_size=8, overlap=0.0, batch_windows=2, should_stop=lambda: len(calls) >= 1)
    with pytest.raises(PredictionCut):
        sw(Model().eval(), volume, 2, Normalizer())
    assert calls == [2]  # 8 windows in batches of 2: the first batch ran, then the cut
    calls.clear()
    logits = SlidingWindow(patch_size=8, overlap=0.0, batch_windows=2)(
        Model().eval(), volume, 2, Normalizer()
    )
    assert len(calls) == 4 and tuple(logits.shape) == (8, 8, 8)


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), float("-inf"), "soon"])
def test_unusable_budgets_are_refused_naming_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(")):
        check_budget(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time budget"):
        BudgetPlanner(bad, 3, LADDER)  # type: ignore[arg-type]
    assert check_budget(None) is None and check_budget(12) == 12.0


def test_tomogram_shape_reads_only_the_listing_and_a_header(tmp_path) -> None:
    import numpy as np

    from byu_motor.data.io import write_tomogram

    write_tomogram(np.zeros((5, 12, 20), dtype=np.uint8), tmp_path / "t")
    assert tomogram_shape(tmp_path / "t") == (5, 12, 20)
    assert tomogram_shape(tmp_path / "missing") is None
    # an unknown size counts as the largest known one, or the pessimistic default when none is known
    assert listed_sizes([tmp_path / "t", tmp_path / "missing"]) == [1200.0, 1200.0]
    assert listed_sizes([tmp_path / "missing"]) == [float(DEFAULT_VOXELS)]


def test_members_with_their_own_views_cost_what_they_run():
    # the seed's three members: two views each, no implicit identity (kernels/recipes/seed_3d.json)
    own = [("flip_z", "rot90+flip_z"), ("flip_x", "flip_y"), ("identity", "rot90")]
    union = tuple(dict.fromkeys(v for views in own for v in views))
    cfg = InferConfig(tta=union, tta_identity=False, overlap=0.0)
    levels = build_levels(cfg, ["r.pt", "d.pt", "x.pt"], own)
    assert "identity" in levels[0].tta  # an explicit view: the X3D member keeps it at level 0
    assert levels[0].cost == 6  # 3 members x 2 views, not 3 x the 6 views of the union
    # views are shed from the end of the union: rot90 (X3D left with identity), then identity (X3D runs
    # identity alone, so the cost does not drop), then the DenseNet's y flip ...
    assert [lv.cost for lv in levels[:4]] == [6, 5, 5, 4]
    # members without their own list run every view of the level, identity implicit: the old cost
    plain = InferConfig(tta=("flip_z", "rot90"), overlap=0.25)
    with_none = build_levels(plain, ["a.pt", "b.pt"], [None, None])
    assert [lv.cost for lv in with_none] == [lv.cost for lv in build_levels(plain, ["a.pt", "b.pt"])]
    # implicit identity: one member listing one view runs 2, the other listing none runs all 3
    mixed = build_levels(plain, ["a.pt", "b.pt"], [("flip_z",), None])
    assert mixed[0].cost == pytest.approx((2 + 3) * window_factor(0.25))
