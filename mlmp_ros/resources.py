"""Where the package's shared files (config/, launch/) live once installed.

The same files are reached three ways: from a source checkout or an editable pip
install (``<repo>/config``), from a wheel (``<prefix>/share/mlmp_ros/config``), and
from a colcon install (the ament share directory).  Every lookup goes through
:func:`share_dir` so callers never guess.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "mlmp_ros"


def _candidates() -> list[Path]:
    found: list[Path] = []
    env = os.environ.get("MLMP_ROS_SHARE")
    if env:
        found.append(Path(env))
    # Source checkout or editable install: the repository root sits above the package.
    found.append(Path(__file__).resolve().parent.parent)
    try:  # colcon / system ROS install
        from ament_index_python.packages import get_package_share_directory

        found.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # noqa: BLE001 - ament index missing or package not registered
        pass
    # Wheel install: setup.py data_files land under <prefix>/share/mlmp_ros.
    found.append(Path(sys.prefix) / "share" / PACKAGE)
    return found


@lru_cache(maxsize=1)
def share_dir() -> Path:
    """The folder that holds ``config/`` (and ``launch/``) for this installation."""
    for cand in _candidates():
        if (cand / "config" / "segment.yaml").is_file():
            return cand
    searched = ", ".join(str(c) for c in _candidates())
    raise FileNotFoundError(
        f"cannot find the mlmp_ros config folder (looked in: {searched}); "
        "set MLMP_ROS_SHARE to the folder that contains config/segment.yaml"
    )


def config_path(*parts: str) -> Path:
    """A path inside the installed ``config/`` folder."""
    return share_dir().joinpath("config", *parts)


def package_data_path(*parts: str) -> Path:
    """A path inside the Python package (files shipped as package data)."""
    return Path(__file__).resolve().parent.joinpath(*parts)
