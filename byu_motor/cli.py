"""`byu-motor` command line: a thin dispatcher over the modules in `byu_motor.commands`.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Command modules import heavy libraries (torch, ...) inside ``run`` so that ``--help`` stays fast.

One grammar for every command: the data folder is a positional ``DATA``; ``--checkpoints``, ``--labels``,
``--out``, ``--devices``, ``--set KEY=VALUE``; ``--quiet`` and ``--debug`` are added here to every command.
``--quiet`` leaves only warnings and the command's summary (:mod:`byu_motor.progress`, ``logging``); without
it, every stage prints its progress to stderr. Every option's help shows its default (:class:`HelpFormatter`).

Errors take one path, here in :func:`main`: an expected error (bad input file, bad setting, unwritable
output: ``ValueError`` and its subclasses, ``OSError``) prints ``byu-motor CMD: error: ...`` and exits 2;
commands check their inputs before creating anything, so nothing is left behind. Any other exception
prints one ``unexpected error`` line and exits 1; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from byu_motor import __version__

# name -> module; order is the order shown by --help.
COMMANDS: dict[str, str] = {
    "synth": "byu_motor.commands.synth",
    "score": "byu_motor.commands.score",
    "convert": "byu_motor.commands.convert",
    "labels": "byu_motor.commands.labels",
    "pseudo": "byu_motor.commands.pseudo",
    "models": "byu_motor.commands.models",
    "train": "byu_motor.commands.train",
    "predict": "byu_motor.commands.predict",
    "recipe": "byu_motor.commands.recipe",
    "review": "byu_motor.commands.review",
    "demo": "byu_motor.commands.demo",
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one sub-parser per available command."""
    parser = argparse.ArgumentParser(
        prog="byu-motor", description="Locate flagellar motors in cryo-ET tomograms."
    )
    parser.add_argument("--version", action="version", version=f"byu-motor {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
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
        # also after the command; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        _add_common_options(p)
        p.set_defaults(_run=module.run)
    return parser


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    """Every command's help shows defaults (:class:`HelpFormatter`, set after ``add_arguments`` so it also
    keeps an epilog's line breaks) and every leaf command (one without sub-actions) takes ``--quiet``."""
    parser.formatter_class = HelpFormatter
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in nested:
        for child in action.choices.values():
            _add_common_options(child)
    if not nested and "--quiet" not in parser._option_string_actions:
        parser.add_argument("--quiet", action="store_true", help="print only warnings and the summary")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and epilogs as written and appends ``(default: X)`` to every option's help that
    does not already name its default (``None``, ``False`` and empty lists are not shown)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is False
            or default in ("", argparse.SUPPRESS)
            or (isinstance(default, (list, tuple)) and not default)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def configure_output(quiet: bool) -> Callable[[], None]:
    """Progress and log lines for one command: INFO and up on stderr, or only warnings when ``quiet``.

    Returns:
        A function restoring the previous settings (``main`` may run several times in one process).
    """
    from byu_motor import progress

    was_quiet, logger = progress.is_quiet(), logging.getLogger("byu_motor")
    level = logger.level
    progress.set_quiet(quiet)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.WARNING if quiet else logging.INFO)

    def restore() -> None:
        progress.set_quiet(was_quiet)
        logger.setLevel(level)

    return restore


# Errors a user can fix (a bad file, setting or output path): one line and exit 2. The library's own
# error classes (LabelError, SubmissionError, ExternalVolumeError, ...) subclass ValueError.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `byu-motor` console script; returns the process exit code.

    0 on success, 2 on a usage or expected error (one ``byu-motor CMD: error: ...`` line on stderr), 1 on
    an unexpected error (one line; the traceback too with ``--debug``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    prog = f"byu-motor {args.command}"
    restore = configure_output(bool(getattr(args, "quiet", False)))
    try:
        return int(args._run(args) or 0)
    except EXPECTED_ERRORS as err:
        if args.debug:
            traceback.print_exc()
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug else " (rerun with --debug for the traceback)"
        print(f"{prog}: unexpected error: {type(err).__name__}: {_one_line(err)}{hint}", file=sys.stderr)
        return 1
    finally:
        restore()


def _one_line(err: BaseException) -> str:
    """The error's message on one line (a multi-line message is joined with `` | ``)."""
    text = str(err) or type(err).__name__
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
