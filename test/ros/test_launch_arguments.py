"""launch/segment.launch.py's arguments, read without launch / launch_ros installed (the pip ROS 2
wheels have neither): stand-ins record what the file declares and what it hands to launch_ros's
Node, and the node parameters it makes are checked against the node's own declarations.
test/ros/test_launch.py runs the file for real where launch_ros is installed."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

from mlmp_ros.ros.cli import robot_params_file
from mlmp_ros.ros.params import parameter_specs

from .ros_helpers import REPO

LAUNCH_FILE = REPO / "launch" / "segment.launch.py"


class _Recorder:
    """Stands in for a launch class: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Configuration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


@pytest.fixture
def launch_file(monkeypatch):
    """The launch file as a module, with launch, launch_ros and the ament index stood in for."""
    stubs = {
        "launch": {"LaunchDescription": _Recorder},
        "launch.actions": {"DeclareLaunchArgument": _Recorder, "OpaqueFunction": _Recorder},
        "launch.substitutions": {"LaunchConfiguration": _Configuration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": _Recorder},
        "ament_index_python": {},
        "ament_index_python.packages": {"PackageNotFoundError": LookupError,
                                        "get_package_prefix": lambda name: (_ for _ in ()).throw(LookupError(name))},
    }
    for name, attrs in stubs.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    # Not in an ament prefix here: the launch file takes mlmp-segment from PATH (the venv's bin/).
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    spec = importlib.util.spec_from_file_location("segment_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _declared(module) -> dict[str, str]:
    description = module.generate_launch_description()
    return {a.args[0]: a.kwargs["default_value"] for a in description.args[0] if a.args}


def test_the_launch_file_declares_the_robot_facing_arguments(launch_file):
    declared = _declared(launch_file)
    for name in ("params_file", "image_topic", "model", "weights", "classes", "cameras", "device", "mode",
                 "compressed", "reliability", "namespace", "node_name", "use_sim_time"):
        assert name in declared, name
    assert declared["params_file"] == str(robot_params_file())  # package data: pip and colcon installs alike


def test_launch_arguments_become_node_parameters_the_node_declares(launch_file):
    args = {name: "" for name in _declared(launch_file)}
    args.update(params_file="/p.yaml", image_topic="image", namespace="robot1", node_name="mlmp_segment",
                model="mlmp-world", weights="world", classes="[sky, 'road, street']", cameras="[front, rear]",
                compressed="true", reliability="best_effort", use_sim_time="true", mode="continual")
    node = launch_file._node(args).pop()
    kwargs = node.kwargs
    assert kwargs["namespace"] == "robot1" and kwargs["name"] == "mlmp_segment"
    params_file, overrides = kwargs["parameters"]
    assert params_file == "/p.yaml"
    assert overrides == {"model": "mlmp-world", "weights": "world", "classes": ["sky", "road, street"],
                         "cameras": ["front", "rear"], "input.compressed": True, "input.reliability": "best_effort",
                         "adaptation.mode": "continual", "use_sim_time": True}
    declared = {spec.name for spec in parameter_specs()} | {"use_sim_time"}
    assert set(overrides) <= declared
    assert kwargs["remappings"] == []  # each camera's <camera>/image stays under the namespace


def test_empty_launch_arguments_keep_the_parameter_file_and_image_topic_remaps(launch_file):
    args = {name: "" for name in _declared(launch_file)}
    args.update(params_file="/p.yaml", image_topic="/cam/image_raw", node_name="seg")
    kwargs = launch_file._node(args).pop().kwargs
    assert kwargs["parameters"] == ["/p.yaml"]
    assert kwargs["remappings"] == [("image", "/cam/image_raw"), ("image/compressed", "/cam/image_raw/compressed")]
