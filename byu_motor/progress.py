"""Progress of every stage: tqdm bars on a terminal, plain lines in logs (Kaggle), nothing with ``--quiet``.

Every long stage (synthesis, cache building, training, prediction) shows its progress through :func:`bar`
and announces itself with :func:`status`; both write to stderr, so stdout keeps only a command's summary.
The CLI's ``--quiet`` calls :func:`set_quiet`: bars and status lines are then silent while warnings (the
``logging`` module) and the summary still print.
"""

from __future__ import annotations

import sys
import time
from typing import Any

_STATE = {"quiet": False}

#: Seconds between two plain progress lines of one bar (the first and the last line always print).
LINE_INTERVAL_S = 10.0


def set_quiet(quiet: bool) -> None:
    """Silence (``True``) or restore (``False``) every bar and status line of this process."""
    _STATE["quiet"] = bool(quiet)


def is_quiet() -> bool:
    """Whether bars and status lines are silenced (``--quiet``)."""
    return _STATE["quiet"]


def use_bars() -> bool:
    """Whether stderr is a terminal, where tqdm bars redraw in place (else plain lines are printed)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def status(message: str) -> None:
    """Print a one-line status ``message`` to stderr (nothing when quiet)."""
    if is_quiet():
        return
    if use_bars():  # above any bar being drawn, which tqdm redraws below it
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


def bar(total: int | None, desc: str, unit: str = "it", initial: int = 0, disable: bool = False) -> Any:
    """A progress bar of ``total`` items named ``desc``: a tqdm bar on a terminal, else a :class:`LineBar`.

    Args:
        total: items expected (``None``: unknown).
        desc: the stage's name, shown first (e.g. ``"train fold 0"``).
        unit: what one item is (``"tomo"``, ``"step"``).
        initial: items already done (a resumed run).
        disable: silence this bar (it is silent anyway when quiet).

    Returns:
        An object with tqdm's ``update``, ``set_postfix``, ``set_postfix_str`` and ``close`` (and a context
        manager).
    """
    disable = disable or is_quiet()
    if disable or not use_bars():
        return LineBar(total, desc, unit, initial, disable)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True, file=sys.stderr)


class LineBar:
    """tqdm's interface written as plain lines: ``desc: done/total unit (pct), elapsed, ETA, postfix``.

    One line at the start, then at most one every :data:`LINE_INTERVAL_S` seconds, and one at the end.
    """

    def __init__(
        self, total: int | None, desc: str, unit: str = "it", initial: int = 0, disable: bool = False
    ):
        self.total, self.desc, self.unit, self.n, self.disable = total, desc, unit, initial, disable
        self.initial = initial
        self.postfix = ""
        self._start = time.monotonic()
        self._last = -float("inf")
        self._closed = False
        self._print()

    def line(self) -> str:
        """The current progress line (without a newline)."""
        elapsed = time.monotonic() - self._start
        parts = [f"{self.desc}: {self.n}"]
        if self.total:
            parts[0] += f"/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%)"
        else:
            parts[0] += f" {self.unit}"
        parts.append(f"{_clock(elapsed)} elapsed")
        done = self.n - self.initial
        if self.total and 0 < done and self.n < self.total:
            parts.append(f"ETA {_clock(elapsed / done * (self.total - self.n))}")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def _print(self, force: bool = True) -> None:
        now = time.monotonic()
        if self.disable or (not force and now - self._last < LINE_INTERVAL_S):
            return
        self._last = now
        print(self.line(), file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done; prints when the interval has passed or the total is reached."""
        self.n += n
        self._print(force=bool(self.total) and self.n >= self.total)

    def set_postfix(
        self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any
    ) -> None:
        """Show ``key=value`` pairs after the counts (tqdm's signature), from the next printed line on."""
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """Show ``s`` after the counts, from the next printed line on."""
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Rename the stage."""
        self.desc = desc or ""

    def close(self) -> None:
        """Print the final line unless the last update already did."""
        if not self._closed and not (self.total and self.n >= self.total):
            self._print()
        self._closed = True

    def __enter__(self) -> LineBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clock(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
