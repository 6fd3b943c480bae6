"""Every command's parser: flags are taken only as spelt out in full (argparse's default prefix
matching would make ``train.py ... --over`` act as ``--overwrite`` and delete a run)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
import sys

import pytest

import fast_nst.commands as commands
from fast_nst.commands import CommandParser

from conftest import in_process

# Every module of fast_nst.commands with a parser (app_models is the app's helper, not a command).
COMMANDS = sorted(m.name for m in pkgutil.iter_modules(commands.__path__)
                  if hasattr(importlib.import_module(f"fast_nst.commands.{m.name}"), "parser"))


def _parsers(p: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """``p`` and the parsers of its subcommands, each with a name for messages."""
    found = [(name, p)]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += _parsers(sub, f"{name} {sub_name}")
    return found


def _nothing_required(p: argparse.ArgumentParser) -> None:
    """Make every argument of ``p`` optional, so that parsing one flag alone shows how argparse
    reads it (a missing required argument would otherwise end the parse first)."""
    for action in p._actions:
        action.required = False
        if not action.option_strings and action.nargs is None:
            action.nargs = "?"
    for group in p._mutually_exclusive_groups:
        group.required = False


def test_every_command_is_listed():
    assert {"train", "eval", "export", "convert", "download", "data", "optimize", "evaluate", "app"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_takes_a_prefix_for_a_flag(command):
    module = importlib.import_module(f"fast_nst.commands.{command}")
    tried = 0
    for name, p in _parsers(module.parser(), command):
        assert isinstance(p, CommandParser) and not p.allow_abbrev, f"{name}: use commands.new_parser"
        _nothing_required(p)
        flags = {o for a in p._actions for o in a.option_strings}
        for flag in sorted(f for f in flags if f.startswith("--") and len(f) > 4):
            prefix = flag[:-1]
            if any(f.startswith(prefix) and f != flag for f in flags):
                continue  # ambiguous anyway: argparse refuses it either way
            for arg in (prefix, f"{prefix}=1"):
                _, unknown = p.parse_known_args([arg])
                assert unknown == [arg], f"{name}: {arg!r} was taken for {flag}"
                tried += 1
    assert tried >= 2  # every command has long flags


@pytest.mark.parametrize("command", COMMANDS)
def test_help_texts_have_no_unfilled_placeholders(command):
    """A help string missing its f prefix shows '{NAME}' to the user (eval.py's --model_file did)."""
    import re

    module = importlib.import_module(f"fast_nst.commands.{command}")
    for name, p in _parsers(module.parser(), command):
        text = p.format_help()
        for action in p._actions:  # argparse shows choices as {a,b}: those are meant
            if action.choices:
                text = text.replace("{" + ",".join(map(str, action.choices)) + "}", "")
        assert not re.search(r"\{[A-Za-z_][A-Za-z_0-9.]*\}", text), f"{name}: {text}"


@pytest.mark.parametrize("flag", ["--over", "--resum"])
def test_train_refuses_a_prefix_of_overwrite_or_resume(flag, tiny_config, tmp_path, capsys):
    from fast_nst.commands.train import main as train_main

    conf = tiny_config("abbrev")
    with pytest.raises(SystemExit) as stop:
        in_process(capsys, train_main, "-c", conf, flag)
    assert stop.value.code == 2
    assert f"unrecognized arguments: {flag}" in capsys.readouterr().err
    assert not (tmp_path / "models" / "abbrev").exists()  # nothing ran


# The commands with a ``python -m fast_nst.<command>`` module (train and eval are the scripts
# train.py and eval.py, run as subprocesses in tests/test_end_to_end.py).
MODULE_COMMANDS = [c for c in COMMANDS if importlib.util.find_spec(f"fast_nst.{c}") is not None]


@pytest.mark.parametrize("command", MODULE_COMMANDS)
def test_each_module_entry_point_runs_its_command(command, capsys):
    """``python -m fast_nst.<command>`` (the entry-point module run as __main__, in-process:
    the commands' tests call their main() directly) reaches the command's parser."""
    import runpy

    argv = sys.argv
    sys.argv = [f"fast_nst.{command}", "--help"]
    try:
        with pytest.raises(SystemExit) as stop:
            runpy.run_module(f"fast_nst.{command}", run_name="__main__", alter_sys=True)
    finally:
        sys.argv = argv
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("usage:")
