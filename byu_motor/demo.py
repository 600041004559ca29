"""The whole job on the embedded default: synthetic data -> two trained folds -> budgeted ensemble prediction -> score.

``byu-motor demo`` runs :func:`run_demo`; everything it uses is the public library, so the demo doubles as
an end-to-end check of the engine.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from byu_motor import progress

if TYPE_CHECKING:
    from byu_motor.config import Config


@dataclass
class DemoSettings:
    """Sizes of a demo run. The defaults finish in about 10 minutes on 2 CPU cores.

    Args:
        n_train: synthetic training tomograms.
        n_test: synthetic test tomograms (0 or 1 motor each, like the hidden test set).
        scale: synthetic size factor (0.25: every axis a quarter of the real size, 4x coarser voxels).
        difficulty: noise knob of the generator (1.0 = default).
        seed: seed of the data and of training.
        preset: training preset (None: ``tiny`` on CPU, ``tiny_fine_gpu`` when CUDA is available; both match
            the synthetic data's spacing, which the production presets do not).
        folds: checkpoints in the ensemble: folds ``0 .. folds - 1`` are trained, one checkpoint each.
        n_folds: folds the training tomograms are split into (``>= folds``). With 5, each of the two
            checkpoints trains on 32 of the 40 tomograms and validates on 8; with 2 they would train on 20
            disjoint ones.
        steps: optimiser steps per fold (``None``: the preset's).
        tta: test-time augmentation views.
        overrides: extra ``--set`` assignments applied to every fold (after the per-fold recipe, so a key set
            here wins for all folds).
        fold_overrides: extra ``--set`` assignments per fold, ``{fold: [assignment, ...]}``, applied before
            ``overrides``.
            ``None``: the preset's per-fold recipe (:data:`FOLD_OVERRIDES`); ``{}``: the same settings for
            every fold. An explicit dict replaces the recipe's, it is not merged with it.
        time_budget_s: prediction time budget (None: unlimited).
        previews: number of preview PNGs (detections and misses first).
    """

    n_train: int = 40
    n_test: int = 20
    scale: float = 0.25
    difficulty: float = 1.0
    seed: int = 0
    preset: str | None = None
    folds: int = 2
    n_folds: int = 5
    steps: int | None = None
    tta: tuple[str, ...] = ("flip_x",)
    overrides: list[str] = field(default_factory=list)
    fold_overrides: dict[int, list[str]] | None = None
    time_budget_s: float | None = 300.0
    previews: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.folds <= self.n_folds or self.n_folds < 2:
            raise ValueError(
                f"demo: need 1 <= folds <= n_folds and n_folds >= 2, got folds={self.folds}, n_folds={self.n_folds}"
            )
        unused = sorted(k for k in (self.fold_overrides or {}) if not 0 <= k < self.folds)
        if unused:
            raise ValueError(
                f"demo: fold_overrides for folds {unused}, but the ensemble has folds 0-{self.folds - 1}"
            )


#: The demo's per-fold recipe: ``{preset: {fold: (--set assignment, ...)}}``. ``tiny``'s fold 1 trains at
#: the synthetic test tomograms' assumed 52.4 A instead of 64 A, and the two checkpoints' points are fused
#: (``tiny``'s ``infer.ensemble="fusion"``): a point keeps its full score only where both resolutions find it.
FOLD_OVERRIDES: dict[str, dict[int, tuple[str, ...]]] = {
    "tiny": {1: ("data.spacing_a=52.4,52.4,52.4",)},
}


def fold_overrides_for(preset: str, settings: DemoSettings) -> list[list[str]]:
    """The extra ``--set`` assignments of each fold ``0 .. settings.folds - 1`` (the recipe's or the settings')."""
    table = FOLD_OVERRIDES.get(preset, {}) if settings.fold_overrides is None else settings.fold_overrides
    return [list(table.get(k, ())) for k in range(settings.folds)]


def fold_configs(preset: str, settings: DemoSettings) -> list[Config]:
    """The training config of each demo fold ``0 .. settings.folds - 1``.

    ``preset``, then the fold's per-fold assignments (:func:`fold_overrides_for`), then the split, seed and
    steps of ``settings``, the inference recipe of the demo's test data (assumed spacing 13.1 A / ``scale``,
    the TTA views), and its ``overrides`` (so those win for every fold), then ``train.fold``. Each checkpoint
    therefore carries the recipe the demo predicts with.

    Raises:
        ValueError: for an assignment to an unknown key or with a bad value (from ``Config.override``).
    """
    from byu_motor.presets import get_preset
    from byu_motor.synth import TEST_SPACING_A

    shared = [f"train.n_folds={settings.n_folds}", f"train.seed={settings.seed}"]
    shared.append(f"infer.test_spacing_a={TEST_SPACING_A / settings.scale}")
    if settings.tta:
        shared.append(f"infer.tta={','.join(settings.tta)}")
    if settings.steps is not None:
        shared.append(f"train.steps={settings.steps}")
    per_fold = fold_overrides_for(preset, settings)
    return [
        get_preset(preset).override([*per_fold[k], *shared, *settings.overrides, f"train.fold={k}"])
        for k in range(settings.folds)
    ]


def pick_preset(settings: DemoSettings) -> str:
    """``settings.preset``, else ``tiny_fine_gpu`` when CUDA is available and ``tiny`` otherwise."""
    import torch

    if settings.preset:
        return settings.preset
    # tiny_fine trains 4-6x slower per step than tiny on 2 CPU cores, which the demo's 10 minutes do not allow;
    # on a GPU both fit in the same time
    return "tiny_fine_gpu" if torch.cuda.is_available() else "tiny"


def run_demo(out_dir: str | Path = "demo_out", settings: DemoSettings | None = None) -> dict[str, Any]:
    """Generate data, train ``settings.folds`` folds, predict the test set as an ensemble with TTA, score it.

    Writes into ``out_dir``: ``data/`` (competition layout), ``runs/fold<k>/`` (checkpoints, logs),
    ``submission.csv``, ``previews/*.png``, ``report.md`` and the HTML report ``report/index.html``.

    Returns:
        ``f2``, ``precision``, ``recall``, ``tp``, ``fp``, ``fn``, ``misplaced``, ``error_sources`` (what the
        false positives and misplaced predictions hit, :func:`~byu_motor.synth.explain.error_sources`),
        ``threshold``, ``timings_s`` (per stage), ``paths`` (``html_report``: the HTML report).
    """
    from byu_motor.infer.recipe import Member, resolve_infer
    from byu_motor.infer.runner import run_prediction
    from byu_motor.metric import score_details
    from byu_motor.synth import error_sources
    from byu_motor.train.engine import train

    s = settings or DemoSettings()
    # every fold's config is built (and a bad --set rejected) before any data is made
    preset = pick_preset(s)
    per_fold = fold_overrides_for(preset, s)
    configs = fold_configs(preset, s)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    data = _synthesise(out / "data", s)
    timings["synthesise"] = time.perf_counter() - t0

    checkpoints = []
    for k, cfg in enumerate(configs):
        t0 = time.perf_counter()
        progress.status(
            f"train fold {k} of {len(configs)}: preset {preset}, run folder {out / 'runs' / f'fold{k}'}"
        )
        result = train(cfg, data, out / "runs" / f"fold{k}")
        checkpoints.append(str(result["checkpoints"]["best"]))
        timings[f"train fold {k}"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # the checkpoints carry the recipe: predicting them is what `byu-motor predict --recipe` does
    members = [Member(c) for c in checkpoints]
    infer_cfg = resolve_infer(members)
    (out / "ensemble.json").write_text(
        json.dumps({"members": [{"checkpoint": os.path.relpath(c, out)} for c in checkpoints]}, indent=2)
    )
    submission = run_prediction(
        data,
        checkpoints,
        out / "submission.csv",
        infer_cfg,
        time_budget_s=s.time_budget_s,
        preview_dir=out / "previews",
        labels_csv=data / "test_labels.csv",
    )
    timings["predict"] = time.perf_counter() - t0

    progress.status("score: F2 of the submission against the synthetic truth")
    solution = pd.read_csv(data / "test_labels.csv")
    details = score_details(solution, submission)
    meta = json.loads((data / "synth_meta.json").read_text())
    sources = error_sources(solution, submission, meta)
    summary = submission.attrs.get("summary", {})
    threshold = summary.get("threshold", _threshold_used(checkpoints))
    result = {**details, "error_sources": sources, "threshold": threshold, "threshold_source": summary.get("threshold_source"),
              "preset": preset, "fold_overrides": per_fold, "ensemble": infer_cfg.ensemble, "timings_s": timings,
              "predict_stages_s": summary.get("stages", {}),
              "paths": {"submission": str(out / "submission.csv"), "report": str(out / "report.md"),
                        "previews": str(out / "previews"), "checkpoints": checkpoints}}  # fmt: skip
    (out / "report.md").write_text(_report(result, s))
    result["paths"]["html_report"] = str(_html_report(out, result, submission, data / "test_labels.csv"))
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _synthesise(data: Path, s: DemoSettings) -> Path:
    """Generate the demo's data set into ``data`` unless a finished one is there; returns ``data``."""
    from byu_motor.synth import generate_dataset

    if (data / "test_labels.csv").exists():
        progress.status(f"synthesise: reusing {data}")
        return data
    progress.status(f"synthesise: {s.n_train} train + {s.n_test} test tomograms into {data}")
    generate_dataset(
        data,
        s.n_train,
        s.n_test,
        scale=s.scale,
        seed=s.seed,
        difficulty=s.difficulty,
        workers=os.cpu_count() or 1,
    )
    return data


def _html_report(out: Path, result: dict[str, Any], submission: pd.DataFrame, labels: Path) -> Path:
    """The demo's HTML report, ``out/report/index.html`` (:mod:`byu_motor.report.run_report`)."""
    from byu_motor.report.run_report import write_run_report

    keys = ("f2", "precision", "recall", "tp", "fp", "fn", "tn", "misplaced", "threshold", "threshold_source",
            "preset", "ensemble")  # fmt: skip
    summary = {**{k: result.get(k) for k in keys}, **submission.attrs.get("summary", {}),
               "timings_s": result["timings_s"]}  # fmt: skip
    return write_run_report(out / "report", summary, submission.attrs.get("candidates", {}), labels,
                            out / "previews", title="byu_motor demo report")  # fmt: skip


def _threshold_used(checkpoints: list[str]) -> float | None:
    from byu_motor.models.checkpoint import read_checkpoint_config

    values = [read_checkpoint_config(c).extra.get("threshold") for c in checkpoints]
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


ENSEMBLE_WORDS = {"logits": "the checkpoints' logits averaged", "fusion": "the checkpoints' points fused"}


def _report(r: dict[str, Any], s: DemoSettings) -> str:
    from byu_motor.synth import format_sources

    lines = [
        "# byu_motor demo report",
        "",
        f"Synthetic data: {s.n_train} train / {s.n_test} test tomograms at scale {s.scale}, difficulty "
        f"{s.difficulty}, seed {s.seed}. Preset `{r['preset']}`, ensemble of folds 0-{s.folds - 1} of {s.n_folds}, "
        f"TTA {list(s.tta)}, {ENSEMBLE_WORDS.get(r['ensemble'], r['ensemble'])}.",
        *[f"Fold {k} also sets `{' '.join(sets)}`." for k, sets in enumerate(r["fold_overrides"]) if sets],
        "",
        "| metric | value |",
        "|---|---|",
        f"| F2 | {r['f2']:.4f} |",
        f"| precision | {r['precision']:.4f} |",
        f"| recall | {r['recall']:.4f} |",
        f"| TP / FP / FN / TN | {r['tp']} / {r['fp']} / {r['fn']} / {r['tn']} |",
        f"| FN that predicted a motor more than 1000 A away (misplaced) | {r['misplaced']} |",
        f"| what the false positives hit | {format_sources(r['error_sources']['false_positive'])} |",
        f"| what the misplaced predictions hit | {format_sources(r['error_sources']['misplaced'])} |",
        f"| threshold ({r.get('threshold_source') or 'mean of the folds calibrated thresholds'}) | {r['threshold']} |",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in r["timings_s"].items()],
        f"| total | {sum(r['timings_s'].values()):.1f} |",
        "",
        "Previews (three orthogonal slices through each detection and each missed motor; circle = the 1000 A",
        "scoring sphere's cut; legend and caption on each) are in `previews/`, and with the scores, the",
        "precision-recall curve and the per-tomogram table in the HTML report `report/index.html`.",
        "",
        "What a wrong prediction hit comes from the generator's record of the motor look-alikes it drew",
        "(`synth_meta.json`): a storage granule or a ring-only decoy (a motor without its rod, deep in a cell)",
        "within 300 A of the point, a vesicle, a gold fiducial, a reconstruction edge band, or none of these",
        "(other).",
        "",
    ]
    return "\n".join(lines)
