"""ament_python package that also installs with plain pip (no system ROS needed)."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "mlmp_ros"
# Paths relative to this file, not to the working directory: colcon runs setup.py from
# build/mlmp_ros (with --symlink-install too), pip from a temporary copy.
HERE = Path(__file__).resolve().parent


def _files(pattern: str) -> list[str]:
    """The files matching ``pattern`` beside setup.py, as relative paths (what data_files wants)."""
    return sorted(str(p.relative_to(HERE)) for p in HERE.glob(pattern))


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Test-time adaptation of CLIP open-vocabulary segmentation (MLMP) as a ROS 2 node",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["model_configs/*.json", "data/sample_stream/*", "world/*.safetensors", "world/*.md",
                            "config/*.yaml", "config/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", _files("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", _files("config/*.yaml")),
        (f"share/{PACKAGE}/config/prompts", _files("config/prompts/*.yaml")),
        (f"share/{PACKAGE}/config/class_names", _files("config/class_names/*.txt")),
        (f"share/{PACKAGE}/config/suites", _files("config/suites/*.yaml")),
    ],
    install_requires=[
        "setuptools",
        "numpy",
        "torch>=2.1",
        "open_clip_torch>=2.24",
        "safetensors",
        "opencv-python",
        "pyyaml",
        "pillow",
        "rosbags>=0.10",
    ],
    extras_require={
        # ROS 2 Kilted from the PyPI wheels, for machines without a system ROS.
        "ros": [
            "ros-rclpy",
            "ros-sensor-msgs",
            "ros-std-msgs",
            "ros-std-srvs",
            "ros-diagnostic-msgs",
            "ros-lifecycle-msgs",
            "ros-rmw-fastrtps-cpp",
        ],
        # ROS 2 Jazzy (Python 3.12) from the PyPI wheels: the second CI leg (make test-jazzy).
        "jazzy": [
            "ros-jazzy-rclpy==7.1.6",
            "ros-jazzy-sensor-msgs",
            "ros-jazzy-std-msgs",
            "ros-jazzy-std-srvs",
            "ros-jazzy-diagnostic-msgs",
            "ros-jazzy-lifecycle-msgs",
            "ros-jazzy-rmw-fastrtps-cpp",
        ],
        "bench": ["imagecorruptions-imaug>=1.1.5", "matplotlib", "tqdm", "scipy>=1.11"],
        "test": ["pytest", "pytest-timeout", "pytest-random-order", "torchmetrics", "mcap", "mcap-ros2-support", "colcon-common-extensions"],
        # The documentation site (make docs; make test builds it with --strict).
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
        # mlmp-bench suite --executor ray: every trial a Ray task (install on the driver and every node).
        "cluster": ["ray==2.60.0"],
    },
    zip_safe=False,
    maintainer="mlmp_ros maintainers",
    maintainer_email="maintainers@mlmp-ros.dev",
    entry_points={
        "console_scripts": [
            "mlmp-segment = mlmp_ros.ros.main:main",
            "mlmp-bench = mlmp_ros.bench.cli:main",
            "mlmp-demo = mlmp_ros.demo.main:main",
        ],
    },
)
