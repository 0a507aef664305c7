"""Every option of mlmp-demo, of every mlmp-bench sub-command and of mlmp-segment has a help text, and shows its default
where it has one (issue 27, item 4).  The list is built from the parsers, not by hand."""

from __future__ import annotations

import argparse

import pytest

from mlmp_ros.bench.cli.main import build_parser as bench_parser
from mlmp_ros.demo.arguments import build_parser as demo_parser


def walk(parser: argparse.ArgumentParser, name: str):
    """(command name, parser) of a parser and every sub-command below it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from walk(sub, f"{name} {sub_name}")


PARSERS = [*walk(demo_parser(), "mlmp-demo"), *walk(bench_parser(), "mlmp-bench")]
FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)


def test_the_walk_finds_every_sub_command() -> None:
    names = [n for n, _ in PARSERS]
    assert {"mlmp-demo", "mlmp-bench run", "mlmp-bench suite", "mlmp-bench make-bags", "mlmp-bench report",
            "mlmp-bench settings", "mlmp-bench stream", "mlmp-bench replay-live"} <= set(names)  # fmt: skip


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=[n for n, _ in PARSERS])
def test_every_option_has_help_and_shows_its_default(name: str, parser: argparse.ArgumentParser) -> None:
    formatter = parser._get_formatter()
    missing, no_default = [], []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        flag = action.option_strings[0] if action.option_strings else action.dest
        text = formatter._expand_help(action) if action.help else ""
        if not text.strip():
            missing.append(flag)
            continue
        has_default = action.default not in (None, False, argparse.SUPPRESS, "", [])
        if action.option_strings and (has_default or isinstance(action, FLAGS)) and "default" not in text.lower():
            no_default.append(flag)
    assert not missing, f"{name}: options without help: {missing}"
    assert not no_default, f"{name}: options whose help shows no default: {no_default}"


def test_help_runs_for_every_command(capsys) -> None:
    for name, parser in PARSERS:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["--help"])
        assert exit_.value.code == 0, name
        assert "usage:" in capsys.readouterr().out, name


def test_every_mlmp_segment_option_has_help() -> None:
    """mlmp-segment's own options (before --ros-args; ROS reads the rest) each have a line in its help."""
    from mlmp_ros.ros.cli import OPTIONS, USAGE

    options = USAGE.split("options:", 1)[1].split("\n\n", 1)[0]
    lines = {line.split()[0].rstrip(","): line for line in options.splitlines() if line.strip().startswith("-")}
    for option in (*OPTIONS, "--ros-args"):
        line = next((text for flag, text in lines.items() if option in text.split()[:2] or flag == option), "")
        assert len(line.split()) > 2, f"mlmp-segment {option}: no help line"
