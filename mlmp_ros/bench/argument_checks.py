"""Checks shared by every bench command and the Python functions behind them: user errors and numbers.

Numeric arguments: one check for every command (run, suite, stream, replay-live).  On the command
line the checks are argparse types, so a bad value ends the command with status 2 and the
argument's name before anything starts (no bag read, no node launched).  Rates, speeds and time
limits are finite and > 0; counts of frames, images, trials and batches are integers >= 1.  The
module sits below ``cli`` because the Python functions (``data.world``, ``camera.replay_live``)
and ``mlmp-demo`` use it too.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


class UsageError(ValueError):
    """A command-line value is invalid."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the argument and what it allows, then where the
    help is), exit status 2, instead of the usage block and the error; sub-commands inherit it."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 trial', '3 trials' ('0 trials')."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


NUMBER_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "positive_number": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    "non_negative_number": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "positive_int": (lambda v: _is_integer(v) and v >= 1, "an integer >= 1"),
    "non_negative_int": (lambda v: _is_integer(v) and v >= 0, "an integer >= 0"),
}


def check_number(name: str, value: Any, kind: str) -> None:
    """Raise :class:`UsageError` unless ``value`` is of ``kind`` (a key of :data:`NUMBER_KINDS`)."""
    ok, what = NUMBER_KINDS[kind]
    if not ok(value):
        raise UsageError(f"{name} must be {what}, not {value!r}")


def argument_type(kind: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` that parses a value and checks it is of ``kind``."""
    ok, what = NUMBER_KINDS[kind]

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'")
        return value

    convert.__name__ = kind  # argparse names the type in some messages
    return convert


positive_number = argument_type("positive_number", float)  # rates in Hz, speeds, seconds
non_negative_number = argument_type("non_negative_number", float)  # e.g. GPUs per trial (0: none)
positive_int = argument_type("positive_int", int)  # frame and image limits, trials, batch sizes
non_negative_int = argument_type("non_negative_int", int)  # retries, examples kept
