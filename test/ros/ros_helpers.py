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


def camera_sessions(namespace: str, cameras: list[str], parameters: dict[str, Any], *,
                    params_file: Path | None = PARAMS_FILE, **session: Any) -> list:
    """A started node with ``cameras`` (``[]``: the single camera) and one LiveSession per camera (the
    first owns the node); close them with :func:`close_sessions`."""
    from mlmp_ros.ros.live import LiveSession, NodeProcess

    node = NodeProcess(params_file, {**parameters, **({"cameras": cameras} if cameras else {})},
                       namespace=namespace, env=NODE_ENV)
    names = cameras or [""]
    sessions = [LiveSession(node, camera=names[0], **session)]
    try:
        sessions[0].start()
        for name in names[1:]:
            sessions.append(LiveSession(namespace=namespace, camera=name, **session).start())
    except BaseException:
        close_sessions(sessions)
        raise
    return sessions


def close_sessions(sessions: list) -> None:
    for live in reversed(sessions):
        live.close()
    if sessions and sessions[0].node is not None:
        sessions[0].node.cleanup()


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


class InProcessNode:
    """A SegmentNode spun in the test process (see :func:`in_process_node`), with a client node
    beside it on the same context for service and parameter calls."""

    def __init__(self, node: Any, client: Any, executor: Any):
        self.node = node
        self.client = client
        self.executor = executor

    def call(self, srv_type: type, name: str, request: Any, timeout: float = 60.0) -> Any:
        """Call the node's service ``name`` (relative to the node, e.g. "~/reset") and wait for the answer."""
        import threading

        service = self.node.resolve_service_name(name)
        client = self.client.create_client(srv_type, service)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"{service} did not appear"
            done = threading.Event()
            future = client.call_async(request)
            future.add_done_callback(lambda _: done.set())
            assert done.wait(timeout), f"{service} did not answer within {timeout} s"
            return future.result()
        finally:
            self.client.destroy_client(client)

    def set_parameters(self, values: dict[str, Any], timeout: float = 60.0) -> list:
        """Set the node's parameters through its parameter service; the SetParametersResult of each."""
        import threading

        from rclpy.parameter import Parameter
        from rclpy.parameter_client import AsyncParameterClient

        params = AsyncParameterClient(self.client, self.node.get_fully_qualified_name())
        assert params.wait_for_services(timeout_sec=timeout), "the parameter services did not appear"
        done = threading.Event()
        future = params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        future.add_done_callback(lambda _: done.set())
        assert done.wait(timeout), "set_parameters did not answer"
        return list(future.result().results)


def paper_parameters() -> dict[str, Any]:
    """config/segment.yaml (the paper's protocol) as flat parameter values, as a --params-file gives them
    (empty lists left out: ROS cannot type them)."""
    import yaml

    def flat(tree: dict, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            elif value != []:
                out[f"{prefix}{key}"] = value
        return out

    return flat(yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"])


@contextlib.contextmanager
def in_process_node(namespace: str, parameters: dict[str, Any] | None = None) -> Iterator[InProcessNode]:
    """A started SegmentNode (the paper's settings as config/segment.yaml, the tiny model, ``parameters`` on
    top) in this process: its own rclpy
    context on the test domain (loopback, test/conftest.py), a SingleThreadedExecutor spinning it
    and a client node on a background thread.  For checks of callbacks and services where a
    separate process adds nothing; start-up, signals and exit codes stay with the subprocess tests."""
    import os
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    from mlmp_ros.ros.node import SegmentNode

    context = rclpy.Context()
    rclpy.init(args=[], context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]),
               signal_handler_options=SignalHandlerOptions.NO)  # pytest keeps its own SIGINT handling
    values = {**paper_parameters(), **TINY, "classes": CLASSES, "adaptation.steps": 1, **(parameters or {})}
    node = client = executor = thread = None
    try:
        node = SegmentNode(context=context, namespace=namespace,
                           parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        node.start()
        client = rclpy.create_node("in_process_client", namespace=namespace, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.add_node(client)
        thread = threading.Thread(target=executor.spin, name="in-process-executor", daemon=True)
        thread.start()
        yield InProcessNode(node, client, executor)
    finally:
        if node is not None:
            node.stop()
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if thread is not None:
            thread.join(timeout=10.0)
        for n in (client, node):
            if n is not None:
                n.destroy_node()
        rclpy.try_shutdown(context=context)
