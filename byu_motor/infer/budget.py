"""Time budget: plan levels of inference extras and shed them (extra spacings, TTA, members, overlap) in time."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from byu_motor.config import InferConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanLevel:
    """One way to predict a tomogram, from the richest (level 0) to the cheapest.

    Args:
        name: short label for logs and summaries, e.g. ``"tta=flip_z|models=2|overlap=0.25"``.
        cost: relative cost per tomogram, ~ TTA views x models x windows (only ratios matter).
        tta: TTA view names used at this level (identity is implicit).
        models: indices of the ensemble members (checkpoints) used.
        overlap: sliding-window overlap.
        shed: what this level drops compared with the level before it (for the warning).
        scales: assumed spacings (``InferConfig.scales``) used at this level.
    """

    name: str
    cost: float
    tta: tuple[str, ...] = ()
    models: tuple[int, ...] = (0,)
    overlap: float = 0.25
    shed: str = ""
    scales: tuple[float, ...] = (1.0,)


def _views(tta: Sequence[str]) -> int:
    """Views evaluated per model: identity plus each distinct other view (as ``infer.tta.get_views``)."""
    return 1 + len({name for name in tta if name != "identity"})


def window_factor(overlap: float) -> float:
    """Relative number of 3D sliding windows at ``overlap`` (step ``1 - overlap`` on three axes)."""
    return 1.0 / (1.0 - min(max(float(overlap), 0.0), 0.95)) ** 3


def level_cost(tta: Sequence[str], n_models: int, overlap: float, scales: Sequence[float] = (1.0,)) -> float:
    """Relative cost of one tomogram: views x models x windows x voxels over the assumed spacings.

    An assumed spacing ``s`` times the given one resamples the tomogram to ``s ** 3`` times the voxels.
    """
    return _views(tta) * n_models * window_factor(overlap) * sum(float(s) ** 3 for s in scales)


def build_levels(config: InferConfig, model_names: Sequence[str]) -> list[PlanLevel]:
    """The shedding ladder for ``config``: extra spacings -> TTA views -> ensemble members -> overlap.

    Extra assumed spacings (``scales`` after the first) go first, last-listed first: each costs a whole pass
    over ``s ** 3`` the voxels. Then TTA views are dropped last-listed first, ensemble members last-listed
    first (list the most valuable checkpoint first), then the overlap is halved and finally set to 0.

    Args:
        config: inference settings (``scales``, ``tta``, ``overlap``).
        model_names: one name per ensemble member (e.g. checkpoint file names), in priority order.

    Returns:
        Levels, richest first; level 0 is exactly ``config``.
    """
    if not model_names:
        raise ValueError("build_levels needs at least one model")
    tta = [name for name in dict.fromkeys(config.tta) if name != "identity"]
    models = list(range(len(model_names)))
    overlap = float(config.overlap)
    scales = [float(v) for v in config.scales]
    several = len(scales) > 1  # names carry the spacings only when there is a choice

    def make(shed: str) -> PlanLevel:
        name = f"tta={','.join(tta) or 'none'}|models={len(models)}|overlap={overlap:g}"
        if several:
            name += f"|scales={','.join(f'{v:g}' for v in scales)}"
        cost = level_cost(tta, len(models), overlap, scales)
        return PlanLevel(name, cost, tuple(tta), tuple(models), overlap, shed, tuple(scales))

    levels = [make("")]
    while len(scales) > 1:
        dropped_scale = scales.pop()
        levels.append(make(f"assumed spacing x{dropped_scale:g}"))
    while tta:
        dropped = tta.pop()
        levels.append(make(f"TTA view {dropped!r}"))
    while len(models) > 1:
        dropped_model = models.pop()
        levels.append(make(f"ensemble member {model_names[dropped_model]!r}"))
    steps = [overlap / 2] if overlap / 2 >= 0.1 else []
    for lower in [*steps, 0.0] if overlap > 0 else []:
        before, overlap = overlap, lower
        levels.append(make(f"overlap {before:g} -> {lower:g}"))
    return levels


class BudgetPlanner:
    """Choose, before each tomogram, the richest level whose projected remaining time fits the budget.

    The time per tomogram at a level is estimated from measurements: the median at that level once it has
    been seen three times, else the median of all measurements rescaled by the cost ratio of the levels
    (the median ignores the slow first tomogram, which pays for CUDA warm-up). A level fits when::

        elapsed + remaining_tomograms * estimate(level) + safety * total + slowest_tomogram <= total

    and, as a hard stop, a tomogram starts only if ``elapsed + worst(level) <= total - reserve`` where
    ``worst`` is the slowest measured time per unit cost times the level's cost. When even the cheapest
    level cannot start, :meth:`next_level` returns ``None``: the caller stops and writes ``-1`` rows.

    Args:
        total_s: the budget in seconds, counted from ``start`` (default: now).
        n_items: tomograms to predict.
        levels: from the richest to the cheapest (see :func:`build_levels`).
        safety: fraction of ``total_s`` kept in reserve by the projection.
        reserve_s: time kept after the last tomogram (writing the submission); default
            ``min(60, 0.1 * total_s)``.
        clock: monotonic clock in seconds (injectable for tests).
        start: clock value at which the budget started (default: ``clock()`` now).
        on_change: called with a message whenever the level changes (default: a log warning/info).
    """

    def __init__(
        self,
        total_s: float,
        n_items: int,
        levels: Sequence[PlanLevel],
        safety: float = 0.1,
        reserve_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
        on_change: Callable[[int, str], None] | None = None,
    ):
        if not levels:
            raise ValueError("BudgetPlanner needs at least one level")
        if total_s <= 0:
            raise ValueError(f"time budget must be positive, got {total_s}")
        self.total_s = float(total_s)
        self.n_items = int(n_items)
        self.levels = list(levels)
        self.safety = float(safety)
        self.reserve_s = min(60.0, 0.1 * self.total_s) if reserve_s is None else float(reserve_s)
        self.clock = clock
        self.start = clock() if start is None else float(start)
        self.on_change = on_change or (lambda lvl, msg: log.log(lvl, msg))
        self.observed: list[tuple[int, float]] = []  # (level, seconds) per predicted tomogram
        self.done = 0
        self.level = 0
        self.changes: list[str] = []
        self.stopped = False

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return self.clock() - self.start

    def _rates(self) -> list[float]:
        return [t / self.levels[lv].cost for lv, t in self.observed]

    def estimate(self, level: int) -> float | None:
        """Expected seconds per tomogram at ``level`` (``None`` before any measurement)."""
        own = [t for lv, t in self.observed if lv == level]
        if len(own) >= 3:
            return statistics.median(own[-9:])
        rates = self._rates()
        if not rates:
            return None
        return statistics.median(rates[-9:]) * self.levels[level].cost

    def worst(self, level: int) -> float:
        """Pessimistic seconds for one tomogram at ``level`` (0 before any measurement)."""
        rates = self._rates()
        return max(rates) * self.levels[level].cost if rates else 0.0

    def margin(self) -> float:
        """Time the projection keeps free: ``safety * total`` plus the slowest tomogram seen."""
        slowest = max((t for _, t in self.observed), default=0.0)
        return self.safety * self.total_s + slowest

    def fits(self, level: int, remaining: int, factor: float = 1.0) -> bool:
        """Whether ``remaining`` tomograms at ``level`` (``factor`` x the estimate) end inside the budget."""
        est = self.estimate(level)
        if est is None:
            return True
        return self.elapsed() + remaining * est * factor + self.margin() <= self.total_s

    def can_start(self, level: int) -> bool:
        """Hard stop: whether one more tomogram at ``level`` ends before ``total - reserve``."""
        return self.elapsed() + self.worst(level) <= self.total_s - self.reserve_s

    def next_level(self) -> int | None:
        """The level for the next tomogram, or ``None`` when no level can finish it in time."""
        remaining = max(1, self.n_items - self.done)
        # Going back to a richer level asks for 15% slack, so the plan does not flap between two levels.
        chosen = next(
            (
                lv
                for lv in range(len(self.levels))
                if self.fits(lv, remaining, 1.15 if lv < self.level else 1.0)
            ),
            len(self.levels) - 1,
        )
        while chosen < len(self.levels) and not self.can_start(chosen):
            chosen += 1
        if chosen >= len(self.levels):
            if not self.stopped:
                self.stopped = True
                msg = (
                    f"time budget: stopping after {self.done} of {self.n_items} tomograms: "
                    f"{self.elapsed():.1f} s of {self.total_s:.1f} s used and even the cheapest level needs "
                    f"~{self.worst(len(self.levels) - 1):.1f} s; the rest get -1 rows"
                )
                self.changes.append(msg)
                self.on_change(logging.WARNING, msg)
            return None
        if chosen != self.level:
            self._announce(chosen, remaining)
            self.level = chosen
        return chosen

    def _announce(self, new: int, remaining: int) -> None:
        old = self.level
        est_old = self.estimate(old) or 0.0
        left = self.total_s - self.elapsed()
        if new > old:
            dropped = "; ".join(self.levels[k].shed or self.levels[k].name for k in range(old + 1, new + 1))
            msg = (
                f"time budget: shedding {dropped} (level {old} -> {new}: {self.levels[new].name}): "
                f"{remaining} tomograms x ~{est_old:.1f} s at level {old} + {self.margin():.1f} s margin "
                f"exceed the {left:.1f} s left"
            )
            level = logging.WARNING
        else:
            msg = (
                f"time budget: restoring level {new} ({self.levels[new].name}): {remaining} tomograms now "
                f"fit in the {left:.1f} s left"
            )
            level = logging.INFO
        self.changes.append(msg)
        self.on_change(level, msg)

    def record(self, level: int, seconds: float) -> None:
        """Record the wall time of one predicted tomogram at ``level``."""
        self.observed.append((int(level), float(seconds)))
        self.done += 1

    def skip(self) -> None:
        """Count a tomogram that needed no prediction (e.g. unreadable) as done."""
        self.done += 1
