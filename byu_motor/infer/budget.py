"""Time budget: plan levels of inference extras and shed them (extra spacings, TTA, members, overlap) in time."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from byu_motor.config import InferConfig

log = logging.getLogger(__name__)

# Seconds per voxel per unit level cost assumed before anything is measured. Pessimistic on purpose (a T4 runs
# a cost-1 pass over a 300 x 959 x 928 tomogram in well under the 270 s this predicts): with a real budget
# the first tomogram then runs at the cheapest level and calibrates the planner.
PRIOR_S_PER_VOXEL = 1e-6
# Voxels assumed for a tomogram whose size is unknown and no other size is known (a large Kaggle tomogram).
DEFAULT_VOXELS = 800 * 1000 * 1000
RECENT = 9  # measurements the rate estimates look back on


class PredictionCut(Exception):
    """Raised between window batches when the deadline nears: the tomogram in progress is abandoned."""


_SHOULD_STOP: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "byu_motor_should_stop", default=None
)


@contextlib.contextmanager
def stop_when(should_stop: Callable[[], bool] | None) -> Iterator[None]:
    """While inside, :func:`check_stop` (called by the sliding window between batches) asks ``should_stop``.

    A context variable, so the predictor between the worker loop and the sliding window needs no new argument.
    """
    token = _SHOULD_STOP.set(should_stop)
    try:
        yield
    finally:
        _SHOULD_STOP.reset(token)


def check_stop() -> None:
    """Raise :class:`PredictionCut` when the ``should_stop`` of the enclosing :func:`stop_when` says so."""
    should_stop = _SHOULD_STOP.get()
    if should_stop is not None and should_stop():
        raise PredictionCut("time budget: deadline reached, tomogram cut short")


def check_budget(total_s: float | None) -> float | None:
    """``total_s`` as a float when it is a usable time budget (finite, > 0) or ``None``.

    Raises:
        ValueError: naming the value, for 0, negative, NaN or infinite budgets.
    """
    if total_s is None:
        return None
    try:
        value = float(total_s)
    except (TypeError, ValueError):
        raise ValueError(f"time budget must be a number of seconds, got {total_s!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"time budget must be a finite number of seconds > 0, got {total_s!r}")
    return value


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


def members_cost(
    level_tta: Sequence[str],
    member_views: Sequence[Sequence[str] | None],
    add_identity: bool,
    overlap: float,
    scales: Sequence[float] = (1.0,),
) -> float:
    """Relative cost of one tomogram when each member runs its own views (``InferConfig.members``).

    A member runs the views of its own list that ``level_tta`` still holds (``None``: all of ``level_tta``),
    plus identity when ``add_identity``; without it, a member left with no view runs identity alone.
    """
    kept = set(level_tta)
    views = 0
    for own in member_views:
        names = [v for v in (level_tta if own is None else own) if v in kept]
        views += _views(names) if add_identity else max(1, len(set(names)))
    return views * window_factor(overlap) * sum(float(s) ** 3 for s in scales)


def build_levels(
    config: InferConfig,
    model_names: Sequence[str],
    member_views: Sequence[Sequence[str] | None] | None = None,
) -> list[PlanLevel]:
    """The shedding ladder for ``config``: extra spacings -> TTA views -> ensemble members -> overlap.

    Extra assumed spacings (``scales`` after the first) go first, last-listed first: each costs a whole pass
    over ``s ** 3`` the voxels. Then TTA views are dropped last-listed first, ensemble members last-listed
    first (list the most valuable checkpoint first), then the overlap is halved and finally set to 0.

    Args:
        config: inference settings (``scales``, ``tta``, ``overlap``, ``tta_identity``).
        model_names: one name per ensemble member (e.g. checkpoint file names), in priority order.
        member_views: each member's own views (``InferConfig.members[...]["tta"]``; ``None``: all of
            ``config.tta``), so a level costs what the members really run (:func:`members_cost`). With
            ``config.tta_identity`` off, identity is a view like the others: listed, costed and shed.

    Returns:
        Levels, richest first; level 0 is exactly ``config``.
    """
    if not model_names:
        raise ValueError("build_levels needs at least one model")
    implicit = config.tta_identity  # identity always runs, so it is neither listed nor shed
    tta = [name for name in dict.fromkeys(config.tta) if not (implicit and name == "identity")]
    models = list(range(len(model_names)))
    own = list(member_views) if member_views is not None else [None] * len(model_names)
    overlap = float(config.overlap)
    scales = [float(v) for v in config.scales]
    several = len(scales) > 1  # names carry the spacings only when there is a choice

    def make(shed: str) -> PlanLevel:
        name = f"tta={','.join(tta) or 'none'}|models={len(models)}|overlap={overlap:g}"
        if several:
            name += f"|scales={','.join(f'{v:g}' for v in scales)}"
        if member_views is None and implicit:
            cost = level_cost(tta, len(models), overlap, scales)
        else:
            cost = members_cost(tta, [own[m] for m in models], implicit, overlap, scales)
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


def default_reserve(total_s: float) -> float:
    """Seconds a budget of ``total_s`` keeps after the last tomogram (writing the submission): 10 %, at most 60."""
    return min(60.0, 0.1 * total_s)


class BudgetPlanner:
    """Choose, before each tomogram, the richest level whose projected remaining work fits the budget.

    Time is modelled as ``rate x voxels x level cost``: ``rate`` (seconds per voxel per unit cost) is the
    median of the recent measurements (of the level itself once it has three, else of every level), or the
    pessimistic prior ``prior_s_per_voxel`` before anything is measured. With ``V`` the voxels of this
    tomogram and of every later one (``sizes``), a level fits when::

        elapsed + (1 + safety) * rate(level) * V * cost(level) <= total - reserve

    As a hard stop, a tomogram starts only if ``elapsed + worst <= total - reserve`` where ``worst`` is the
    highest recent rate (the warm-up of the first measurement left out once there are three) times its voxels
    and the level's cost. Before any measurement the cheapest level always may start: it calibrates the
    rate, and :meth:`should_stop` cuts it short if it nears the deadline. When no level can start,
    :meth:`next_level` returns ``None``: the caller stops and writes ``-1`` rows.

    Args:
        total_s: the budget in seconds, counted from ``start`` (default: now).
        n_items: tomograms to predict.
        levels: from the richest to the cheapest (see :func:`build_levels`).
        safety: fraction of the projected remaining time kept free.
        reserve_s: time kept after the last tomogram (writing the submission); default
            ``min(60, 0.1 * total_s)``.
        clock: monotonic clock in seconds (injectable for tests).
        start: clock value at which the budget started (default: ``clock()`` now).
        on_change: called with a message whenever the level changes (default: a log warning/info).
        sizes: voxels of each tomogram in order (from the folder listing); default 1 each.
        prior_s_per_voxel: rate assumed before the first measurement (default :data:`PRIOR_S_PER_VOXEL`).
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
        sizes: Sequence[float] | None = None,
        prior_s_per_voxel: float = PRIOR_S_PER_VOXEL,
    ):
        if not levels:
            raise ValueError("BudgetPlanner needs at least one level")
        self.total_s = check_budget(total_s) or 0.0
        self.n_items = int(n_items)
        self.levels = list(levels)
        self.safety = float(safety)
        self.reserve_s = default_reserve(self.total_s) if reserve_s is None else float(reserve_s)
        self.clock = clock
        self.start = clock() if start is None else float(start)
        self.on_change = on_change or (lambda lvl, msg: log.log(lvl, msg))
        self.sizes = [float(v) for v in sizes] if sizes is not None else [1.0] * self.n_items
        self.sizes += [max(self.sizes, default=1.0)] * (self.n_items - len(self.sizes))
        self._after = [0.0] * (len(self.sizes) + 1)  # _after[k]: voxels of tomograms k, k+1, ...
        for k in range(len(self.sizes) - 1, -1, -1):
            self._after[k] = self._after[k + 1] + self.sizes[k]
        self.prior = float(prior_s_per_voxel)
        self.observed: list[tuple[int, float, float]] = []  # (level, seconds, voxels) per predicted tomogram
        self._all_rates: list[float] = []  # seconds per voxel per unit cost, in order, every level
        self._by_level: dict[int, list[float]] = {}  # the same per level
        self.done = 0
        self.level = 0
        self.changes: list[str] = []
        self.stopped = False
        self.cut = 0

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return self.clock() - self.start

    def deadline(self) -> float:
        """Seconds after the start by which every tomogram must have ended: ``total - reserve``."""
        return self.total_s - self.reserve_s

    def _rates(self, level: int | None = None, skip_first: bool = False) -> list[float]:
        """Seconds per voxel per unit cost of the recent measurements (of ``level`` only when given)."""
        rates = self._by_level.get(level, []) if level is not None else self._all_rates
        first = int(skip_first and bool(self.observed) and level in (None, self.observed[0][0]))
        return rates[max(first, len(rates) - RECENT) :]

    def rate(self, level: int) -> float:
        """Expected seconds per voxel per unit cost at ``level`` (the prior before any measurement)."""
        own = self._rates(level)
        rates = own if len(own) >= 3 else self._rates()
        return statistics.median(rates) if rates else self.prior

    def worst_rate(self, level: int) -> float:
        """Highest recent rate, of every level and of ``level`` itself (the prior before any measurement);
        the first measurement, which pays the warm-up, is left out once there are three."""
        if not self.observed:
            return self.prior
        skip = len(self.observed) >= 3
        return max(self._rates(None, skip) + self._rates(level, skip))

    def estimate(self, level: int, voxels: float | None = None) -> float:
        """Expected seconds for a tomogram of ``voxels`` (default: the next one's) at ``level``."""
        return self.rate(level) * self._voxels(voxels) * self.levels[level].cost

    def worst(self, level: int, voxels: float | None = None) -> float:
        """Pessimistic seconds for a tomogram of ``voxels`` (default: the next one's) at ``level``."""
        return self.worst_rate(level) * self._voxels(voxels) * self.levels[level].cost

    def _voxels(self, voxels: float | None) -> float:
        if voxels is not None:
            return float(voxels)
        return self.sizes[self.done] if self.done < len(self.sizes) else max(self.sizes, default=1.0)

    def fits(self, level: int, voxels: float, factor: float = 1.0) -> bool:
        """Whether ``voxels`` of work at ``level`` (``factor`` x the estimate, plus safety) end by the deadline."""
        need = (1.0 + self.safety) * factor * self.rate(level) * voxels * self.levels[level].cost
        return self.elapsed() + need <= self.deadline()

    def can_start(self, level: int, voxels: float | None = None) -> bool:
        """Hard stop: whether a tomogram of ``voxels`` at ``level`` surely ends before ``total - reserve``.

        Before any measurement only the cheapest level may start on the prior's word being uncertain (it is
        the calibration, cut short by :meth:`should_stop` when needed) as long as time is left at all.
        """
        if not self.observed and level == len(self.levels) - 1:
            return self.elapsed() < self.deadline()
        return self.elapsed() + self.worst(level, voxels) <= self.deadline()

    def should_stop(self) -> bool:
        """Whether a tomogram in progress must be abandoned now (the deadline ``total - reserve`` is reached)."""
        return self.elapsed() >= self.deadline()

    def next_level(self, voxels: float | None = None) -> int | None:
        """The level for the next tomogram (of ``voxels``, default its listed size), or ``None`` when no
        level can finish it in time (or a tomogram was cut short)."""
        if self.stopped:
            return None
        voxels = self._voxels(voxels)
        work = voxels + self._after[min(self.done + 1, len(self._after) - 1)]
        # Going back to a richer level asks for 15% slack, so the plan does not flap between two levels.
        chosen = next(
            (lv for lv in range(len(self.levels)) if self.fits(lv, work, 1.15 if lv < self.level else 1.0)),
            len(self.levels) - 1,
        )
        while chosen < len(self.levels) and not self.can_start(chosen, voxels):
            chosen += 1
        if chosen >= len(self.levels):
            self._stop(f"even the cheapest level needs ~{self.worst(len(self.levels) - 1, voxels):.1f} s")
            return None
        if chosen != self.level:
            self._announce(chosen, self.n_items - self.done, work)
            self.level = chosen
        return chosen

    def _stop(self, why: str) -> None:
        self.stopped = True
        msg = (
            f"time budget: stopping after {self.done} of {self.n_items} tomograms: "
            f"{self.elapsed():.1f} s of {self.total_s:.1f} s used and {why}; the rest get -1 rows"
        )
        self.changes.append(msg)
        self.on_change(logging.WARNING, msg)

    def _announce(self, new: int, remaining: int, work: float) -> None:
        old = self.level
        est_old = self.rate(old) * work * self.levels[old].cost
        left = self.total_s - self.elapsed()
        if new > old:
            dropped = "; ".join(self.levels[k].shed or self.levels[k].name for k in range(old + 1, new + 1))
            msg = (
                f"time budget: shedding {dropped} (level {old} -> {new}: {self.levels[new].name}): "
                f"{remaining} tomograms need ~{est_old:.1f} s at level {old} (+{self.safety:.0%} safety), "
                f"more than the {left:.1f} s left less the {self.reserve_s:.1f} s reserve"
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

    def record(self, level: int, seconds: float, voxels: float | None = None) -> None:
        """Record the wall time of one predicted tomogram at ``level`` (``voxels``: its size, default listed)."""
        voxels = self._voxels(voxels)
        self.observed.append((int(level), float(seconds), voxels))
        rate = float(seconds) / (max(voxels, 1.0) * self.levels[level].cost)
        self._all_rates.append(rate)
        self._by_level.setdefault(int(level), []).append(rate)
        self.done += 1

    def record_cut(self, tomo_id: str) -> None:
        """A tomogram was cut short at the deadline: count it and start no other."""
        self.done += 1
        self.cut += 1
        if not self.stopped:
            self._stop(f"tomogram {tomo_id} was cut short at the deadline")

    def skip(self) -> None:
        """Count a tomogram that needed no prediction (e.g. unreadable) as done."""
        self.done += 1
