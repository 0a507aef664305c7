"""What a robot integrator meets first: the parameter file found from the installed package,
``--print-params``, the help text, the documentation's Nav2 example (its topic names, subscribed to),
and /diagnostics statuses that tell two namespaced nodes apart."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading

import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from mlmp_ros.core import Config
from mlmp_ros.robot import ROBOT_ADAPTATION
from mlmp_ros.ros.cli import robot_params_file
from mlmp_ros.ros.conversions import label_info_type
from mlmp_ros.ros.diagnostics import adaptation_summary
from mlmp_ros.ros.live import LiveSession, NodeProcess, node_command
from mlmp_ros.ros.paramfile import ROBOT_PATH
from mlmp_ros.ros.qos import label_info_qos

from .ros_helpers import CLASSES, NODE_ENV, REPO, TINY, make_image


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*node_command(), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **NODE_ENV})


def test_print_params_shows_the_defaults_are_the_robot_settings():
    done = _run("--print-params")
    assert done.returncode == 0, done.stderr
    assert robot_params_file() == ROBOT_PATH  # the defaults written out, for the launch file
    printed = Config.from_mapping(yaml.safe_load(done.stdout)["/**"]["ros__parameters"]).flat()
    assert printed == Config.from_yaml(ROBOT_PATH).flat()
    assert {k: printed[k] for k in ROBOT_ADAPTATION} == ROBOT_ADAPTATION
    assert "schedule: async  # default" in done.stdout


def test_a_users_params_file_overrides_only_what_it_names_and_p_overrides_both(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("/**:\n  ros__parameters:\n    model: mlmp-tiny-test\n    weights: random\n    device: cpu\n"
                    "    classes: [cat, sky]\n    adaptation:\n      steps: 4\n")
    done = _run("--print-params", "--ros-args", "--params-file", str(mine), "-p", "adaptation.steps:=2")
    assert done.returncode == 0, done.stderr
    lines = {line.strip().split(":")[0]: line.strip() for line in done.stdout.splitlines() if "#" in line}
    assert lines["model"] == f"model: mlmp-tiny-test  # parameter file {mine}"
    assert lines["schedule"] == "schedule: async  # default"  # the robot settings, not the paper's sync
    assert lines["mode"] == "mode: continual  # default"
    assert lines["steps"] == "steps: 2  # -p"
    # and that is what runs: the node started with the same file (and the documented `cameras:=[]`)
    node = NodeProcess(mine, {"cameras": [], "adaptation.steps": 1}, namespace="/mlmp_test_user_file", env=NODE_ENV)
    with LiveSession(node) as live:
        values = live.get_parameters(["adaptation.schedule", "adaptation.mode", "adaptation.steps", "classes"])
        assert values == {"adaptation.schedule": "async", "adaptation.mode": "continual", "adaptation.steps": 1,
                          "classes": ["cat", "sky"]}
        assert live.wait_for_output(live.publish(make_image(60, 80)), 120.0).height == 60


@pytest.mark.parametrize(("args", "says"), [
    (("--foo",), "unrecognized arguments: --foo"),
    (("--ros-args", "--params-file", "/nonexistent.yaml"), "--params-file /nonexistent.yaml: no such file"),
    (("--print-params", "--ros-args", "-p", "adaptation.steps:=-5"), "adaptation.steps"),
])
def test_bad_command_lines_are_refused_in_one_line_before_anything_starts(args, says):
    done = _run(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlmp-segment: error:") and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr and "loading" not in done.stdout + done.stderr


def test_help_names_what_a_pip_install_has():
    done = _run("--help")
    assert done.returncode == 0 and "--print-params" in done.stdout
    assert "share/mlmp_ros" not in done.stdout  # a pip install has no share/ folder of its own


def test_the_log_summary_does_not_claim_steps_it_does_not_run():
    a = Config().adaptation
    assert adaptation_summary(a) == f"mlmp (episodic, {a.steps} steps, sync)"
    assert "steps," not in adaptation_summary(a, adapts=False)  # noadapt
    off = Config().replace(**{"adaptation.steps": 0}).adaptation
    assert "10 steps" not in adaptation_summary(off) and "adaptation.steps 0" in adaptation_summary(off)
    assert "no adaptation" in adaptation_summary(Config().replace(**{"adaptation.mode": "off"}).adaptation)


def readme_nav2_topics() -> dict[str, str]:
    """The semantic_segmentation_layer block of the documentation (Nav2 and other consumers),
    parsed: its three topics of the node."""
    text = (REPO / "docs" / "consumers.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if "semantic_segmentation_layer:" in b]
    source = yaml.safe_load(block)["semantic_segmentation_layer"]["camera"]
    return {k: source[k] for k in ("segmentation_topic", "confidence_topic", "labels_topic")}


class _Listener:
    """Subscriptions on the documentation's names (as the layer subscribes), plus /diagnostics."""

    def __init__(self, live: LiveSession, topics: dict[str, str]):
        self.got: dict[str, object] = {}
        self.statuses: list = []
        self.event = threading.Condition()
        images = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
        for key in ("segmentation_topic", "confidence_topic"):
            live.ros.create_subscription(Image, topics[key], self._keep(key), images)
        live.ros.create_subscription(label_info_type(), topics["labels_topic"], self._keep("labels_topic"),
                                     label_info_qos())
        live.ros.create_subscription(DiagnosticArray, "/diagnostics", self._status, 10)

    def _keep(self, key: str):
        def keep(msg) -> None:
            with self.event:
                self.got[key] = msg
                self.event.notify_all()
        return keep

    def _status(self, msg: DiagnosticArray) -> None:
        with self.event:
            self.statuses += list(msg.status)
            self.event.notify_all()

    def wait(self, predicate, timeout: float = 60.0) -> None:
        with self.event:
            assert self.event.wait_for(predicate, timeout), (sorted(self.got), [s.name for s in self.statuses])


