"""Hooks: code that joins a training run at named points of the :class:`~byu_motor.train.trainer.Trainer`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from byu_motor.train.trainer import Trainer


class StopTraining(Exception):
    """Raised by a ``callback`` or a hook to end a run early (as a kill would); the Trainer lets it propagate."""


class Hook:
    """Base class of training hooks: every method is a no-op, so a hook overrides only what it needs.

    The Trainer calls, on every process, in this order:

    - :meth:`load_state_dict` when it resumes from ``resume.pt`` (before the data is set up);
    - :meth:`on_train_start` once the dataset, loader settings and validator exist, before the first step;
    - :meth:`on_step_end` after each optimiser step (and its loss logging), before that step's validation;
    - :meth:`on_validation_end` after each validation and checkpoint (``result`` is None on the other
      processes and when there is no validation set);
    - :meth:`on_train_end` with the result dict the run returns.

    :meth:`state_dict` is written into ``resume.pt`` at every checkpoint; its keys are top-level keys of that
    file and must not clash with the Trainer's own.
    """

    def on_train_start(self, trainer: Trainer) -> None:
        """Called once before the first step of this process (also after a resume)."""

    def on_step_end(self, trainer: Trainer, logs: Mapping[str, Any]) -> None:
        """Called after optimiser step ``trainer.step``; ``logs`` holds ``loss`` (a device tensor) and ``lr``."""

    def on_validation_end(self, trainer: Trainer, result: Mapping[str, Any] | None) -> None:
        """Called after the validation and checkpoint of step ``trainer.step``."""

    def on_train_end(self, trainer: Trainer, result: Mapping[str, Any]) -> None:
        """Called once the run has finished (not when it was stopped by an exception)."""

    def state_dict(self) -> dict[str, Any]:
        """What this hook needs to continue after a resume (tensors, lists, numbers: ``weights_only`` safe)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from a loaded ``resume.pt`` (the whole file, as a mapping).

        The file may come from a run without this hook: treat a missing key as "nothing to restore".
        """
