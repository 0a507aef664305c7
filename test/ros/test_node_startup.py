"""Start-up problems end the node with one clear line, no traceback, and a non-zero exit code."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from mlmp_ros.ros.live import LiveSession, NodeDiedError, NodeProcess

from .ros_helpers import NODE_ENV, PARAMS_FILE, TINY

PREFIX = "mlmp-segment: error:"


def test_start_up_errors_say_what_to_fix(tmp_path):
    data = yaml.safe_load(PARAMS_FILE.read_text())
    data["/**"]["ros__parameters"]["classes"] = []
    no_classes = tmp_path / "no_classes.yaml"
    no_classes.write_text(yaml.safe_dump(data))

    cases = {
        # Through ``python -m mlmp_ros.ros`` as well as the console script.
        "unknown model": (
            NodeProcess(PARAMS_FILE, {**TINY, "model": "ViT-Nope-99"}, command=[sys.executable, "-m", "mlmp_ros.ros"],
                        env=NODE_ENV, log_path=tmp_path / "model.log"),
            ["unknown model 'ViT-Nope-99'", "open_clip"],
        ),
        "missing weights file": (
            NodeProcess(PARAMS_FILE, {**TINY, "weights": str(tmp_path / "missing.safetensors")},
                        env=NODE_ENV, log_path=tmp_path / "weights.log"),
            ["weights file not found", "missing.safetensors"],
        ),
        "empty class list": (
            NodeProcess(no_classes, TINY, env=NODE_ENV, log_path=tmp_path / "classes.log"),
            ["classes must be a non-empty list"],
        ),
        "parameter of the wrong type": (
            NodeProcess(None, {**TINY, "adaptation.lr": 1}, env=NODE_ENV, log_path=tmp_path / "type.log"),
            ["parameter 'adaptation.lr' must be a floating-point number"],
        ),
        # Beside --params-file, ROS drops a -p of the wrong type silently and keeps the file's value.
        "override of the wrong type beside a params file": (
            NodeProcess(PARAMS_FILE, {**TINY, "adaptation.steps": "abc"}, env=NODE_ENV, log_path=tmp_path / "drop.log"),
            ["-p adaptation.steps:=", "was not applied", "an integer"],
        ),
        "class list typo": (
            NodeProcess(PARAMS_FILE, {**TINY, "classes": ["voc_21"]}, env=NODE_ENV, log_path=tmp_path / "typo.log"),
            ["'voc_21' is neither a built-in class list nor a file", "did you mean voc21"],
        ),
        "value outside its declared range": (
            NodeProcess(PARAMS_FILE, {**TINY, "adaptation.safeguards.reliable_e0": 2.0}, env=NODE_ENV,
                        log_path=tmp_path / "range.log"),
            ["parameter 'adaptation.safeguards.reliable_e0' must be in [0, 1]"],
        ),
        "bad node setting": (
            NodeProcess(PARAMS_FILE, {**TINY, "input.reliability": "sometimes"}, env=NODE_ENV,
                        log_path=tmp_path / "qos.log"),
            ["input.reliability must be one of auto, reliable, best_effort"],
        ),
    }
    for node, _ in cases.values():
        node.start()
    for name, (node, expected) in cases.items():
        try:
            code = node.process.wait(120)
        except subprocess.TimeoutExpired:
            node.stop()
            raise AssertionError(f"{name}: the node did not exit\n{node.log_tail()}") from None
        finally:
            node.stop()
        log = node.log()
        assert code != 0, f"{name}: exit code 0\n{log}"
        assert "Traceback" not in log, f"{name}: printed a traceback (exit code {code})\n{log}"
        errors = [line for line in log.splitlines() if line.startswith(PREFIX)]
        assert len(errors) == 1, f"{name}: expected one error line, exit code {code}\n{log or '(nothing printed)'}"
        for text in expected:
            assert text in errors[0], f"{name}: '{text}' not in {errors[0]!r}"


def test_a_live_session_surfaces_why_its_node_died(tmp_path):
    node = NodeProcess(PARAMS_FILE, {**TINY, "model": "ViT-Nope-99"}, env=NODE_ENV, log_path=tmp_path / "node.log")
    with pytest.raises(NodeDiedError) as err:
        LiveSession(node).start(timeout=120.0)
    assert "exited with code 1" in str(err.value) and "unknown model 'ViT-Nope-99'" in str(err.value)
    assert not node.alive()


def test_help_prints_usage_without_starting_the_node():
    from mlmp_ros.ros.live import node_command

    done = subprocess.run([*node_command(), "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **NODE_ENV})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: mlmp-segment") and "--params-file" in done.stdout
    assert "loading" not in done.stdout + done.stderr and "ready" not in done.stdout + done.stderr


def test_a_crash_in_native_code_leaves_python_stacks_in_the_log(tmp_path):
    """A node that dies of a fatal signal (as in the DDS layer or torch) says where; not an empty log."""
    crash = ("import ctypes, sys\n"
             "from mlmp_ros.ros.cli import run\n"
             "class Crashing:\n"
             "    def __init__(self):\n"
             "        ctypes.string_at(0)  # a read of address 0: SIGSEGV\n"
             "sys.exit(run(Crashing, ['mlmp-segment']))\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **NODE_ENV}, cwd=tmp_path)  # a core file, if any, lands there
    assert done.returncode < 0, (done.returncode, done.stderr)
    assert "Fatal Python error: Segmentation fault" in done.stderr, done.stderr
    assert "in __init__" in done.stderr and "in _start" in done.stderr, done.stderr
