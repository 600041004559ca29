"""Write a synthetic dataset in the competition layout (slices, labels, hidden solution, synth_meta.json)."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from byu_motor import progress
from byu_motor.data.io import write_tomogram
from byu_motor.data.layout import LABEL_COLUMNS, SOLUTION_COLUMNS, SUBMISSION_COLUMNS
from byu_motor.synth.distractors import ablation_kinds
from byu_motor.synth.spec import SynthSpec, draw_spec
from byu_motor.synth.tomogram import generate_tomogram


def _render_task(task: tuple) -> list[dict]:
    """Worker: render one spec with its own seed and write its JPEG slices; returns its distractors."""
    spec, seed_seq, difficulty, folder, without = task
    rng = np.random.default_rng(seed_seq)
    objects: list[dict] = []
    volume = generate_tomogram(
        spec.shape,
        spec.spacing_a,
        spec.motors,
        rng,
        difficulty,
        cells=spec.cells,
        inverted=spec.inverted,
        wrapped=spec.wrapped,
        objects=objects,
        without=without,
    )
    write_tomogram(volume, folder, quality=95)
    return objects


def _fmt_spacing(spacing_a: float) -> float:
    return float(round(spacing_a, 6))


def generate_dataset(
    out_dir: str | Path,
    n_train: int,
    n_test: int,
    scale: float = 1.0,
    seed: int = 0,
    difficulty: float = 1.0,
    workers: int = 1,
    without: Collection[str] = (),
) -> None:
    """Write a synthetic dataset in the competition layout.

    Writes ``train/<tomo_id>/slice_*.jpg``, ``test/<tomo_id>/...``, ``train_labels.csv``,
    ``sample_submission.csv``, ``test_labels.csv`` (hidden solution: ``tomo_id, Motor axis 0/1/2,
    Voxel spacing``, -1 when no motor) and ``synth_meta.json`` (per tomogram: split, shape, spacing, motors,
    polarity, seed, and ``distractors``: the motor look-alikes and edge bands drawn, as recorded by
    :func:`generate_tomogram`, for :mod:`byu_motor.synth.explain`). Every tomogram has its own child seed
    (``np.random.SeedSequence(seed).spawn``), so the bytes do not depend on ``workers``.

    Args:
        out_dir: output folder (created).
        n_train: number of train tomograms.
        n_test: number of test tomograms (0 or 1 motor each).
        scale: grid shrink factor per axis; spacing becomes ``real_spacing / scale``.
        seed: root seed.
        difficulty: noise multiplier (1.0 = default).
        workers: worker processes for rendering.
        without: look-alike kinds to leave out of every volume (see :func:`generate_tomogram`); the same
            ``seed`` with and without them gives the same motors, cells and other objects.
    """
    without = ablation_kinds(without)
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train}, {n_test}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs, seeds = _draw_specs(seed, n_train, n_test, scale)
    tasks = [
        (spec, vol_seq, float(difficulty), out / spec.split / spec.tomo_id, without)
        for spec, vol_seq in zip(specs, seeds)
    ]
    distractors = []
    with progress.bar(len(tasks), "synthesise", unit="tomo") as shown:
        if workers > 1 and len(tasks) > 1:
            with multiprocessing.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
                for drawn in pool.imap(_render_task, tasks):
                    distractors.append(drawn)
                    shown.update(1)
        else:
            for task in tasks:
                distractors.append(_render_task(task))
                shown.update(1)
    settings = {"difficulty": float(difficulty), "seed": int(seed), "scale": float(scale)}
    _write_tables(out, specs, distractors, settings, without)


def _draw_specs(
    seed: int, n_train: int, n_test: int, scale: float
) -> tuple[list[SynthSpec], list[np.random.SeedSequence]]:
    """Every tomogram's spec (train first, unique ids) and the seed of its volume, from the root ``seed``."""
    root = np.random.SeedSequence(seed)
    id_seq, *children = root.spawn(1 + n_train + n_test)
    id_rng = np.random.default_rng(id_seq)
    used: set[str] = set()
    specs: list[SynthSpec] = []
    seeds: list[np.random.SeedSequence] = []
    for i, child in enumerate(children):
        split = "train" if i < n_train else "test"
        spec_seq, vol_seq = child.spawn(2)
        spec = draw_spec(np.random.default_rng(spec_seq), scale, split)
        while spec.tomo_id in used:
            spec = replace(spec, tomo_id=f"tomo_{int(id_rng.integers(16**6)):06x}")
        used.add(spec.tomo_id)
        specs.append(spec)
        seeds.append(vol_seq)
    return specs, seeds


def _write_tables(
    out: Path,
    specs: list[SynthSpec],
    distractors: list[list[dict]],
    settings: dict[str, float | int],
    without: tuple[str, ...],
) -> None:
    """Write ``train_labels.csv``, ``sample_submission.csv``, ``test_labels.csv`` and ``synth_meta.json``.

    ``settings`` (``difficulty``, ``seed``, ``scale``) are stored in every tomogram's meta entry.
    """
    train_rows, sub_rows, sol_rows, meta = [], [], [], {}
    for i, spec in enumerate(specs):
        spacing = _fmt_spacing(spec.spacing_a)
        coords = [[int(v) for v in m] for m in spec.motors] or [[-1, -1, -1]]
        if spec.split == "train":
            for c in coords:
                train_rows.append([len(train_rows), spec.tomo_id, *c, *spec.shape, spacing, len(spec.motors)])
        else:
            sub_rows.append([spec.tomo_id, -1, -1, -1])
            sol_rows.append([spec.tomo_id, *coords[0], spacing])
        meta[spec.tomo_id] = {
            "split": spec.split,
            "shape": list(spec.shape),
            "voxel_spacing": spacing,
            "motors": coords if len(spec.motors) else [],
            "inverted": spec.inverted,
            "wrapped": spec.wrapped,
            "difficulty": settings["difficulty"],
            "seed": settings["seed"],
            "index": i,
            "scale": settings["scale"],
            "distractors": distractors[i],
        }
        if without:
            meta[spec.tomo_id]["without"] = list(without)
    pd.DataFrame(train_rows, columns=list(LABEL_COLUMNS)).to_csv(out / "train_labels.csv", index=False)
    pd.DataFrame(sub_rows, columns=list(SUBMISSION_COLUMNS)).to_csv(
        out / "sample_submission.csv", index=False
    )
    pd.DataFrame(sol_rows, columns=list(SOLUTION_COLUMNS)).to_csv(out / "test_labels.csv", index=False)
    (out / "synth_meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
