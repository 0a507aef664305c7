"""Entry point of ``mlmp-segment`` (and ``python -m mlmp_ros.ros``): the managed node
(:mod:`mlmp_ros.ros.lifecycle`) where ``lifecycle_msgs`` is installed, else the plain one
(:mod:`mlmp_ros.ros.node`), run by :func:`mlmp_ros.ros.cli.run`.

It sits above both node modules (the managed node is a plain node), so neither imports the other
back to choose.
"""

from __future__ import annotations

from .cli import run
from .node import SegmentNode


def node_class() -> type[SegmentNode]:
    """The managed node (ros/lifecycle.py) where lifecycle_msgs is installed, else the plain one."""
    try:
        from .lifecycle import ManagedSegmentNode
    except ImportError:  # no lifecycle_msgs (older pip installs): the node without ~/change_state
        return SegmentNode
    return ManagedSegmentNode


def main(args: list[str] | None = None) -> int:
    """Entry point of ``mlmp-segment``; returns the exit code (see :mod:`mlmp_ros.ros.cli`)."""
    return run(node_class(), args)

