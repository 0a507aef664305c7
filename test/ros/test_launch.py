"""launch/segment.launch.py starts a working node (needs launch and launch_ros)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml

from mlmp_ros.ros.live import LiveSession

from .ros_helpers import NODE_ENV, PARAMS_FILE, REPO, TINY, make_image

pytest.importorskip("launch_ros", reason="launch_ros is not installed (pip ROS 2 has no launch)")

# Runs a launch file with launch arguments, as ``ros2 launch FILE name:=value ...`` does.
RUNNER = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

path, *pairs = sys.argv[1:]
service = LaunchService()
service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(path), launch_arguments=[tuple(p.split(":=", 1)) for p in pairs])]))
sys.exit(service.run())
"""


def test_launch_file_starts_the_node_with_its_arguments(tmp_path):
    data = yaml.safe_load(PARAMS_FILE.read_text())
    data["/**"]["ros__parameters"].update({**TINY, "device": "auto", "adaptation": {
        **data["/**"]["ros__parameters"]["adaptation"], "steps": 1}})
    params = tmp_path / "segment.yaml"
    params.write_text(yaml.safe_dump(data))
    namespace, topic = "mlmp_test_launch", "/launch_camera/image_raw"
    log = open(tmp_path / "launch.log", "wb")  # noqa: SIM115 - closed below
    launch = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(REPO / "launch" / "segment.launch.py"), f"params_file:={params}",
         f"image_topic:={topic}", "device:=cpu", "mode:=continual", f"namespace:={namespace}"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **NODE_ENV, "RCUTILS_LOGGING_BUFFERED_STREAM": "0"},
    )
    try:
        with LiveSession(namespace=namespace, image_topic=topic) as live:
            assert live.get_parameters(["adaptation.mode", "device", "model"]) == {
                "adaptation.mode": "continual", "device": "cpu", "model": "mlmp-tiny-test"}
            stamp = live.publish(make_image(120, 160))
            out = live.wait_for_output(stamp, 90.0)
            assert (out.width, out.height, out.encoding) == (160, 120, "mono8")
        launch.send_signal(signal.SIGINT)
        assert launch.wait(30) == 0
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.wait()
        log.close()
        print((tmp_path / "launch.log").read_text(errors="replace")[-4000:])
