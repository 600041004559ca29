"""One CLI grammar: every option of every registered command has help (with its default), DATA is positional
and cannot be swallowed, old option names still work, and ``models`` tells every preset apart."""

from __future__ import annotations

import argparse

import pytest

from byu_motor.cli import COMMANDS, build_parser, main


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: p for action in actions for name, p in action.choices.items()}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    """Every registered sub-command's parser (also those other modules add to COMMANDS later)."""
    return _children(build_parser())


def _leaves() -> dict[str, argparse.ArgumentParser]:
    """Every command that runs, nested actions included: ``{"labels apply": parser, "train": parser, ...}``."""
    todo, leaves = list(_subparsers().items()), {}
    while todo:
        name, parser = todo.pop()
        children = _children(parser)
        todo += [(f"{name} {child}", p) for child, p in children.items()]
        if not children:
            leaves[name] = parser
    return leaves


def test_every_registered_command_is_walked() -> None:
    subs = _subparsers()
    assert set(subs) == set(COMMANDS)  # every command module of this build loads
    assert {"train", "predict", "synth", "score", "demo", "models"} <= set(subs)


@pytest.mark.parametrize("name", sorted(_leaves()))
def test_every_option_has_help_and_shows_its_default(name: str) -> None:
    sub = _leaves()[name]
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue  # -h, and hidden aliases of renamed options
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{name} {label}: no help text"
        shown = sub._get_formatter()._get_help_string(action) % {**vars(action), "prog": sub.prog}
        trivial = action.default in (None, False, "", [], ()) or not action.option_strings
        assert trivial or "default" in shown.lower(), f"{name} {label}: help does not show its default"
    assert "--quiet" in sub._option_string_actions, f"{name}: no --quiet"
    assert sub.format_help()  # the help renders


def test_help_exits_zero(capsys) -> None:
    for name in _leaves():
        with pytest.raises(SystemExit) as info:
            main([*name.split(), "--help"])
        assert info.value.code == 0
        assert "--quiet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "DATA_DIR", "--checkpoints", "a.pt", "b.pt"],
        ["predict", "--checkpoints", "a.pt", "b.pt", "DATA_DIR"],
        ["predict", "--out", "s.csv", "--checkpoints", "a.pt", "b.pt", "DATA_DIR", "--devices", "cpu"],
    ],
)
def test_predict_data_is_found_before_or_after_checkpoints(argv: list[str]) -> None:
    from byu_motor.commands.predict import data_and_checkpoints

    args = build_parser().parse_args(argv)
    assert data_and_checkpoints(args) == ("DATA_DIR", ["a.pt", "b.pt"])


def test_predict_reports_missing_data(tmp_path, capsys) -> None:
    ckpt = tmp_path / "a.pt"
    ckpt.write_bytes(b"")
    # a checkpoint file last is not taken for DATA
    assert main(["predict", "--checkpoints", str(tmp_path / "b.pt"), str(ckpt)]) == 2
    assert "missing DATA" in capsys.readouterr().err
    assert main(["predict", "--checkpoints", str(ckpt)]) == 2
    assert "missing DATA" in capsys.readouterr().err


def test_train_takes_data_positionally_and_by_its_old_option() -> None:
    parse = build_parser().parse_args
    new = parse(["train", "D", "--preset", "tiny", "--out", "o", "--devices", "cpu"])
    old = parse(["train", "--data", "D", "--preset", "tiny", "--out", "o", "--device", "cpu"])
    assert (new.data, new.device) == ("D", "cpu")
    assert (old.data or old.data_option, old.device) == ("D", "cpu")
    shown = [line.split()[0] for line in _subparsers()["train"].format_help().splitlines() if line.strip()]
    assert "--data" not in shown and "--device" not in shown and "--devices" in shown  # old names hidden


def test_train_without_data_is_a_one_line_error(tmp_path, capsys) -> None:
    assert main(["train", "--preset", "tiny", "--out", str(tmp_path / "run")]) == 2
    assert "byu-motor train: error: give the data folder" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_predict_takes_the_old_device_name() -> None:
    args = build_parser().parse_args(["predict", "D", "--checkpoints", "a.pt", "--device", "cpu"])
    assert args.devices == "cpu"


def test_models_rows_are_all_different(capsys) -> None:
    assert main(["models", "--no-params"]) == 0
    out = capsys.readouterr().out
    table = out.split("Presets")[1].strip().splitlines()[1:]  # header, rule, rows
    rows = [line.split()[1:] for line in table[2:]]  # without the name
    assert len(rows) >= 2 and len({tuple(r) for r in rows}) == len(rows)


def test_distinguishing_keys_adds_only_what_tells_presets_apart() -> None:
    from byu_motor.commands.models import distinguishing_keys, flatten

    flat = {
        "a": flatten(
            {"name": "a", "model": {"encoder": "r", "stride": 4}, "train": {"amp": False, "lr": 1.0}}
        ),
        "b": flatten(
            {"name": "b", "model": {"encoder": "r", "stride": 4}, "train": {"amp": True, "lr": 1.0}}
        ),
        "c": flatten(
            {"name": "c", "model": {"encoder": "x", "stride": 4}, "train": {"amp": True, "lr": 2.0}}
        ),
    }
    assert flat["a"]["train.amp"] is False
    assert distinguishing_keys(flat, ["model.encoder"]) == ["model.encoder", "train.amp"]
    assert distinguishing_keys({"a": flat["a"]}, ["model.stride"]) == ["model.stride"]
