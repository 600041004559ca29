"""`byu-motor synth`: write a synthetic dataset with known motors in the competition layout."""

from __future__ import annotations

import argparse

HELP = "Generate synthetic tomograms with known motors in the competition layout."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `synth` options to ``parser``."""
    parser.add_argument(
        "out_dir", metavar="DATA", help="data folder to write (train/, test/, train_labels.csv, ...)"
    )
    parser.add_argument("--n-train", type=int, default=8, help="number of train tomograms")
    parser.add_argument("--n-test", type=int, default=4, help="number of test tomograms (0 or 1 motor)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink every axis by this factor (spacing becomes real_spacing / scale)",
    )
    parser.add_argument("--seed", type=int, default=0, help="root seed: same seed, same bytes")
    parser.add_argument("--difficulty", type=float, default=1.0, help="noise multiplier (1.0 = default)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (output does not change)")
    parser.add_argument(
        "--without",
        default="",
        help="comma-separated look-alikes to leave out (granule, decoy); same seed, same everything else",
    )
    parser.add_argument(
        "--drop-labels",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="drop this share of train motors from train_labels.csv and list them in dropped_labels.csv "
        "(default: 0.0)",
    )


def run(args: argparse.Namespace) -> int:
    """Generate the dataset; returns the exit code."""
    import time

    from byu_motor.synth import ablation_kinds, generate_dataset

    # bad values raise ValueError before anything is written: the CLI prints one line and exits 2
    if args.n_train < 0 or args.n_test < 0:
        raise ValueError(f"--n-train and --n-test must be >= 0, got {args.n_train}, {args.n_test}")
    if not 0 <= args.drop_labels <= 1:
        raise ValueError(f"--drop-labels must be in [0, 1], got {args.drop_labels}")
    if not args.scale > 0:
        raise ValueError(f"--scale must be > 0, got {args.scale}")
    try:
        without = ablation_kinds(k for k in args.without.split(",") if k)
    except ValueError as err:
        raise ValueError(f"--{err}") from err
    start = time.perf_counter()
    generate_dataset(
        args.out_dir,
        n_train=args.n_train,
        n_test=args.n_test,
        scale=args.scale,
        seed=args.seed,
        difficulty=args.difficulty,
        workers=args.workers,
        without=without,
    )
    if args.drop_labels > 0:
        from byu_motor.synth.labels import DROPPED_FILE, drop_labels

        dropped = drop_labels(args.out_dir, args.drop_labels, seed=args.seed)
        n = sum(r.n_motors for r in dropped.values())
        print(f"synth: dropped {n} motor label(s) of {len(dropped)} tomogram(s), listed in {DROPPED_FILE}")
    elapsed = time.perf_counter() - start
    print(
        f"synth: wrote {args.n_train} train + {args.n_test} test tomograms to {args.out_dir} "
        f"in {elapsed:.1f} s"
    )
    return 0
