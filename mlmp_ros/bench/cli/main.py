"""``mlmp-bench``: write bench bags, run them offline, run suites, make reports.

    mlmp-bench make-bags voc20 /data/VOCdevkit/VOC2012 --corruptions all --out bags/
    mlmp-bench run bags/voc20/original --method mlmp --set model=ViT-B-16-quickgelu --out results/
    mlmp-bench suite config/suites/paper87.yaml --list
    mlmp-bench suite config/suites/paper87.yaml          # resumes a killed run
    mlmp-bench report results/ --out results/report

User errors (a wrong data root, a bad bag, a bad config, a bad value) print one line and exit 2;
anything else is a fault of the program and shows its traceback (exit 1).  ``--debug`` shows the
traceback of user errors too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ...core.config import ConfigError
from ..argument_checks import OneLineParser, UsageError
from ..data.bags import BagError
from ..data.entry import DatasetError
from ..offline.options import RunError
from ..report.tables import ReportError
from ..suite.file import SuiteError
from ..suite.ray_settings import ClusterError
from ..suite.store import StoreError
from .camera_commands import add_replay_live, add_stream
from .data_commands import add_make_bags, add_settings
from .suite_commands import PROG, add_report, add_run, add_suite

# Each adds its parser and sets ``handler=<function(args) -> int>``.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    add_make_bags, add_run, add_suite, add_report, add_settings, add_stream, add_replay_live,
)  # fmt: skip

USER_ERRORS: tuple[type[BaseException], ...] = (
    UsageError, ConfigError, DatasetError, BagError, SuiteError, StoreError, ReportError, RunError, ClusterError,
)  # fmt: skip


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's to fix: one line, no traceback.  The backbone's (a model name or
    weights that do not exist) count when the backbone module was loaded: it imports torch."""
    backbone = sys.modules.get("mlmp_ros.core.backbone")
    extra = (backbone.ModelNameError, backbone.WeightsError) if backbone is not None else ()
    return USER_ERRORS + extra


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description="Offline benchmark of test-time adaptation for open-vocabulary segmentation."
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors too (default: one line; also MLMP_BENCH_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or bool(os.environ.get("MLMP_BENCH_DEBUG"))
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as err:
        if debug or not isinstance(err, user_errors()):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
