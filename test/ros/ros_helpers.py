"""Helpers for the node tests: real mlmp-segment processes on the loopback test domain."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PARAMS_FILE = REPO / "config" / "segment.yaml"

# The tiny random model on the CPU.  One intra-op thread: on a 2-core machine shared
# with the test process, two OpenMP threads spin against each other and a frame can
# take ten times longer.
TINY = {"model": "mlmp-tiny-test", "weights": "random", "device": "cpu"}
NODE_ENV = {"OMP_NUM_THREADS": "1"}
CLASSES = ["cat", "dog, puppy", "sky", "grass", "road"]


@contextlib.contextmanager
def node_session(namespace: str, parameters: dict[str, Any] | None = None, *, remaps: dict[str, str] | None = None,
                 **session: Any) -> Iterator:
    """A started node (tiny model, ``parameters`` on top) and a LiveSession bound to it."""
    from mlmp_ros.ros.live import LiveSession, NodeProcess

    node = NodeProcess(PARAMS_FILE, {**TINY, "classes": CLASSES, **(parameters or {})},
                       namespace=namespace, remaps=remaps, env=NODE_ENV)
    live = LiveSession(node, **session)
    live.start()
    try:
        yield live
    finally:
        live.close()
        node.cleanup()


def best_effort_camera(live: Any, msg_type: type, topic: str | None = None):
    """A best-effort publisher on the node's input, quiet about the QoS mismatch it may cause."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    try:  # Iron and later
        from rclpy.event_handler import PublisherEventCallbacks
    except ImportError:  # Humble
        from rclpy.qos_event import PublisherEventCallbacks

    return live.ros.create_publisher(
        msg_type, topic or live.image_topic, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT),
        event_callbacks=PublisherEventCallbacks(incompatible_qos=lambda event: None),
    )


def make_image(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A deterministic RGB frame with structure (gradients, blocks) and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x // 32 + y // 32) % 2 * 200], -1)
    img = img + rng.integers(0, 40, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
