"""The node's own settings (``input.*``, ``output.*``, ``diagnostics.*``, ``dev.*``), declared
like the core's (core/schema.py).  Imports no ROS package, so the benchmark and the demo can
read the node's parameter file without ROS installed.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core import schema
from ..core.config import Config, ConfigError
from ..core.schema import Setting, setting
from ..robot import ROBOT_ADAPTATION, SAMPLE_SETTINGS

RELIABILITIES = ("auto", "reliable", "best_effort")
CONFIDENCE_ENCODINGS = ("32FC1", "mono8")


CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _cameras(names: list[str]) -> str | None:
    """Camera names become namespaces (``<camera>/image``): ROS name tokens, each once."""
    bad = [n for n in names if not CAMERA_NAME.fullmatch(str(n))]
    if bad:
        return f"must be ROS name tokens (a letter, then letters, digits, _), not {', '.join(map(repr, bad))}"
    if len(set(names)) != len(names):
        return f"must name each camera once, not {names}"
    return None


@dataclass(frozen=True)
class NodeSettings:
    """The node's own settings; each field's ``name`` is its ROS parameter."""

    cameras: tuple[str, ...] = setting((), name="cameras", check=_cameras,
                                       help="camera names, e.g. [front, rear]: one model serves <camera>/image of "
                                       "each into <camera>/segmentation/...; [] (the default): one camera on image")
    autostart: bool = setting(True, name="autostart",
                              help="configure and activate at start-up (false: wait for a lifecycle manager's "
                              "change_state; needs lifecycle_msgs)")

    compressed: bool = setting(False, name="input.compressed",
                               help="subscribe to image/compressed (jpeg/png) instead of image")
    reliability: str = setting("auto", name="input.reliability", choices=RELIABILITIES,
                               help="input QoS reliability (auto: match the camera publisher)")
    depth: int = setting(1, name="input.depth", range="[1, 1000]", help="input QoS history depth")
    max_windows: int = setting(64, name="input.max_windows", range="[1, inf)",
                               help="refuse (count as bad) a frame that needs more sliding windows than this after "
                               "the resize (thin frames: 1x4000 needs 7999)")
    max_pixels: int = setting(7680 * 4320, name="input.max_pixels", range="[1, inf)",  # 8K UHD
                              help="refuse (count as bad) a frame of more pixels than this (7680x4320; compressed: "
                              "read from the header before decoding)")
    max_rate_hz: float = setting(0.0, name="input.max_rate_hz", range="[0, inf)", runtime=True,
                                 help="process at most this many frames per second (0: no cap); the newest frame wins")
    confidence: bool = setting(True, name="output.confidence", runtime=True, help="publish segmentation/confidence")
    confidence_encoding: str = setting("32FC1", name="output.confidence_encoding", choices=CONFIDENCE_ENCODINGS,
                                       runtime=True, help="32FC1: probability 0..1; mono8: round(255 p), as Nav2's "
                                       "semantic_segmentation_layer reads it")
    colored: bool = setting(False, name="output.colored", runtime=True,
                            help="publish segmentation/colored (rgb8 palette image)")
    blend: float = setting(0.0, name="output.blend", range="[0, 1]", runtime=True,
                           help="weight of the input image under the palette in segmentation/colored "
                           "(0: palette only, 1: input only)")
    diagnostics_period: float = setting(1.0, name="diagnostics.period", range="(0, inf)",
                                        help="seconds between /diagnostics messages")
    stall_warn_factor: float = setting(5.0, name="diagnostics.stall_warn_factor", range="[1, inf)",
                                       help="WARN when, while input arrives, no frame finished for this many "
                                       "expected frame times")
    stall_error_factor: float = setting(20.0, name="diagnostics.stall_error_factor", range="[1, inf)",
                                        help="ERROR when, while input arrives, no frame finished for this many "
                                        "expected frame times")
    step_delay: float = setting(0.0, name="dev.step_delay", range="[0, inf)", runtime=True,
                                help="TESTS ONLY: sleep this many seconds before every adaptation step "
                                "(makes a frame slow)")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> NodeSettings:
        """Validated settings from parameter values (other parameters are skipped, missing ones default)."""
        problems: list[str] = []
        # A list parameter left empty has no value (None, or its declared type): the default holds.
        data = {f: _plain(values[name]) for name, f in NODE_FIELDS.items() if _given(values.get(name))}
        settings = schema.build(cls, data, problems)
        if not problems:
            problems = settings.problems()
        if problems:
            raise ConfigError(problems)
        return settings

    def replace(self, changes: Mapping[str, Any]) -> NodeSettings:
        """A validated copy with parameter-name changes, e.g. ``{"output.blend": 0.5}``."""
        return NodeSettings.from_values({**self.as_values(), **changes})

    def as_values(self) -> dict[str, Any]:
        return {name: _plain(getattr(self, f)) for name, f in NODE_FIELDS.items()}

    def problems(self) -> list[str]:
        """The declared rules (names, choices, ranges), then the one that ties two settings together."""
        p = schema.problems(self)
        if self.stall_warn_factor > self.stall_error_factor:
            p.append(f"diagnostics.stall_warn_factor ({self.stall_warn_factor}) and stall_error_factor "
                     f"({self.stall_error_factor}) must satisfy 1 <= warn <= error")
        return p


def _given(value: Any) -> bool:
    """Whether a parameter has a value (ROS leaves an empty list unset: None, or the type it was declared with)."""
    return isinstance(value, (bool, int, float, str, list, tuple)) and not isinstance(value, enum.Enum)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# Parameter name -> NodeSettings field, and the node's own parameters with their defaults.
NODE_FIELDS: dict[str, str] = {s.name: s.path[-1] for s in schema.settings(NodeSettings)}
NODE_DEFAULTS: dict[str, Any] = NodeSettings().as_values()
# Parameters for tests only: declared, but not in config/segment.yaml.
DEV_PARAMETERS = tuple(name for name in NODE_FIELDS if name.startswith("dev."))
# Top-level parameter groups that belong to the node (and ROS's use_sim_time), not to the
# core: the core loader skips them when it reads the node's parameter file.
NODE_GROUPS: tuple[str, ...] = (*dict.fromkeys(name.split(".")[0] for name in NODE_FIELDS), "use_sim_time")

# Core settings that are lists in the core but one string as a ROS parameter
# ("auto" or "-1,-2,-3"; "auto", a prompt-file name or a YAML file).
STRING_SETTINGS = ("layers", "templates")

# Core settings whose value in config/segment.yaml (the paper's protocol, for the benchmark, the
# tests and the demo) differs from the core's: the core keeps the paper protocol's fp32, a node the
# fastest precision its hardware has; the sample stream's classes and size.
PAPER_FILE_DEFAULTS: dict[str, Any] = {"precision": "auto", **SAMPLE_SETTINGS}
# The node's own defaults for the core settings: the robot settings (mlmp_ros/robot.py) on top.  A
# parameter file overrides only what it names; -p overrides both.
NODE_CORE_DEFAULTS: dict[str, Any] = {**PAPER_FILE_DEFAULTS, **ROBOT_ADAPTATION}


def declared_settings() -> list[Setting]:
    """Every node parameter's declaration: the core's settings, then the node's own (core/schema.py)."""
    return [*schema.settings(Config), *schema.settings(NodeSettings)]


def ros_value(name: str, value: Any) -> Any:
    """A core setting in the form its ROS parameter takes (no empty lists: ROS cannot type them)."""
    if name in STRING_SETTINGS:
        return ",".join(str(v) for v in value) if value else "auto"
    if name == "resize" and not value:
        return [0]
    return value


def node_default(s: Setting) -> Any:
    """A parameter's default as the node declares it (the robot settings)."""
    return _plain(NODE_CORE_DEFAULTS.get(s.name, ros_value(s.name, s.default)))


def paper_file_value(s: Setting) -> Any:
    """A parameter's value in config/segment.yaml (the paper's protocol)."""
    return _plain(PAPER_FILE_DEFAULTS.get(s.name, ros_value(s.name, s.default)))
