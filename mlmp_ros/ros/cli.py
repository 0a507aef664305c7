"""The command line of ``mlmp-segment``: usage, logging, the ``-p`` overrides ROS drops,
start-up errors and signals, and the run of a node class from start to exit.

``mlmp_ros.ros.main.main`` (the console script) runs :class:`~mlmp_ros.ros.node.SegmentNode`
(or its managed form) through :func:`run`; this module does not import the node, so the node can use it.
"""

from __future__ import annotations

import ctypes
import faulthandler
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
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from ..constants import NODE_NAME
from ..core import ConfigError, ModelNameError, WeightsError
from .inbox import STOP_TIMEOUT
from .paramfile import render_effective
from .params import parameter_specs, plain

USAGE = """usage: mlmp-segment [-h] [--print-params] [--ros-args ...]

The mlmp_ros segmentation node: camera images in (image, or image/compressed with
input.compressed), segmentation/labels, segmentation/confidence, segmentation/colored,
segmentation/label_info and /diagnostics out; services ~/reset and ~/enable. With
-p cameras:="[front, rear]": one model for several cameras, front/image ->
front/segmentation/..., and ~/<camera>/reset.

options:
  -h, --help      show this help and exit
  --print-params  print the effective value of every parameter for this command line
                  (its --ros-args), each with where it came from (default, parameter
                  file, -p), as a parameter file; then exit
  --ros-args ...  ROS arguments: --params-file FILE, -p name:=value, -r from:=to

  mlmp-segment --ros-args -r image:=/camera/image_raw        # the robot settings
  mlmp-segment --print-params > my_robot.yaml                  # the defaults, to edit
  mlmp-segment --ros-args --params-file my_robot.yaml -r image:=/camera/image_raw
  mlmp-segment --ros-args -p adaptation.steps:=5 -p cameras:="[front, rear]"

Settings, in order: the node's defaults are the robot settings (continual MLMP on a
second thread, with safeguards; mlmp_ros/config/robot.yaml writes them out); a
--params-file overrides only what it names; -p overrides both. config/segment.yaml in
the repository holds the paper's benchmark settings instead.
Without real CLIP weights: -p model:=mlmp-world -p weights:=world (the bundled world model).
`ros2 param describe /mlmp_segment <name>` describes a parameter of a running node (ros2cli:
a system ROS 2 install; on the pip route see docs/node/parameters.md, without ros2cli).
"""

PRINT_PARAMS = "--print-params"
OPTIONS = ("-h", "--help", PRINT_PARAMS)  # before --ros-args


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


def _fail(message: str, code: int = 1) -> int:
    print(f"mlmp-segment: error: {message}", file=sys.stderr, flush=True)
    return code


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
        applied = _value_or_empty(node, name)
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
    """The node's defaults written out as a parameter file (package data; see ros/paramfile.py)."""
    from ..resources import package_data_path

    return package_data_path("config", "robot.yaml")


def argument_problem(argv: list[str]) -> str | None:
    """What is wrong with the command line before ROS starts, in one line; None when nothing is."""
    before_ros = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    unknown = [a for a in before_ros if a not in OPTIONS]
    if unknown:
        return f"unrecognized arguments: {' '.join(unknown)} (options: {', '.join(OPTIONS)}, --ros-args ...)"
    tokens = _ros_arguments(argv)
    for flag, path in itertools.pairwise([*tokens, ""]):
        if flag != "--params-file":
            continue
        if not path or not Path(path).is_file():
            return f"--params-file {path or '(missing)'}: no such file"
        try:
            yaml.safe_load(Path(path).read_text())
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            return f"--params-file {path} is not a YAML parameter file: {' '.join(str(exc).split())}"
    return None


def parameter_sources(node: Node, argv: list[str]) -> dict[str, str]:
    """Where each parameter's value came from: ``-p``, the parameter file(s) or (absent) the default."""
    from_cli = command_line_overrides(argv)
    files = [b for a, b in itertools.pairwise(_ros_arguments(argv)) if a == "--params-file"]
    overrides = getattr(node, "_parameter_overrides", {}) or {}
    sources = {name: f"parameter file {', '.join(files)}" for name in overrides}
    sources.update({name: "-p" for name in from_cli})
    return sources


