"""`byu-motor score`: the competition F2 of a submission against a solution (or a train label file)."""

from __future__ import annotations

import argparse

HELP = "score a submission CSV against a solution CSV with the competition metric (F2)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument(
        "solution", help="solution CSV (tomo_id, 3 axes, Voxel spacing) or a train_labels.csv"
    )
    parser.add_argument(
        "submission", help="submission CSV (tomo_id, Motor axis 0, Motor axis 1, Motor axis 2)"
    )
    parser.add_argument("--distance-a", type=float, default=1000.0, help="hit radius in Angstrom")
    parser.add_argument(
        "--beta", type=float, default=2.0, help="F-beta weight of recall (the competition's 2)"
    )
    parser.add_argument(
        "--synth-meta",
        help="synth_meta.json of a synthetic set: also name what each false positive and misplaced "
        "prediction hit (granule, ring-only decoy, vesicle, gold, edge band, other)",
    )


def run(args: argparse.Namespace) -> int:
    """Print precision, recall, TP/FP/FN and, last, ``F2 = 0.xxxx``."""
    from byu_motor import metric
    from byu_motor.data.layout import read_labels, read_sample_submission

    # Both files are checked row by row first (not CSV, NaN or negative coordinates, repeated tomo_ids):
    # a bad one raises LabelError naming the file and line, reported by byu_motor.cli.main.
    submission = read_sample_submission(args.submission)
    if _is_label_file(args.solution):
        # A train label file: several motors per tomogram, a hit is near any of them.
        d = metric.validation_details(read_labels(args.solution), submission, args.distance_a, args.beta)
        mode = "validation rule (hit = any motor)"
        if args.synth_meta:
            raise ValueError("--synth-meta needs a one-row-per-tomogram solution (e.g. test_labels.csv)")
    else:
        solution = read_sample_submission(args.solution)
        d = metric.score_details(solution, submission, args.distance_a, args.beta)
        mode = "competition rule"
    print(f"tomograms: {d['tp'] + d['fp'] + d['fn'] + d['tn']} ({mode})")
    print(f"precision = {d['precision']:.4f}")
    print(f"recall    = {d['recall']:.4f}")
    print(f"TP = {d['tp']}  FP = {d['fp']}  FN = {d['fn']} ({d['misplaced']} misplaced)  TN = {d['tn']}")
    if args.synth_meta:
        import json
        from pathlib import Path

        from byu_motor.synth import error_sources, format_sources

        src = error_sources(  # only reached with a one-row-per-tomogram solution
            solution, submission, json.loads(Path(args.synth_meta).read_text()), args.distance_a
        )
        print(f"false positives hit: {format_sources(src['false_positive'])}")
        print(f"misplaced predictions hit: {format_sources(src['misplaced'])}")
    print(f"F{args.beta:g} = {d['f2']:.4f}")
    return 0


def _is_label_file(path: str) -> bool:
    """Whether ``path`` is a train label file (it has a ``Number of motors`` column): one row per motor."""
    from byu_motor.data.layout import COUNT_COLUMN

    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    return COUNT_COLUMN in [c.strip() for c in header.split(",")]
