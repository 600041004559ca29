"""`byu-motor` command line: a thin dispatcher over the modules in `byu_motor.commands`.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Command modules import heavy libraries (torch, ...) inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from byu_motor import __version__

# name -> module; order is the order shown by --help.
COMMANDS: dict[str, str] = {
    "synth": "byu_motor.commands.synth",
    "score": "byu_motor.commands.score",
    "convert": "byu_motor.commands.convert",
    "models": "byu_motor.commands.models",
    "train": "byu_motor.commands.train",
    "predict": "byu_motor.commands.predict",
    "recipe": "byu_motor.commands.recipe",
    "demo": "byu_motor.commands.demo",
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one sub-parser per available command."""
    parser = argparse.ArgumentParser(
        prog="byu-motor", description="Locate flagellar motors in cryo-ET tomograms."
    )
    parser.add_argument("--version", action="version", version=f"byu-motor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # command not shipped in this build
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `byu-motor` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
