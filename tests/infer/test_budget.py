"""Tests of the time-budget planner and the shedding ladder (fake clock: no sleeping)."""

from __future__ import annotations

import logging

import pytest

from byu_motor.config import InferConfig
from byu_motor.infer.budget import BudgetPlanner, PlanLevel, build_levels, level_cost, window_factor


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
