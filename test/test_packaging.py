"""The ament_python package: package.xml declares its dependencies and colcon builds it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_package_xml_is_format_3_and_declares_run_and_test_dependencies():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "mlmp_ros"
    assert root.find("export/build_type").text == "ament_python"
    run = {e.text for e in root.findall("exec_depend")}
    for dep in ("rclpy", "sensor_msgs", "std_msgs", "std_srvs", "diagnostic_msgs", "cv_bridge",
                "python3-torch", "python3-opencv", "python3-numpy"):  # fmt: skip
        assert dep in run, dep
    assert "python3-pytest" in {e.text for e in root.findall("test_depend")}
    setup = (ROOT / "setup.py").read_text()
    assert f'version="{root.findtext("version")}"' in setup


def _colcon() -> list[str] | None:
    # The colcon script installed beside this interpreter (a venv's bin/ is often not on PATH), then PATH.
    # Not `python -m colcon_core.command`: that module has no main guard and silently does nothing.
    beside = Path(sys.executable).parent / "colcon"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("colcon")
    return [found] if found else None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("symlink", [False, True], ids=["copy", "symlink-install"])
def test_colcon_builds_the_ament_python_layout(tmp_path, symlink):
    colcon = _colcon()
    if colcon is None:
        pytest.skip("colcon is not installed (pip install colcon-common-extensions)")
    src = tmp_path / "src" / "mlmp_ros"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "install", "log", "*.egg-info",
                                                             "__pycache__", "demo_out", ".pytest_cache"))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLCON")}
    # colcon runs setup.py from build/mlmp_ros: it must find README.md and its data beside itself.
    options = ["--symlink-install"] if symlink else []
    proc = subprocess.run(
        [*colcon, "build", "--packages-select", "mlmp_ros", *options], cwd=tmp_path, env=env, capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 package finished" in proc.stdout, proc.stdout + proc.stderr
    install = tmp_path / "install" / "mlmp_ros"
    share = install / "share" / "mlmp_ros"
    for rel in ("package.xml", "launch/segment.launch.py", "config/segment.yaml", "config/prompts/templates_7.yaml",
                "config/class_names/voc21.names.txt", "config/suites/paper87.yaml"):  # fmt: skip
        assert (share / rel).is_file(), rel
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "mlmp_ros").is_file()
    for script in ("mlmp-segment", "mlmp-bench", "mlmp-demo"):
        assert (install / "lib" / "mlmp_ros" / script).is_file(), script  # where ros2 run / launch look
    if symlink:  # an egg-link to the package in build/mlmp_ros, whose files link back to src
        (link,) = install.glob("lib/python3*/site-packages/*.egg-link")
        site = Path(link.read_text().split()[0]) / "mlmp_ros"
        assert (site / "config" / "robot.yaml").resolve() == (src / "mlmp_ros" / "config" / "robot.yaml").resolve()
    else:
        site = next(install.glob("lib/python3*/site-packages/mlmp_ros"))
    assert (site / "data" / "sample_stream" / "metadata.yaml").is_file()
    assert (site / "model_configs" / "mlmp-tiny-test.json").is_file()
    assert (site / "model_configs" / "mlmp-world.json").is_file()
    assert (site / "world" / "mlmp-world.safetensors").is_file() and (site / "world" / "MODEL_CARD.md").is_file()
    assert (site / "config" / "robot.yaml").is_file()  # the node's default parameter file is package data
    assert (site / "config" / "fastdds_large_shm.xml").is_file()  # the best-effort remedy (README)
