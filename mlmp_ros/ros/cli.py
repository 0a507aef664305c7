"""The command line of ``mlmp-segment``: usage, logging, the ``-p`` overrides ROS drops,
start-up errors and signals, and the run of a node class from start to exit.

``mlmp_ros.ros.main.main`` (the console script) runs :class:`~mlmp_ros.ros.node.SegmentNode`
(or its managed form) through :func:`run`; this module does not import the node, so the node can use it.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
import yaml
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from ..constants import NODE_NAME
from ..core import ConfigError, ModelNameError, WeightsError
from .params import plain
from .worker import STOP_TIMEOUT

USAGE = """usage: mlmp-segment [-h] [--print-params] [--ros-args ...]

The mlmp_ros segmentation node: camera images in (image, or image/compressed with
input.compressed), segmentation/labels, segmentation/confidence, segmentation/colored,
segmentation/label_info and /diagnostics out; services ~/reset and ~/enable.

  mlmp-segment -r image:=/camera/image_raw      # the robot parameter file, see below
  mlmp-segment --print-params > my_robot.yaml   # write that file out, to edit it
  mlmp-segment --ros-args --params-file my_robot.yaml -r image:=/camera/image_raw
  mlmp-segment --ros-args -p adaptation.steps:=5 -p cameras:="[front, rear]"

Without --params-file the node starts from the robot parameter file shipped in the
package (mlmp_ros/config/robot.yaml, every parameter with its meaning; what
--print-params prints); -p overrides and your own --params-file go on top of it.
`ros2 param describe /mlmp_segment <name>` describes a parameter of a running node.
"""

PRINT_PARAMS = "--print-params"


class _RosLogHandler(logging.Handler):
    """Python logging (the core, open_clip) to the ROS logger, so every line looks alike."""

    def emit(self, record: logging.LogRecord) -> None:
        name = NODE_NAME if record.name == "root" else record.name
        logger = rclpy.logging.get_logger(name)
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            logger.error(text)
        elif record.levelno >= logging.WARNING:
            logger.warning(text)
        elif record.levelno >= logging.INFO:
            logger.info(text)
        else:
            logger.debug(text)


def _setup_logging() -> None:
    root = logging.getLogger()
    root.handlers[:] = [_RosLogHandler()]
    root.setLevel(logging.WARNING)
    logging.getLogger("mlmp_ros").setLevel(logging.INFO)
    logging.captureWarnings(True)
    # The core logs this one itself; as a Python warning it would print twice.
    warnings.filterwarnings("ignore", message="RANDOM WEIGHTS")


STARTUP_ERRORS = (ConfigError, WeightsError, ModelNameError, ParameterException, FileNotFoundError)


def _fail(message: str) -> int:
    print(f"mlmp-segment: error: {message}", file=sys.stderr, flush=True)
    return 1


class _Interrupt:
    """SIGINT before spinning interrupts the start-up; after that, rclpy's own handler
    shuts the context down and the spin ends.  Raising then too could land a
    KeyboardInterrupt in the middle of the clean-up."""

    def __init__(self) -> None:
        self.armed = True

    def __call__(self, signum: int, frame: Any) -> None:
        if self.armed:
            raise KeyboardInterrupt


def _ros_arguments(argv: list[str]) -> list[str]:
    """The tokens inside ``--ros-args ... [--]`` sections."""
    out, inside = [], False
    for token in argv:
        if token == "--ros-args":
            inside = True
        elif token == "--" and inside:
            inside = False
        elif inside:
            out.append(token)
    return out


def command_line_overrides(argv: list[str]) -> dict[str, str]:
    """``-p name:=value`` / ``--param name:=value`` of the command line (the last one per name), as text."""
    tokens = _ros_arguments(argv)
    found: dict[str, str] = {}
    for flag, arg in itertools.pairwise(tokens):
        if flag in ("-p", "--param") and ":=" in arg:
            name, text = arg.split(":=", 1)
            found[name.split(":", 1)[-1] if name.count(":") == 1 else name] = text
    return found


def _same_value(text: str, applied: Any) -> bool:
    """Whether the applied parameter value is what ``-p name:=text`` asked for."""
    try:
        given = yaml.safe_load(text)
    except yaml.YAMLError:
        given = text
    applied = plain(applied)
    if isinstance(applied, str):
        return str(given) == applied or text.strip().strip("'\"") == applied
    if isinstance(applied, bool) or isinstance(given, bool):
        return given is applied
    if isinstance(applied, (int, float)):
        try:
            return type(applied)(float(text) if isinstance(applied, float) else int(text)) == applied
        except ValueError:
            return False
    if isinstance(applied, list) and isinstance(given, list) and len(given) == len(applied):
        return all(_same_value(yaml.safe_dump(g).strip().removesuffix("...").strip(), a) for g, a in zip(given, applied))
    return given == applied


def check_overrides(node: Node, argv: list[str]) -> None:
    """Refuse ``-p`` overrides that ROS dropped (a type mismatch beside --params-file is silently ignored)."""
    problems = []
    for name, text in command_line_overrides(argv).items():
        if not node.has_parameter(name):
            continue
        applied = node.get_parameter(name).value
        if not _same_value(text, applied):
            problems.append(f"-p {name}:={text} was not applied (the parameter is {_describe(applied)}, now "
                            f"{applied!r} from the parameter file or default): give {_kind_of(applied)}")
    if problems:
        raise ConfigError(problems)


def _describe(value: Any) -> str:
    value = plain(value)
    if isinstance(value, list):
        return "a list"
    return {bool: "a boolean", int: "an integer", float: "a floating-point number", str: "a string"}.get(
        type(value), type(value).__name__)


def _kind_of(value: Any) -> str:
    value = plain(value)
    if isinstance(value, list):
        return parameter_kind(value) if value else "a list"
    return parameter_kind(value)


def parameter_kind(default: Any) -> str:
    """How a parameter's type reads in an error message."""
    kinds = {bool: "true or false", int: "an integer", float: "a floating-point number (write 1.0, not 1)",
             str: "a string"}
    if not isinstance(default, (list, bool, int, float, str)):  # an empty list, declared by its type
        return "a list of strings"
    if isinstance(default, list):
        return "a list of " + {bool: "booleans", int: "integers", float: "floating-point numbers",
                               str: "strings"}[type(default[0])]
    return kinds[type(default)]


