"""Start the mlmp_segment node with a parameter file.

    ros2 launch mlmp_ros segment.launch.py image_topic:=/camera/image_raw device:=cuda mode:=continual

Launch arguments: ``params_file`` (default: the installed config/segment.yaml),
``image_topic`` (remaps ``image``, and ``image/compressed`` to ``<image_topic>/compressed``),
``device`` and ``mode`` (adaptation.mode; empty: keep the file's value), ``namespace``
and ``node_name``.
"""

from __future__ import annotations

import os
import shutil

from ament_index_python.packages import (
    PackageNotFoundError,
    get_package_prefix,
    get_package_share_directory,
)
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "mlmp_ros"


def _default_params_file() -> str:
    try:
        return os.path.join(get_package_share_directory(PACKAGE), "config", "segment.yaml")
    except (PackageNotFoundError, OSError):  # pip install beside a system ROS: not in the ament index
        from mlmp_ros.resources import config_path

        return str(config_path("segment.yaml"))


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


def _node(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    overrides = {}
    if arg("device"):
        overrides["device"] = arg("device")
    if arg("mode"):
        overrides["adaptation.mode"] = arg("mode")
    image = arg("image_topic")
    return [
        Node(
            **_executable(),
            name=arg("node_name"),
            namespace=arg("namespace"),
            parameters=[arg("params_file"), overrides] if overrides else [arg("params_file")],
            remappings=[("image", image), ("image/compressed", image.rstrip("/") + "/compressed")],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=_default_params_file(),
                                  description="ROS 2 parameter file of the node"),
            DeclareLaunchArgument("image_topic", default_value="image",
                                  description="camera image topic (its /compressed is used with input.compressed)"),
            DeclareLaunchArgument("device", default_value="",
                                  description="auto | cpu | cuda | cuda:N (empty: the file's value)"),
            DeclareLaunchArgument("mode", default_value="",
                                  description="adaptation.mode: off | episodic | continual (empty: the file's value)"),
            DeclareLaunchArgument("namespace", default_value="", description="the node's namespace"),
            DeclareLaunchArgument("node_name", default_value="mlmp_segment", description="the node's name"),
            OpaqueFunction(function=_node),
        ]
    )
