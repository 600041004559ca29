"""`byu-motor train`: train a detector from a competition-layout folder (real or synthetic)."""

from __future__ import annotations

import argparse
import os

HELP = "train a detector on DATA (train/ + train_labels.csv, or --labels files); checkpoints go to --out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``byu-motor train``."""
    parser.add_argument(
        "data",
        nargs="?",
        metavar="DATA",
        help="competition layout folder (train/, train_labels.csv); also accepted as --data",
    )
    parser.add_argument("--data", dest="data_option", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--labels",
        action="append",
        default=[],
        metavar="LABELS[:ROOT]",
        help="label file to train on (repeatable): official train_labels.csv, the seed's gt_v3.csv / "
        "external_gt.csv, ...; its tomograms lie in ROOT/train/<tomo_id> (ROOT defaults to DATA). A tomo_id "
        "in two files is an error. Default: DATA/train_labels.csv",
    )
    parser.add_argument("--preset", required=True, help="preset name (`byu-motor models` lists them)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. --set train.lr=3e-4 --set train.steps=200 (repeatable)",
    )
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics.jsonl, config.json)")
    parser.add_argument("--fold", type=int, default=None, help="validation fold (overrides train.fold)")
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from OUT/resume.pt when present (default: yes)",
    )
    parser.add_argument(
        "--devices",
        dest="device",
        default=None,
        help="torch device (default: cuda when available, else cpu; several GPUs: run under torchrun)",
    )
    parser.add_argument("--device", dest="device", default=None, help=argparse.SUPPRESS)  # old name
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Train and print the best F2, its threshold and the checkpoint paths; returns 0 on success."""
    import torch

    from byu_motor.presets import get_preset
    from byu_motor.train.distributed import cleanup_distributed
    from byu_motor.train.engine import train

    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data or args.data_option
    if not data or (args.data and args.data_option):
        raise ValueError("give the data folder once: byu-motor train DATA ... (or --data DATA)")
    cfg = get_preset(args.preset).override(list(args.overrides))
    if args.labels:
        cfg.train.label_sources = tuple(args.labels)
    if args.fold is not None:
        cfg.train.fold = args.fold
    try:
        result = train(
            cfg, data, args.out, resume=args.resume, device=args.device, progress=not args.no_progress
        )
    finally:
        cleanup_distributed()
    if int(os.environ.get("RANK", "0")) == 0:
        f2 = result["best_f2"]
        thr = result["best_threshold"]
        print(
            f"steps: {result['step']}  minutes: {result['elapsed_s'] / 60:.1f}  final loss: {result['loss']:.4f}"
        )
        if f2 is None:
            print("best F2: n/a (no validation tomograms)")
        else:
            print(f"best F2: {f2:.4f} at step {result['best_step']}  threshold: {thr:.4f}")
        print(f"best checkpoint: {result['checkpoints']['best']}")
        print(f"last checkpoint: {result['checkpoints']['last']}")
    return 0