def robot_params_file() -> Path:
    """The robot parameter file shipped in the package (package data; see ros/paramfile.py)."""
    from ..resources import package_data_path

    return package_data_path("config", "robot.yaml")


def with_default_params_file(argv: list[str]) -> list[str]:
    """``argv`` with the robot parameter file first when no ``--params-file`` is given.

    It goes before every other ROS argument, so ``-p`` overrides still win over it."""
    if "--params-file" in _ros_arguments(argv):
        return argv
    return [argv[0], "--ros-args", "--params-file", str(robot_params_file()), "--", *argv[1:]]


def run(node_class: Callable[[], Any], args: list[str] | None = None) -> int:
    """Start ``node_class()`` (a SegmentNode: ``start``/``stop``) from the command line ``args``
    (``sys.argv`` when None), spin it until a signal or shutdown; returns the exit code."""
    argv = list(sys.argv if args is None else args)
    before_ros = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if any(a in ("-h", "--help") for a in before_ros):
        print(USAGE, end="")
        return 0
    if PRINT_PARAMS in before_ros:
        sys.stdout.write(robot_params_file().read_text())
        return 0
    argv = with_default_params_file(argv)
    _setup_logging()
    interrupt = _Interrupt()
    signal.signal(signal.SIGINT, interrupt)  # rclpy.init chains its handler to this one
    try:
        rclpy.init(args=argv)
    except Exception as exc:  # noqa: BLE001 - rcl reports bad --ros-args as RCLError
        return _fail(f"cannot start ROS 2: {exc}")
    code, node, executor = _start(node_class, argv, interrupt)
    if code is not None:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
        return code
    return _spin(node, executor)


def _start(node_class: Callable[[], Any], argv: list[str], interrupt: _Interrupt):
    """(exit code or None when started, the node or None, the executor or None)."""
    node = executor = None
    try:
        # Made before the node logs anything: a SIGINT inside the executor's constructor would leave a
        # half-made executor whose finaliser complains.
        executor = MultiThreadedExecutor(num_threads=4)
        node = node_class()
        check_overrides(node, argv)
        node.start()
        # Still inside the try: a SIGINT right after "ready" (before spinning) is a clean start-up stop.
        executor.add_node(node)
        interrupt.armed = False
    except STARTUP_ERRORS as exc:
        what = "invalid parameters" if isinstance(exc, (ConfigError, ParameterException)) else "cannot load the model"
        return _fail(f"{what}: {' '.join(str(exc).split())}"), node, executor
    except KeyboardInterrupt:
        return 0, node, executor
    return None, node, executor


def _spin(node: Any, executor: MultiThreadedExecutor) -> int:
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A SIGINT just as spinning starts: rclpy's handler shut the context down before the first
        # wait set was made (RCLError "context is not valid"). That is a stop, not a failure.
        if rclpy.ok():
            raise
    finally:
        stopped = node.stop()
        if not stopped:
            # A single step longer than the stop timeout: leave without waiting for it (exit 0; tearing
            # rclpy down under a running thread would abort the process).
            node.get_logger().warning(f"the frame in progress did not stop within {STOP_TIMEOUT:.0f} s; exiting")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
