"""Start the mlmp_segment node with a parameter file.

    ros2 launch mlmp_ros segment.launch.py image_topic:=/camera/image_raw device:=cuda mode:=continual
    ros2 launch mlmp_ros segment.launch.py namespace:=robot1 cameras:="[front, rear]" compressed:=true

Launch arguments: ``params_file`` (default: the robot parameter file shipped in the package,
what ``mlmp-segment --print-params`` prints), ``image_topic`` (remaps ``image``, and
``image/compressed`` to ``<image_topic>/compressed``), ``model``, ``weights``, ``classes``,
``cameras``, ``device``, ``mode`` (adaptation.mode), ``compressed`` (input.compressed),
``reliability`` (input.reliability), ``use_sim_time`` (empty: keep the file's value),
``namespace`` and ``node_name``.
"""

from __future__ import annotations

import os
import shutil

from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "mlmp_ros"


def _default_params_file() -> str:
    """The robot parameter file, package data of the installed mlmp_ros (colcon and pip installs alike)."""
    from mlmp_ros.ros.cli import robot_params_file

    return str(robot_params_file())


def _executable() -> dict:
    """colcon installs put the node in lib/mlmp_ros; a pip install puts it on PATH."""
    try:
        if os.path.isfile(os.path.join(get_package_prefix(PACKAGE), "lib", PACKAGE, "mlmp-segment")):
            return {"package": PACKAGE, "executable": "mlmp-segment"}
    except (PackageNotFoundError, OSError):
        pass
    found = shutil.which("mlmp-segment")
    if found is None:
        raise RuntimeError("mlmp-segment is neither in lib/mlmp_ros of an ament prefix nor on PATH; install mlmp_ros")
    return {"executable": found}


# Launch arguments that set one node parameter each (empty: keep the parameter file's value),
# with the parameter they set and their description.
PARAMETER_ARGUMENTS = {
    "model": ("model", "open_clip model name, or mlmp-world"),
    "weights": ("weights", "open_clip tag (openai), a weights file, or world (with model mlmp-world)"),
    "classes": ("classes", "YAML list of classes, e.g. \"[person, 'car, truck', road]\", or a built-in list (voc21)"),
    "cameras": ("cameras", "YAML list of camera names, e.g. [front, rear]: one model for <camera>/image each"),
    "device": ("device", "auto | cpu | cuda | cuda:N"),
    "mode": ("adaptation.mode", "off | episodic | continual"),
    "compressed": ("input.compressed", "true: subscribe to <image>/compressed (jpeg / png)"),
    "reliability": ("input.reliability", "auto | reliable | best_effort (input QoS)"),
}
YAML_VALUED = ("classes", "cameras", "compressed")


def parameter_overrides(args: dict[str, str]) -> dict:
    """The node parameters set by the launch arguments (the non-empty ones)."""
    import yaml

    overrides = {}
    for arg, (name, _) in PARAMETER_ARGUMENTS.items():
        text = args.get(arg, "")
        if not text:
            continue
        value = yaml.safe_load(text) if arg in YAML_VALUED else text
        if arg in ("classes", "cameras") and isinstance(value, str):
            value = [value]
        overrides[name] = value
    if args.get("use_sim_time", ""):
        overrides["use_sim_time"] = str(args["use_sim_time"]).lower() in ("true", "1", "yes")
    return overrides


def node_arguments(args: dict[str, str]) -> dict:
    """The keyword arguments of launch_ros's Node for these launch arguments (testable without launch)."""
    overrides = parameter_overrides(args)
    image = args.get("image_topic", "image")
    remappings = []
    if image != "image":  # with cameras, each camera's <camera>/image is remapped by the user
        remappings = [("image", image), ("image/compressed", image.rstrip("/") + "/compressed")]
    return {
        **_executable(),
        "name": args.get("node_name", "mlmp_segment"),
        "namespace": args.get("namespace", ""),
        "parameters": [args["params_file"], overrides] if overrides else [args["params_file"]],
        "remappings": remappings,
        "output": "screen",
        "emulate_tty": True,
    }


def _node(context, *args, **kwargs):
    names = ["params_file", "image_topic", "namespace", "node_name", "use_sim_time", *PARAMETER_ARGUMENTS]
    values = {name: LaunchConfiguration(name).perform(context) for name in names}
    return [Node(**node_arguments(values))]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=_default_params_file(),
                                  description="ROS 2 parameter file of the node"),
            DeclareLaunchArgument("image_topic", default_value="image",
                                  description="camera image topic (its /compressed is used with input.compressed)"),
            *(DeclareLaunchArgument(arg, default_value="", description=f"{name}: {text} (empty: the file's value)")
              for arg, (name, text) in PARAMETER_ARGUMENTS.items()),
            DeclareLaunchArgument("use_sim_time", default_value="",
                                  description="true: the node's clock follows /clock (empty: the file's value)"),
            DeclareLaunchArgument("namespace", default_value="",
                                  description="the node's namespace (its topics are relative to it)"),
            DeclareLaunchArgument("node_name", default_value="mlmp_segment", description="the node's name"),
            OpaqueFunction(function=_node),
        ]
    )
