"""Where a run continues and ends: a previous run's output as the start, a session time limit, no held-out fold.

Kaggle notebooks stop after 12 hours. A long run is therefore cut into sessions: each stops itself after
``train.stop_after_s`` seconds with ``resume.pt`` saved (:func:`time_is_up`), its output folder is attached to
the next session as a (read-only) dataset, and ``train.resume_from`` names that folder:
:func:`adopt_previous_run` copies its files into the new, writable ``out_dir`` and training continues there.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch

from byu_motor.config import Config
from byu_motor.train.distributed import all_reduce_mean

log = logging.getLogger(__name__)

# what a run folder holds that the next session needs (resume.pt last: its presence marks a complete copy)
RUN_FILES = ("config.json", "folds.csv", "metrics.jsonl", "last.pt", "best.pt", "resume.pt")
# files that mark a competition data root, whose tomogram folders find_previous_run does not walk
DATA_ROOT_MARKERS = {"train_labels.csv", "sample_submission.csv"}
# the seed's rule for its train_on_all members: the 55 % lowest-scoring test tomograms are negative
NO_VALIDATION_THRESHOLD = "negative_share"


def adopt_previous_run(previous: str | Path, out_dir: Path) -> bool:
    """Copy a previous run's files (:data:`RUN_FILES` that exist) into ``out_dir`` unless it has ``resume.pt``.

    ``previous`` is only read (it may be a read-only Kaggle input); the copies are plain writable files.

    Args:
        previous: the previous run's ``out_dir``.
        out_dir: this run's folder (created).

    Returns:
        True when files were copied, False when ``out_dir`` already holds its own ``resume.pt``.

    Raises:
        OSError: when ``previous`` has no ``resume.pt``, naming the path.
    """
    src = Path(previous)
    if (out_dir / "resume.pt").exists():
        return False
    if not (src / "resume.pt").is_file():
        raise OSError(f"{src / 'resume.pt'}: train.resume_from names no previous run (no resume.pt there)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (src / name).is_file():
            tmp = out_dir / f".{name}.copy"
            shutil.copyfile(src / name, tmp)  # contents only: a read-only source's mode is not copied
            os.replace(tmp, out_dir / name)
    log.info("continuing the run in %s (copied into %s)", src, out_dir)
    return True


def _resume_step(path: Path) -> int:
    """The optimiser step saved in ``resume.pt`` (memory-mapped: only the small entries are read)."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(state.get("step", -1))


def find_previous_run(root: str | Path, preset: str | None = None, max_depth: int = 4) -> Path | None:
    """The run folder under ``root`` that a new session should continue, or None when there is none.

    A run folder is a directory holding ``resume.pt``, at most ``max_depth`` levels below ``root`` (Kaggle
    mounts an attached notebook output at ``/kaggle/input/<slug>/`` or ``/kaggle/input/notebooks/<owner>/<slug>/``,
    and the run sits in its ``run/`` folder); the tomogram folders of a competition data root are not walked.
    With ``preset``, only runs whose ``config.json`` names that preset count, and an unreadable ``resume.pt`` is
    skipped with a warning. When several sessions' outputs are attached, the one saved at the highest step wins
    (ties: the first path in sorted order), so attaching every earlier output is harmless.

    Args:
        root: folder to search (``/kaggle/input`` on Kaggle); missing: None.
        preset: the preset name (``Config.name``) the run must have been started from, or None for any.
        max_depth: how many directory levels below ``root`` to look.

    Returns:
        The chosen folder, or None.
    """
    root = Path(root)
    found: list[tuple[int, str, Path]] = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        depth = len(here.relative_to(root).parts)
        if depth >= max_depth or DATA_ROOT_MARKERS & set(files):
            dirs[:] = []  # too deep, or a competition data root (hundreds of slice folders: no run inside)
        dirs.sort()
        if "resume.pt" not in files:
            continue
        if preset is not None:
            try:
                name = json.loads((here / "config.json").read_text()).get("name")
            except (OSError, ValueError):
                name = None
            if name != preset:
                log.info("%s: not a run of preset %s (config.json names %r); skipped", here, preset, name)
                continue
        try:
            step = _resume_step(here / "resume.pt")
        except Exception as exc:  # a truncated or foreign file must not stop the session: start elsewhere
            log.warning("%s: unreadable resume.pt (%s); skipped", here, exc)
            continue
        found.append((-step, str(here), here))
    if not found:
        return None
    found.sort()
    if len(found) > 1:
        log.info(
            "%d previous runs found; continuing the one at step %d: %s", len(found), -found[0][0], found[0][2]
        )
    return found[0][2]


def recipe_without_validation(cfg: Config) -> Config:
    """``cfg``, or a copy whose ``infer.threshold`` needs no validation when it was ``"checkpoint"``.

    A ``train_on_all`` run has no held-out tomograms to calibrate a threshold on, so its checkpoints carry
    the seed's rule (:data:`NO_VALIDATION_THRESHOLD`, share ``infer.negative_share``) instead; a
    ``fixed``, ``quantile`` or ``negative_share`` rule is kept.
    """
    if cfg.infer.threshold != "checkpoint":
        return cfg
    log.warning(
        "train.train_on_all: no validation to calibrate a threshold; checkpoints use infer.threshold=%s",
        NO_VALIDATION_THRESHOLD,
    )
    out = Config.from_dict(cfg.to_dict())
    out.infer.threshold = NO_VALIDATION_THRESHOLD
    return out


def time_is_up(elapsed_s: float, limit_s: float, device: torch.device) -> bool:
    """Whether this session ran ``limit_s`` seconds on any process (``limit_s`` <= 0: never); every process
    gets the same answer."""
    if limit_s <= 0:
        return False
    flag = torch.tensor(float(elapsed_s >= limit_s), device=device)
    return bool(all_reduce_mean(flag) > 0)
