"""Quality-of-service profiles of the node's topics, and matching the camera's reliability.

Measured with the pip ROS 2 (Fast DDS, loopback): a reliable publisher into a
best-effort subscriber delivered 0 of 50 frames at 1280x720, and a best-effort
publisher cannot reach a reliable subscriber at all, so the input follows the
camera's reliability unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

try:  # Iron and later
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks  # type: ignore[no-redef]

__all__ = [
    "SubscriptionEventCallbacks",
    "input_qos",
    "label_info_qos",
    "output_qos",
    "reliability_for_publishers",
    "reliability_name",
    "reliability_policy",
    "service_qos",
]

OUTPUT_DEPTH = 5
# ROS's default service profile keeps 10 requests: of a burst of simultaneous calls that arrive
# while the node is still answering one, only ten are kept and the rest are never answered.
SERVICE_DEPTH = 100


def reliability_policy(name: str) -> ReliabilityPolicy:
    """The policy of ``input.reliability``'s fixed values, ``best_effort`` or ``reliable``."""
    return ReliabilityPolicy.BEST_EFFORT if name == "best_effort" else ReliabilityPolicy.RELIABLE


def input_qos(reliability: ReliabilityPolicy, depth: int = 1) -> QoSProfile:
    """Keep-last ``depth``, volatile: old frames are worth nothing to the node."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=reliability,
        durability=DurabilityPolicy.VOLATILE,
    )


def output_qos(depth: int = OUTPUT_DEPTH) -> QoSProfile:
    """Reliable, so RViz and rosbag2 (reliable by default) receive every output."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def label_info_qos() -> QoSProfile:
    """Transient local: a subscriber that joins late still gets the class map."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def service_qos(depth: int = SERVICE_DEPTH) -> QoSProfile:
    """ROS's service profile (reliable, volatile) with a deeper queue: ~/reset and ~/enable answer
    every call of a burst of up to ``depth`` (the default profile answers only the first ten)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def reliability_for_publishers(publishers: Iterable) -> ReliabilityPolicy:
    """Best effort when any publisher is best effort (it cannot reach a reliable reader), else reliable.

    ``publishers`` are ``TopicEndpointInfo`` from ``Node.get_publishers_info_by_topic``.
    """
    for info in publishers:
        if info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT:
            return ReliabilityPolicy.BEST_EFFORT
    return ReliabilityPolicy.RELIABLE


def reliability_name(policy: ReliabilityPolicy) -> str:
    return "best_effort" if policy == ReliabilityPolicy.BEST_EFFORT else "reliable"
