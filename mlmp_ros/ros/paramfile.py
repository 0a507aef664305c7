"""The documented parameter file ``config/segment.yaml``, generated from the settings' declarations.

Every node parameter (core settings from mlmp_ros/core/config.py, the node's own from
mlmp_ros/ros/settings.py) with its default and its help text as a comment.  Regenerate
after adding or changing a setting::

    python -m mlmp_ros.ros.paramfile --write      # rewrites config/segment.yaml
    python -m mlmp_ros.ros.paramfile --check      # exit 1 if the file is out of date

test/test_schema.py fails when the file and the declarations disagree.  Imports no ROS
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
from .settings import DEV_PARAMETERS, NodeSettings, node_default

PATH = Path(__file__).resolve().parents[2] / "config" / "segment.yaml"
WIDTH = 100

# Values this sample file sets on purpose, where they differ from the declared defaults:
# the demo's class list (the sample stream's scenes) and a 224-pixel short side.
FILE_VALUES: dict[str, Any] = {
    "classes": ["person", "cat", "dog", "car", "motorcycle", "bicycle", "rocket", "cup, mug", "table", "chair",
                "sky", "tree", "grass", "road", "building", "wall", "floor", "water"],
    "resize": [224],
}

HEADER = """\
# mlmp_ros segmentation node: every parameter, with its default and what it means.
# GENERATED from the settings' declarations (mlmp_ros/core/config.py, mlmp_ros/ros/settings.py):
#   python -m mlmp_ros.ros.paramfile --write
# The core settings (everything outside input.*, output.* and diagnostics.*) are the same
# ones the Python API and the benchmark use (mlmp_ros.core.Config; list: mlmp-bench settings).
# Settings marked [run time] can be changed while the node runs:
#   ros2 param set /mlmp_segment adaptation.mode continual
/**:
  ros__parameters:
"""


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _comment(text: str, indent: str) -> list[str]:
    # Short bracketed parts ("(in [0, 1])", "[run time]") stay on one line.
    glued = re.sub(r"\([^()]{0,32}\)|\[[^\[\]]{0,32}\]", lambda m: m[0].replace(" ", "\0"), text)
    return [f"{indent}# {line}".replace("\0", " ") for line in textwrap.wrap(glued, WIDTH - len(indent) - 2)]


def _entry(s: Setting, key: str, indent: str) -> list[str]:
    value = FILE_VALUES.get(s.name, node_default(s))
    lines = _comment(schema.describe(s), indent)
    if s.name in FILE_VALUES:
        lines += _comment(f"(this file's choice; the default is {_scalar(node_default(s))})", indent)
    if isinstance(value, list) and len(value) > 4:
        lines.append(f"{indent}{key}:")
        lines += [f"{indent}  - {_scalar(v)}" for v in value]
    else:
        lines.append(f"{indent}{key}: {_scalar(value)}")
    return lines


def render() -> str:
    """The text of config/segment.yaml."""
    declared = [*schema.settings(Config), *(s for s in schema.settings(NodeSettings) if s.name not in DEV_PARAMETERS)]
    lines = HEADER.splitlines()
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
        lines += _entry(s, key, base + "  " * len(open_groups))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mlmp_ros.ros.paramfile", description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"rewrite {PATH}")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from the declarations")
    args = ap.parse_args(argv)
    text = render()
    if args.write:
        PATH.write_text(text)
        print(f"wrote {PATH}")
    elif args.check:
        if PATH.read_text() != text:
            print(f"{PATH} is out of date: python -m mlmp_ros.ros.paramfile --write", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
