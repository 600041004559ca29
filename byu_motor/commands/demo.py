"""`byu-motor demo`: the whole job on synthetic data, with a score, previews and a report."""

from __future__ import annotations

import argparse

HELP = "run the whole job on synthetic data: generate, train two folds, predict with TTA, score, report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments (every one optional)."""
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--n-train", type=int, default=40, help="synthetic training tomograms")
    parser.add_argument(
        "--n-test", type=int, default=20, help="synthetic test tomograms (0 or 1 motor each, like Kaggle's)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=0.25,
        help="size factor per axis of the synthetic tomograms (1: real size)",
    )
    parser.add_argument("--difficulty", type=float, default=1.0, help="noise multiplier of the generator")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of training")
    parser.add_argument("--preset", default=None, help="default: tiny on CPU, tiny_fine_gpu on GPU")
    parser.add_argument(
        "--folds", type=int, default=2, help="checkpoints in the ensemble (folds 0 .. FOLDS-1)"
    )
    parser.add_argument(
        "--n-folds", type=int, default=5, help="folds the training tomograms are split into (>= --folds)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="optimiser steps per fold (default: preset's)"
    )
    parser.add_argument("--tta", default="flip_x", help="comma-separated TTA views ('' for none)")
    parser.add_argument("--time-budget", type=float, default=300.0, help="prediction budget in seconds")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="for every fold"
    )
    parser.add_argument(
        "--fold-set",
        dest="fold_sets",
        action="append",
        default=[],
        metavar="K:KEY=VALUE",
        help="for fold K only; replaces the preset's per-fold recipe (tiny: fold 1 at 52.4 A)",
    )
    parser.add_argument(
        "--same-folds", action="store_true", help="drop the preset's per-fold recipe: every fold alike"
    )


def parse_fold_sets(items: list[str], same: bool) -> dict[int, list[str]] | None:
    """``["1:data.spacing_a=52.4,52.4,52.4", ...]`` -> ``{1: ["data.spacing_a=52.4,52.4,52.4"]}``.

    ``None`` (the preset's recipe) when ``items`` is empty and ``same`` is false; ``{}`` for ``same`` alone.

    Raises:
        ValueError: for an item that is not ``K:KEY=VALUE`` with an integer ``K``, naming it.
    """
    if not items:
        return {} if same else None
    table: dict[int, list[str]] = {}
    for item in items:
        fold, sep, assignment = item.partition(":")
        if not sep or not fold.strip().isdigit() or "=" not in assignment:
            raise ValueError(
                f"--fold-set {item!r}: expected K:KEY=VALUE, e.g. 1:data.spacing_a=52.4,52.4,52.4"
            )
        table.setdefault(int(fold), []).append(assignment)
    return table


def run(args: argparse.Namespace) -> int:
    """Run the demo and print, last, ``F2 = ...``."""
    from byu_motor.demo import DemoSettings, fold_configs, pick_preset, run_demo

    fold_overrides = parse_fold_sets(args.fold_sets, args.same_folds)
    try:
        settings = DemoSettings(
            n_train=args.n_train,
            n_test=args.n_test,
            scale=args.scale,
            difficulty=args.difficulty,
            seed=args.seed,
            preset=args.preset,
            folds=args.folds,
            n_folds=args.n_folds,
            steps=args.steps,
            tta=tuple(v for v in args.tta.split(",") if v.strip()),
            overrides=args.overrides,
            fold_overrides=fold_overrides,
            time_budget_s=args.time_budget,
        )
    except ValueError as err:  # reported by byu_motor.cli.main, with the flags it concerns
        raise ValueError(f"--folds {args.folds}, --n-folds {args.n_folds}: {err}") from err
    try:
        fold_configs(pick_preset(settings), settings)  # a bad --set / --fold-set fails here, before any work
    except ValueError as err:
        raise ValueError(f"--set / --fold-set: {err}") from err
    r = run_demo(args.out, settings)
    for line in summary_lines(r):
        print(line)
    return 0


def summary_lines(r: dict) -> list[str]:
    """The demo's closing summary: per-stage seconds, the scores, what errors hit, the report, and last F2.

    Args:
        r: the result of :func:`byu_motor.demo.run_demo`.
    """
    from byu_motor.synth import format_sources

    lines = [f"{stage:>14}: {seconds:7.1f} s" for stage, seconds in r["timings_s"].items()]
    lines.append(f"markdown report: {r['paths']['report']}")
    lines.append(
        f"precision = {r['precision']:.4f}  recall = {r['recall']:.4f}  TP = {r['tp']}  FP = {r['fp']}  "
        f"FN = {r['fn']} ({r['misplaced']} misplaced)"
    )
    lines.append(
        f"false positives hit: {format_sources(r['error_sources']['false_positive'])}; "
        f"misplaced predictions hit: {format_sources(r['error_sources']['misplaced'])}"
    )
    # the report's path, then, last, the score
    lines.append(f"report: {r['paths']['html_report']}")
    lines.append(f"F2 = {r['f2']:.4f}")
    return lines
