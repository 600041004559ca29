"""`byu-motor pseudo`: one pseudo-label round without review (confident far-away candidates become motors)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "add confident candidates far from every label as motors (one pseudo-label round, no review)"

EPILOG = """\
Candidates come from predicting the labelled train tomograms (DATA/train/<tomo_id>, each at its labelled
spacing) with --checkpoints, or from --candidates: a CSV tomo_id,z,y,x,score (original voxels; `byu-motor
review` and `predict --report DIR` write one) or a resume file `predict --keep-partial` keeps. A candidate scoring >= --min-score and farther
than 1000 A from every label of its tomogram (and from candidates added before it) becomes a motor with
source "pseudo round N" and its score as conf. NEW is the official long format plus source and conf.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``byu-motor pseudo``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("data", metavar="DATA", help="competition layout folder holding train/<tomo_id>")
    parser.add_argument(
        "--checkpoints",
        nargs="+",
        metavar="CKPT",
        help="models that predict the candidates (default: none; this or --candidates)",
    )
    parser.add_argument(
        "--candidates",
        metavar="FILE",
        help="read candidates instead of predicting: CSV or .jsonl (default: none)",
    )
    parser.add_argument(
        "--labels", default=None, metavar="LABELS", help="labels to extend (default: DATA/train_labels.csv)"
    )
    parser.add_argument(
        "--min-score", type=float, required=True, metavar="S", help="lowest score kept (required)"
    )
    parser.add_argument(
        "--out", required=True, metavar="NEW", help="labels CSV to write (official + source, conf)"
    )
    parser.add_argument(
        "--round", type=int, default=1, metavar="N", help="round written in source (default: 1)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="inference override for the checkpoints, e.g. infer.tta=flip_z (repeatable; default: none)",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    parser.add_argument("--quiet", action="store_true", help="only warnings and the summary (default: off)")


def run(args: argparse.Namespace) -> int:
    """Run one round and write NEW; bad input raises ``ValueError`` (exit 2) before anything is written."""
    from byu_motor.data.label_edits import add_pseudo_labels, read_candidates, read_sourced_labels
    from byu_motor.infer.labelled import predict_labelled

    if bool(args.checkpoints) == bool(args.candidates):
        raise ValueError("give exactly one of --checkpoints and --candidates")
    data = Path(args.data)
    labels = read_sourced_labels(args.labels or data / "train_labels.csv")
    if args.candidates:
        candidates = read_candidates(args.candidates)
    else:
        spacings = {t: r.spacing_a for t, r in labels.records.items()}
        candidates = predict_labelled(data, args.checkpoints, spacings, args.set, args.device)
    before = sum(r.n_motors for r in labels.records.values())
    added = add_pseudo_labels(labels, candidates, args.min_score, f"pseudo round {args.round}")
    labels.write(args.out)
    print(f"wrote {args.out}: {before} labelled motors + {added} pseudo-labels (score >= {args.min_score})")
    return 0
