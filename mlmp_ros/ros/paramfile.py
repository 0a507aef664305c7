"""The documented parameter files, generated from the settings' declarations:
``config/segment.yaml`` (every parameter, the paper's protocol: tests, benchmark, demo) and
``mlmp_ros/config/robot.yaml``, the node's own defaults (the robot settings) written out (package
data, so a pip install has it; the launch file's default ``params_file``).

Every node parameter (core settings from mlmp_ros/core/config.py, the node's own from
mlmp_ros/ros/settings.py) with its default and its help text as a comment.  Regenerate
after adding or changing a setting::

    python -m mlmp_ros.ros.paramfile --write      # rewrites both files
    python -m mlmp_ros.ros.paramfile --check      # exit 1 if a file is out of date

test/test_schema.py fails when a file and the declarations disagree.  Imports no ROS
package.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from ..core import schema
from ..core.config import Config
from ..core.schema import Setting
from .settings import DEV_PARAMETERS, NodeSettings, node_default, paper_file_value

PATH = Path(__file__).resolve().parents[2] / "config" / "segment.yaml"
# The robot parameter file, shipped inside the package (package data): mlmp-segment's default.
ROBOT_PATH = Path(__file__).resolve().parents[1] / "config" / "robot.yaml"
WIDTH = 100

HEADER = """\
# mlmp_ros segmentation node: every parameter, with its default and what it means.
# GENERATED from the settings' declarations (mlmp_ros/core/config.py, mlmp_ros/ros/settings.py):
#   python -m mlmp_ros.ros.paramfile --write
# The core settings (everything outside input.*, output.* and diagnostics.*) are the same
# ones the Python API and the benchmark use (mlmp_ros.core.Config; list: mlmp-bench settings).
# Settings marked [run time] can be changed while the node runs:
#   ros2 param set /mlmp_segment adaptation.mode continual
"""

ROBOT_HEADER = """\
# mlmp_ros segmentation node: its DEFAULTS, the robot configuration (what mlmp-segment runs
# with no parameter file; a parameter file overrides only what it names, -p overrides both).
# Continual adaptation on a second thread with the safeguards recommended for robots
# (mlmp_ros/robot.py); config/segment.yaml keeps the paper's protocol.
# GENERATED from the settings' declarations: python -m mlmp_ros.ros.paramfile --write
# The effective values of a command line: mlmp-segment --print-params [--ros-args ...]
"""


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _comment(text: str, indent: str) -> list[str]:
    # Short bracketed parts ("(in [0, 1])", "[run time]") stay on one line.
    glued = re.sub(r"\([^()]{0,32}\)|\[[^\[\]]{0,32}\]", lambda m: m[0].replace(" ", "\0"), text)
    return [f"{indent}# {line}".replace("\0", " ") for line in textwrap.wrap(glued, WIDTH - len(indent) - 2)]


def _entry(s: Setting, key: str, indent: str, robot: bool) -> list[str]:
    value, other = (node_default(s), paper_file_value(s)) if robot else (paper_file_value(s), node_default(s))
    lines = _comment(schema.describe(s), indent)
    if value != other:
        note = "the robot setting; the paper's protocol: " if robot else "the paper's protocol; the node's default: "
        lines += _comment(f"({note}{_scalar(other)})", indent)
    if isinstance(value, list) and len(value) > 4:
        lines.append(f"{indent}{key}:")
        lines += [f"{indent}  - {_scalar(v)}" for v in value]
    else:
        lines.append(f"{indent}{key}: {_scalar(value)}")
    return lines


def render(robot: bool = False) -> str:
    """The text of config/segment.yaml, or with ``robot`` of mlmp_ros/config/robot.yaml."""
    declared = [*schema.settings(Config), *(s for s in schema.settings(NodeSettings) if s.name not in DEV_PARAMETERS)]
    header = (ROBOT_HEADER if robot else HEADER).splitlines()
    return nested_yaml(declared, lambda s, key, indent: _entry(s, key, indent, robot), header)


def render_effective(values: dict[str, Any], sources: dict[str, str], header: list[str]) -> str:
    """A parameter file of ``values`` (name -> value), each line saying where its value came from."""
    declared = [s for s in [*schema.settings(Config), *schema.settings(NodeSettings)] if s.name in values]

    def entry(s: Setting, key: str, indent: str) -> list[str]:
        return [f"{indent}{key}: {_scalar(values[s.name])}  # {sources.get(s.name, 'default')}"]

    return nested_yaml(declared, entry, header)


def nested_yaml(declared: list[Setting], entry: Any, header: list[str]) -> str:
    """``/**: ros__parameters:`` with every setting under its groups; ``entry(s, key, indent)`` gives its lines."""
    lines = [*header, "/**:", "  ros__parameters:"]
    open_groups: list[str] = []
    base = "    "
    for s in declared:
        *groups, key = s.name.split(".")
        common = 0
        while common < min(len(groups), len(open_groups)) and groups[common] == open_groups[common]:
            common += 1
        open_groups = open_groups[:common]
        for g in groups[common:]:
            if not open_groups:
                lines.append("")
            lines.append(f"{base}{'  ' * len(open_groups)}{g}:")
            open_groups.append(g)
        lines += entry(s, key, base + "  " * len(open_groups))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mlmp_ros.ros.paramfile", description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"rewrite {PATH} and {ROBOT_PATH}")
    ap.add_argument("--check", action="store_true", help="exit 1 if a file differs from the declarations")
    ap.add_argument("--robot", action="store_true", help="print the robot file (default: config/segment.yaml)")
    args = ap.parse_args(argv)
    files = {PATH: render(), ROBOT_PATH: render(robot=True)}
    if args.write:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    elif args.check:
        stale = [path for path, text in files.items() if not path.is_file() or path.read_text() != text]
        for path in stale:
            print(f"{path} is out of date: python -m mlmp_ros.ros.paramfile --write", file=sys.stderr)
        return 1 if stale else 0
    else:
        sys.stdout.write(files[ROBOT_PATH if args.robot else PATH])
    return 0


if __name__ == "__main__":
    sys.exit(main())
