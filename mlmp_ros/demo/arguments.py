"""mlmp-demo's command line: the parser, and every argument checked before anything starts.

A bad value ends the demo with one line naming the argument and what it allows, exit status 2,
before a model loads or a node process starts: numbers by their argparse types, choices by
argparse, and the node parameters (the parameter file, ``--method``, ``--steps``, ``--device``,
``--set``) by the same declarations the node checks them with (core/config.py, ros/settings.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from ..bench.argument_checks import OneLineParser, positive_int, positive_number
from ..catalog import METHOD_NAMES
from ..world.shifts import SHIFTS

PROG = "mlmp-demo"
DESCRIPTION = (
    "The segmentation node on a camera stream, over real DDS on loopback. With real CLIP weights it plays the "
    "bundled sample stream (8 photographs at 10 Hz) into one node; without them (or with --world) it plays a "
    "generated world stream, whose ground truth is known, into two nodes at once (NoAdapt and the adapted "
    "configuration recommended for robots) running the bundled world model (mlmp-world), and scores each frame. "
    "A new run replaces the outputs of the last one in --out."
)


def usage_error(message: str) -> NoReturn:
    """One line on stderr, exit status 2 (as argparse does for a bad option)."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=DESCRIPTION)
    p.add_argument("--params", type=Path, default=None, help="node parameter file (default: config/segment.yaml)")
    p.add_argument("--weights", default=None, help="pretrained tag or local weights file (default: the params file's)")
    p.add_argument("--model", default=None, help="open_clip model name (default: the params file's)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the params file's)")
    p.add_argument("--method", default=None, choices=METHOD_NAMES, metavar="METHOD",
                   help=f"{', '.join(METHOD_NAMES)} (default: the params file's; with the world model, the adapted "
                   "run's, by default the robot configuration's)")  # fmt: skip
    p.add_argument("--steps", type=int, default=None, help="adaptation steps per frame, 0 or more (default: the "
                   "params file's)")  # fmt: skip
    p.add_argument("--offline", action="store_true", help="never download weights (default: download when needed)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="any other node parameter, repeatable (default: none)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder; a new run replaces the last "
                   "run's outputs there (default: ./demo_out)")  # fmt: skip
    p.add_argument("--rate", type=positive_number, default=10.0, help="camera rate in Hz (default: 10, as recorded)")
    p.add_argument("--loops", type=positive_int, default=1, help="times to play the stream (default: 1)")
    p.add_argument("--paced", action="store_true", help="send each frame only after the previous result, so nothing "
                   "is dropped (default: at the camera rate)")  # fmt: skip
    p.add_argument("--timeout", type=positive_number, default=600.0,
                   help="seconds to wait for the last result (default: 600)")  # fmt: skip
    w = p.add_argument_group("world stream (used when no real weights can be had)")
    w.add_argument("--world", action="store_true", help="run the world model on a world stream even if real weights "
                   "exist (default: only without them)")  # fmt: skip
    w.add_argument("--frames", type=positive_int, default=30, help="frames of the world stream (default: 30)")
    w.add_argument("--shift", default="fog", choices=SHIFTS, metavar="SHIFT",
                   help=f"shift that sets in over the stream: {', '.join(SHIFTS)} (default: fog)")  # fmt: skip
    w.add_argument("--seed", type=int, default=None, help="world stream seed (default: a held-out stream)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def node_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The node parameters the options give (--model, --device, --method, --steps, --offline, --set)."""
    params: dict[str, Any] = {}
    for key, value in (("model", args.model), ("device", args.device), ("adaptation.method", args.method), ("adaptation.steps", args.steps)):
        if value is not None:
            params[key] = value
    if args.offline:
        params["offline"] = True
    from ..bench.cli import UsageError, parse_sets

    try:
        params.update(parse_sets(args.set))
    except UsageError as exc:
        usage_error(str(exc))
    return params


def check_node_parameters(params_file: Path, params: dict[str, Any], args: argparse.Namespace | None = None) -> None:
    """The parameter file and the overrides, checked by the declarations the node checks them with."""
    options = {"adaptation.method": "method", "adaptation.steps": "steps", "device": "device", "model": "model"}
    given = {k: f"--{v}" for k, v in options.items() if args is not None and getattr(args, v) is not None}
    from ..core.config import Config, ConfigError
    from ..ros.settings import NODE_GROUPS, STRING_SETTINGS, NodeSettings

    if not params_file.is_file():
        usage_error(f"--params: no parameter file {params_file}")
    try:
        config = Config.from_yaml(params_file)
    except ConfigError as exc:
        usage_error(f"--params {params_file} is not a node parameter file: {exc}")
    try:
        core = {k: v for k, v in params.items() if k.split(".")[0] not in NODE_GROUPS and k not in STRING_SETTINGS}
        config.replace(**core)
        NodeSettings.from_values({k: v for k, v in params.items() if k.split(".")[0] in NODE_GROUPS})
    except ConfigError as exc:
        usage_error(f"{_flag_of(exc, given)}{exc}")


def _flag_of(exc: Exception, given: dict[str, str]) -> str:
    """The option that set a refused setting, as a prefix ('--steps: '), or '' (a --set or the file's)."""
    text = str(exc)
    return next((f"{flag}: " for name, flag in given.items() if text.startswith(name)), "")
