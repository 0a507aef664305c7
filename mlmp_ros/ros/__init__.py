"""The ROS 2 shell around the core: the segmentation node, message conversions, QoS and a live session.

Run the node with ``mlmp-segment --ros-args --params-file config/segment.yaml`` or
``python -m mlmp_ros.ros``; drive a running node from Python with
:class:`mlmp_ros.ros.live.LiveSession`.
"""

from __future__ import annotations


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
