"""`byu-motor predict`: checkpoints + a competition folder -> submission.csv (time budget, resume, previews)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Predict motors in DATA_DIR/test and write a submission CSV (one row per test tomogram)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``byu-motor predict``."""
    parser.add_argument(
        "data_dir",
        nargs="?",
        metavar="DATA",
        help="competition folder holding test/ (and sample_submission.csv); may also follow --checkpoints",
    )
    members = parser.add_mutually_exclusive_group(required=True)
    members.add_argument(
        "--checkpoints",
        nargs="+",
        metavar="CKPT",
        help="checkpoint files, most valuable first; each carries its inference recipe",
    )
    members.add_argument(
        "--recipe",
        metavar="JSON",
        help="ensemble recipe file: members (checkpoint, weight, set) and overrides for all (byu_motor.infer.recipe)",
    )
    parser.add_argument("--out", default="submission.csv", help="submission CSV (default: submission.csv)")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="finish within this many seconds: shed TTA, then ensemble members, then overlap; -1 rows for "
        "tomograms out of reach",
    )
    parser.add_argument("--preview", default=None, metavar="DIR", help="write a PNG preview per tomogram")
    parser.add_argument("--labels", default=None, metavar="CSV", help="labels to draw the truth in previews")
    parser.add_argument(
        "--report",
        default=None,
        metavar="DIR",
        help="write DIR/index.html (summary, timings, scores and PR curve with --labels, previews) and "
        "DIR/candidates.csv; previews go to DIR/previews unless --preview is given (default: no report)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="inference override for every member, e.g. infer.tta=flip_z,rot90 or infer.threshold=quantile "
        "(repeatable; byu-motor recipe CKPT lists the keys)",
    )
    parser.add_argument(
        "--devices", default="auto", help="auto (every GPU, else CPU), cpu, cuda, or a list: cuda:0,cuda:1"
    )
    parser.add_argument("--device", dest="devices", default="auto", help=argparse.SUPPRESS)  # old name
    parser.add_argument(
        "--keep-partial",
        action="store_true",
        help="keep the resume file OUT.partial.jsonl after a finished run (it is always kept after an "
        "interrupted one)",
    )


def data_and_checkpoints(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The data folder and the checkpoint list of parsed ``predict`` arguments.

    ``--checkpoints`` takes one or more values, so in ``predict --checkpoints A.pt B.pt DATA`` argparse hands
    DATA to it: when no positional DATA was seen, the last ``--checkpoints`` value is DATA.

    Raises:
        ValueError: no DATA at all, or ``--checkpoints`` holding DATA alone.
    """
    checkpoints = list(args.checkpoints or [])
    data = args.data_dir
    if data is None and len(checkpoints) >= 2 and not Path(checkpoints[-1]).is_file():
        data = checkpoints.pop()
    if data is None:
        raise ValueError("missing DATA (the competition folder holding test/); see byu-motor predict --help")
    return data, checkpoints


def run(args: argparse.Namespace) -> int:
    """Run the prediction and print a short summary; returns 0 (bad input raises: see :func:`byu_motor.cli.main`)."""
    from byu_motor.infer.recipe import Member, read_recipe_file, resolve_infer
    from byu_motor.infer.runner import run_prediction

    data, checkpoints = data_and_checkpoints(args)
    if args.recipe:
        recipe = read_recipe_file(args.recipe)
        members, overrides = recipe.members, [*recipe.sets, *args.set]
    else:
        members, overrides = [Member(c) for c in checkpoints], list(args.set)
    config = resolve_infer(members, overrides)
    df = run_prediction(
        data,
        [m.checkpoint for m in members],
        args.out,
        config,
        time_budget_s=args.time_budget,
        preview_dir=args.preview or (args.report and f"{args.report}/previews"),
        labels_csv=args.labels,
        devices=args.devices,
        keep_partial=args.keep_partial,
    )
    s = df.attrs.get("summary", {})
    n = max(1, s.get("predicted", 0))
    print(
        f"wrote {args.out}: {s.get('rows', len(df))} rows, {s.get('detections', '?')} detections, "
        f"threshold {s.get('threshold', float('nan')):.4f} ({s.get('threshold_source', '?')})"
    )
    print(
        f"predicted {s.get('predicted', 0)} (resumed {s.get('resumed', 0)}), read errors {s.get('read_errors', 0)}, "
        f"prediction errors {s.get('predict_errors', 0)}, missing folders {s.get('missing_folders', 0)}, "
        f"not reached {s.get('not_reached', 0)}; devices {','.join(s.get('devices', []))}"
    )
    print(f"time {s.get('seconds', 0):.1f} s ({s.get('seconds', 0) / n:.2f} s per predicted tomogram)")
    print(stage_line(s.get("stages", {})))
    print(f"run summary: {write_result(args.out, s)}")
    for name, count in s.get("levels", {}).items():
        print(f"  level {name}: {count} tomograms")
    for msg in s.get("shed", []):
        print(f"  {msg}")
    if "previews" in s:
        print(f"previews: {s['previews']} PNG in {args.preview or args.report + '/previews'}")
    if args.report:
        print(f"report: {_write_report(args, df)}")
    return 0


def stage_line(stages: dict) -> str:
    """One line of seconds per predicted tomogram by stage, e.g. ``stages (s per tomogram, 2 tomograms):
    read 0.10, resample 1.20, forward 3.40, ...`` from the run summary's ``stages``
    (:func:`byu_motor.infer.stage_timer.run_stages`)."""
    n = int(stages.get("tomograms", 0))
    skip = {"tomograms", "startup_s", "decode_s", "sum_s", "threshold"}
    parts = [f"{k} {float(v) / max(n, 1):.2f}" for k, v in stages.items() if k not in skip]
    extra = f"; start-up {stages.get('startup_s', 0.0):.1f} s, decoding {stages.get('decode_s', 0.0):.1f} s overlapped"
    return f"stages (s per tomogram, {n} tomograms): {', '.join(parts) or 'none'}{extra}"


def write_result(out_csv: str, summary: dict) -> str:
    """Write the run summary (counts, threshold, shed levels, per-stage seconds) as JSON beside the
    submission, ``<out without .csv>.result.json``; returns its path."""
    import json

    from byu_motor.atomic import atomic_write

    path = str(Path(out_csv).with_suffix("")) + ".result.json"
    atomic_write(path, lambda fh: fh.write(json.dumps(summary, indent=2, default=str)), text=True)
    return path


def _write_report(args: argparse.Namespace, df) -> str:
    """Write the run report and the candidates CSV into ``args.report``; returns the page's path."""
    from byu_motor.report.candidates import write_candidates_csv
    from byu_motor.report.run_report import write_run_report

    candidates = df.attrs.get("candidates", {})
    write_candidates_csv(f"{args.report}/candidates.csv", candidates)
    page = write_run_report(
        args.report,
        df.attrs.get("summary", {}),
        candidates,
        args.labels,
        args.preview or f"{args.report}/previews",
    )
    return str(page)
