"""`byu-motor recipe`: print the resolved settings of a checkpoint, a preset or an ensemble recipe as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = (
    "Print the resolved settings of a checkpoint, preset or ensemble recipe file as JSON (every --set key)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``byu-motor recipe``."""
    parser.add_argument(
        "source",
        metavar="CKPT_OR_PRESET",
        help="a checkpoint file, a preset name (byu-motor models lists them) or an ensemble recipe .json",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override (any section for a checkpoint or preset, infer.* for a recipe file; repeatable)",
    )


def resolve(source: str, overrides: list[str]) -> dict:
    """The resolved settings of ``source`` as a JSON-ready dict.

    A checkpoint or preset gives its whole config (``model``, ``data``, ``train``, ``infer``) with
    ``overrides`` applied; an ensemble recipe file gives ``{"members": [...], "infer": {...}}`` as
    ``byu-motor predict --recipe`` would predict with it.

    Raises:
        ValueError: an unknown preset, an unreadable checkpoint or recipe, or a bad override.
    """
    path = Path(source)
    if path.suffix == ".json":
        from byu_motor.infer.recipe import read_recipe_file, recipe_dict, resolve_infer

        recipe = read_recipe_file(path)
        return recipe_dict(recipe.members, resolve_infer(recipe.members, [*recipe.sets, *overrides]))
    if path.is_file():
        from byu_motor.models.checkpoint import read_checkpoint_config

        cfg = read_checkpoint_config(path).config
    else:
        from byu_motor.presets import get_preset

        cfg = get_preset(source)
    return cfg.override(overrides).to_dict()


def run(args: argparse.Namespace) -> int:
    """Print the JSON; returns 0 (bad input raises: see :func:`byu_motor.cli.main`)."""
    print(json.dumps(resolve(args.source, args.set), indent=2))
    return 0