def test_readme_nav2_topics_are_the_nodes_and_it_starts_from_the_robot_settings():
    topics = readme_nav2_topics()
    namespace = topics["segmentation_topic"].removesuffix("/segmentation/labels")
    assert namespace.startswith("/") and namespace != topics["segmentation_topic"]
    # No --params-file: the node starts from its defaults (the robot settings), -p on top of them.
    node = NodeProcess(None, {**TINY, "classes": CLASSES, "adaptation.steps": 1,
                              "output.confidence_encoding": "mono8"}, namespace=namespace, env=NODE_ENV)
    with LiveSession(node) as live:
        values = live.get_parameters(["adaptation.schedule", "adaptation.mode", "adaptation.steps"])
        assert values == {"adaptation.schedule": ROBOT_ADAPTATION["adaptation.schedule"],
                          "adaptation.mode": ROBOT_ADAPTATION["adaptation.mode"], "adaptation.steps": 1}
        listener = _Listener(live, topics)
        listener.wait(lambda: "labels_topic" in listener.got)  # transient local: the class map arrives late too
        live.wait_until(lambda: live.ros.count_publishers(topics["segmentation_topic"]) > 0, 30.0, "labels")
        for _ in range(50):  # best effort: resend until both outputs arrived
            live.publish(make_image(60, 80))
            with listener.event:
                if listener.event.wait_for(lambda: {"segmentation_topic", "confidence_topic"} <= set(listener.got),
                                           2.0):
                    break
        assert {"segmentation_topic", "confidence_topic"} <= set(listener.got)
        assert listener.got["segmentation_topic"].encoding == "mono8"
        listener.wait(lambda: any(s.name == f"{namespace}/mlmp_segment: segmentation" for s in listener.statuses))
        status = next(s for s in listener.statuses if s.name == f"{namespace}/mlmp_segment: segmentation")
        assert status.hardware_id == f"{socket.gethostname()}/cpu"


@pytest.mark.parametrize("name", ["1front", "front-left", "a b"])
def test_bad_camera_names_are_refused_with_the_reason(name):
    from mlmp_ros.ros.settings import NodeSettings

    with pytest.raises(ValueError) as err:
        NodeSettings.from_values({"cameras": ["rear", name]})
    assert "cameras" in str(err.value) and repr(name) in str(err.value)
    with pytest.raises(ValueError, match="each camera once"):
        NodeSettings.from_values({"cameras": ["rear", "rear"]})


# A best-effort camera and the node, in a process of its own: Fast DDS reads its profile file once
# per process, so this test's own process (whose participants exist already) cannot take it.
BEST_EFFORT_CAMERA = """
import json, sys
from mlmp_ros.ros.live import LiveSession, NodeProcess
from test.ros.ros_helpers import CLASSES, NODE_ENV, TINY, make_image

node = NodeProcess(None, {**TINY, "classes": CLASSES, "adaptation.mode": "off", "diagnostics.period": 0.2},
                   namespace="/mlmp_test_best_effort", env=NODE_ENV)
with LiveSession(node, reliability="best_effort", depth=1) as live:
    image = make_image(480, 640)
    for _ in range(5):  # one at a time: what arrives is what DDS delivered, whatever the node's speed
        live.wait_for_output(live.publish(image), 60.0)
    d = live.wait_for_diagnostics(lambda d: int(d.values["frames_processed"]) >= 5, 30.0)
    print(json.dumps(d.values))
"""


def test_raw_frames_from_a_best_effort_camera_arrive_whole_with_the_shipped_dds_profile():
    """The README's remedy for best-effort raw cameras: the Fast DDS profile with a large
    shared-memory segment, for the camera and the node alike."""
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        pytest.skip("a Fast DDS profile")
    from mlmp_ros.resources import package_data_path

    profile = str(package_data_path("config", "fastdds_large_shm.xml"))
    env = {**os.environ, "FASTDDS_DEFAULT_PROFILES_FILE": profile, "FASTRTPS_DEFAULT_PROFILES_FILE": profile,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", BEST_EFFORT_CAMERA], env=env, capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    values = json.loads(done.stdout.strip().splitlines()[-1])
    assert values["frames_lost_in_dds"] == "0" and values["input_reliability"] == "best_effort"
