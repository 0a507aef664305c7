"""The ROS 2 shell around the core: the segmentation node, message conversions, QoS and a live session.

Run the node with ``mlmp-segment --ros-args --params-file config/segment.yaml`` or
``python -m mlmp_ros.ros``; drive a running node from Python with
:class:`mlmp_ros.ros.live.LiveSession`.
"""

from __future__ import annotations

import os
import random


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident memory of a process (Linux ``/proc/<pid>/status`` VmRSS), or None if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def thread_count(pid: int | str = "self") -> int | None:
    """Threads of a process (Linux ``/proc/<pid>/status`` Threads), or None if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def stay_on_loopback() -> None:
    """Unless the environment says otherwise: DDS discovery on this host only, in a random
    domain (120..220), so a demo or a replay neither reaches nor hears other machines' nodes."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(120, 220)))
