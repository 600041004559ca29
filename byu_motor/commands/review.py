"""`byu-motor review`: candidates vs labels -> DIR/index.html, one card per disagreement, decisions as a CSV."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "Build a label review page: the disagreements between candidates and labels, decided in a browser."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``byu-motor review``."""
    parser.add_argument("data_dir", nargs="?", metavar="DATA",
                        help="competition folder holding train/<tomo_id>/ slices; may also follow --checkpoints")  # fmt: skip
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", nargs="+", metavar="CKPT", default=None,
                        help="predict the labelled tomograms with these checkpoints (default: none)")  # fmt: skip
    source.add_argument("--candidates", metavar="CSV", default=None,
                        help="read candidates instead (tomo_id,z,y,x,score; as predict --report writes) "
                        "(default: none)")  # fmt: skip
    parser.add_argument("--labels", required=True, metavar="CSV",
                        help="labels to review (train_labels.csv format) (required)")  # fmt: skip
    parser.add_argument("--out", default="review", metavar="DIR", help="page folder (default: review)")
    parser.add_argument("--floor", type=float, default=0.5,
                        help="ignore candidates scoring below this (default: 0.5)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="inference override with --checkpoints, e.g. infer.tta=flip_z (default: none)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="only warnings and the summary (default: off)")


def run(args: argparse.Namespace) -> int:
    """Find the disagreements and write the page; prints the case counts and the page's path."""
    from byu_motor.commands.predict import data_and_checkpoints

    if args.checkpoints:  # `review --checkpoints A.pt DATA`: DATA comes back from the checkpoint list
        args.data, args.checkpoints = data_and_checkpoints(args)
    elif args.data_dir is None:
        raise ValueError("missing DATA (the folder holding train/); see byu-motor review --help")
    else:
        args.data = args.data_dir
    from collections import Counter

    from byu_motor.data.io import read_tomogram
    from byu_motor.report.candidates import read_candidates_csv, read_truth, write_candidates_csv
    from byu_motor.report.cases import find_cases
    from byu_motor.report.review_page import write_review_page

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s"
        )
    truth, spacing = read_truth(args.labels)
    if args.candidates:
        candidates = read_candidates_csv(args.candidates)
    else:
        from byu_motor.infer.labelled import predict_labelled

        candidates = predict_labelled(args.data, args.checkpoints, spacing, args.set)
        write_candidates_csv(Path(args.out, "candidates.csv"), candidates)
    cases = find_cases(candidates, truth, spacing, args.floor)
    page = write_review_page(args.out, cases, lambda t: read_tomogram(Path(args.data, "train", t)))
    counts = Counter(c.kind for c in cases)
    print(f"{len(cases)} case(s) ({', '.join(f'{k} {counts[k]}' for k in ('fp', 'missed', 'misplaced'))}) "
          f"in {sum(t in candidates for t in truth)} labelled tomograms with candidates")  # fmt: skip
    print(f"review page: {page}")
    return 0
