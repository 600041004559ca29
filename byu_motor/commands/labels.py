"""`byu-motor labels`: compare two label files (`diff`) and apply review decisions (`apply`)."""

from __future__ import annotations

import argparse

HELP = "compare label files (diff A B) or apply review decisions to labels (apply LABELS DECISIONS --out NEW)"

EPILOG = """\
Label files may be any format byu_motor reads: the official train_labels.csv (with optional source and conf
columns, like the seed's train_labels_v2.csv) or the seed's one-row-per-tomogram tables (gt_v3.csv,
external_gt.csv, ...). A motor of B within 1000 A of one of A is the same motor ("moved" unless identical).

A decisions CSV has the columns tomo_id,kind,decision,cand_z,cand_y,cand_x,score,label_z,label_y,label_x
(original voxels, empty when absent); kind is fp, missed or misplaced; decision is accept, keep, reject or
skip. accept: fp adds the candidate, misplaced moves the label onto it, missed keeps the label; reject: missed
and misplaced remove the label, fp changes nothing; keep and skip change nothing.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``byu-motor labels``: the ``diff`` and ``apply`` sub-commands."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="labels_command", metavar="ACTION", required=True)
    diff = sub.add_parser("diff", help="print what changed from label file A to label file B")
    diff.add_argument("a", metavar="A", help="the old label file")
    diff.add_argument("b", metavar="B", help="the new label file")
    diff.add_argument("--quiet", action="store_true", help="counts only, no tomo_id lists (default: off)")
    apply = sub.add_parser("apply", help="apply a review decisions CSV and write corrected labels")
    apply.add_argument("labels", metavar="LABELS", help="the label file the review was made on")
    apply.add_argument("decisions", metavar="DECISIONS", help="decisions CSV exported by the review page")
    apply.add_argument(
        "--out", required=True, metavar="NEW", help="corrected labels CSV (official + source, conf)"
    )
    apply.add_argument(
        "--round",
        type=int,
        default=1,
        metavar="N",
        help="review round, written as source 'review round N' (default: 1)",
    )
    apply.add_argument("--quiet", action="store_true", help="only warnings and the summary (default: off)")


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; bad files raise ``ValueError`` naming file and line (exit 2)."""
    if args.labels_command == "diff":
        from byu_motor.data.label_edits import diff_labels
        from byu_motor.data.label_formats import read_label_file

        diff = diff_labels(read_label_file(args.a), read_label_file(args.b))
        lines = diff.lines()
        for line in lines if not args.quiet else [x for x in lines if not x.startswith("  ")]:
            print(line)
        return 0
    from byu_motor.data.label_edits import apply_labels_file

    changed, total = apply_labels_file(args.labels, args.decisions, args.out, args.round)
    print(
        f"wrote {args.out}: {changed} of {total} decisions changed a label (source 'review round {args.round}')"
    )
    return 0