def _value_or_empty(node: Node, name: str) -> Any:
    """A parameter's value; a list parameter left empty (ROS leaves it uninitialised) is ``[]``."""
    try:
        value = plain(node.get_parameter(name).value)
    except ParameterUninitializedException:
        return []
    return [] if value is None else value


def print_params(node_class: Callable[[], Any], argv: list[str]) -> int:
    """``--print-params``: the effective parameters of this command line, as a parameter file."""
    try:
        rclpy.init(args=argv)
    except Exception as exc:  # noqa: BLE001 - rcl reports bad --ros-args as RCLError
        return _fail(f"cannot read the ROS arguments: {exc}", 2)
    try:
        node = node_class()
        check_overrides(node, argv)
        values = {s.name: _value_or_empty(node, s.name) for s in parameter_specs() if not s.name.startswith("dev.")}
        sources = parameter_sources(node, argv)
        node.destroy_node()
    except STARTUP_ERRORS as exc:
        return _fail(f"invalid parameters: {' '.join(str(exc).split())}", 2)
    finally:
        rclpy.try_shutdown()
    header = ["# mlmp-segment: the effective parameters of this command line, each with where its value",
              "# came from (default: the node's defaults, the robot settings; a parameter file; -p)."]
    sys.stdout.write(render_effective(values, sources, header))
    return 0


EXECUTOR_THREADS = 4  # the node's MultiThreadedExecutor (its pool starts threads as callbacks need them)
HEAP_ARENAS = 2  # glibc malloc arenas for the node process (see limit_heap_arenas)


def limit_heap_arenas(arenas: int = HEAP_ARENAS) -> None:
    """Cap glibc's malloc arenas (unless MALLOC_ARENA_MAX is set).  Every new thread that allocates
    gets an arena of its own, up to 8 per core, and a lifecycle cycle starts new threads (the worker,
    the adaptation threads): memory freed in those arenas stays with the process, so RSS climbed
    ~150 MB over the first cycles (4 cameras) before it levelled off; with two arenas it stays flat
    (benchmarks/node_accounting.py).  A no-op off glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass


M_ARENA_MAX = -8  # glibc's mallopt parameter number


def report_crashes() -> None:
    """On a crash in native code (the DDS layer, torch), Python's stacks go to the log, not nothing."""
    try:
        faulthandler.enable()
    except (AttributeError, ValueError, OSError):  # a standard error without a file descriptor
        pass


def run(node_class: Callable[[], Any], args: list[str] | None = None) -> int:
    """Start ``node_class()`` (a SegmentNode: ``start``/``stop``) from the command line ``args``
    (``sys.argv`` when None), spin it until a signal or shutdown; returns the exit code."""
    argv = list(sys.argv if args is None else args)
    report_crashes()
    limit_heap_arenas()
    before_ros = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if any(a in ("-h", "--help") for a in before_ros):
        print(USAGE, end="")
        return 0
    problem = argument_problem(argv)
    if problem:
        return _fail(f"{problem}; see mlmp-segment --help", 2)
    if PRINT_PARAMS in before_ros:
        return print_params(node_class, argv)
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
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
        node = node_class()
        check_overrides(node, argv)
        node.start()
        # Still inside the try: a SIGINT right after "ready" (before spinning) is a clean start-up stop.
        executor.add_node(node)
        interrupt.armed = False
    except STARTUP_ERRORS as exc:
        invalid = isinstance(exc, (ConfigError, ParameterException))
        what = "invalid parameters" if invalid else "cannot load the model"
        return _fail(f"{what}: {' '.join(str(exc).split())}", 2 if invalid else 1), node, executor
    except KeyboardInterrupt:
        return 0, node, executor
    return None, node, executor


def _spin(node: Any, executor: MultiThreadedExecutor) -> int:
    try:
        executor.spin_until_future_complete(node.finished)  # a lifecycle shutdown ends the process too
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
