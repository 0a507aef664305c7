"""The managed node (ros/lifecycle.py): transitions driven through the lifecycle_msgs services
``change_state`` / ``get_state`` by a separate client over loopback DDS, as a lifecycle manager
drives them; the model loaded on configure and freed on cleanup; autostart as before."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import weakref

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

from mlmp_ros.core import ConfigError
from mlmp_ros.ros.live import LiveSession, NodeProcess

from .ros_helpers import CLASSES, NODE_ENV, PARAMS_FILE, TINY, make_image

lifecycle_msgs = pytest.importorskip("lifecycle_msgs", reason="lifecycle_msgs is not installed")
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402

from mlmp_ros.ros.lifecycle import ManagedSegmentNode  # noqa: E402


class Manager:
    """A lifecycle manager's side: change_state / get_state of one node, from its own node."""

    def __init__(self, node_fqn: str, context: rclpy.Context | None = None):
        self.own_context = context is None
        if self.own_context:
            context = rclpy.Context()
            rclpy.init(args=[], context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]),
                       signal_handler_options=SignalHandlerOptions.NO)
        self.context = context
        self.ros = rclpy.create_node(f"test_lifecycle_manager_{os.getpid()}", context=context)
        self.change = self.ros.create_client(ChangeState, f"{node_fqn}/change_state")
        self.get = self.ros.create_client(GetState, f"{node_fqn}/get_state")
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.ros)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _call(self, client, request, timeout: float = 180.0):
        assert client.wait_for_service(timeout_sec=60.0), f"{client.srv_name} did not appear"
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        assert done.wait(timeout), f"{client.srv_name} did not answer"
        return future.result()

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, label: str) -> bool:
        request = ChangeState.Request()
        request.transition.label = label
        return bool(self._call(self.change, request).success)

    def publishers(self, topic: str) -> int:
        return self.ros.count_publishers(topic)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(timeout=10.0)
        self.ros.destroy_node()
        if self.own_context:
            rclpy.try_shutdown(context=self.context)


def _frame_comes_back(namespace: str) -> None:
    with LiveSession(namespace=namespace) as live:
        stamp = live.publish(make_image(60, 80))
        out = live.wait_for_output(stamp, 120.0)
        assert (out.width, out.height) == (80, 60)


def test_transitions_through_lifecycle_services_over_dds(tmp_path):
    namespace = "/mlmp_test_lifecycle"
    node = NodeProcess(PARAMS_FILE, {**TINY, "classes": CLASSES, "adaptation.steps": 1, "autostart": False},
                       namespace=namespace, env=NODE_ENV, log_path=tmp_path / "node.log")
    node.start()
    manager = Manager(f"{namespace}/mlmp_segment")
    labels = f"{namespace}/segmentation/labels"
    try:
        assert manager.state() == "unconfigured"
        assert manager.publishers(labels) == 0  # autostart false: nothing opened before activation
        assert manager.transition("configure") and manager.state() == "inactive"
        assert manager.publishers(labels) == 0
        assert manager.transition("activate") and manager.state() == "active"
        _frame_comes_back(namespace)
        assert manager.transition("deactivate") and manager.state() == "inactive"
        for _ in range(100):
            if manager.ros.count_subscribers(f"{namespace}/image") == 0 and manager.publishers(labels) == 0:
                break
            threading.Event().wait(0.1)
        assert manager.ros.count_subscribers(f"{namespace}/image") == 0 and manager.publishers(labels) == 0
        assert manager.transition("cleanup") and manager.state() == "unconfigured"
        assert manager.transition("configure") and manager.transition("activate")  # the model loads again
        _frame_comes_back(namespace)
        assert manager.transition("shutdown") and manager.state() == "finalized"
        assert node.alive()  # finalized: it waits for its process to end
        assert node.stop() == 0  # SIGINT: a clean exit
    finally:
        manager.close()
        print(node.log_tail())
        node.stop()
        node.cleanup()


@contextlib.contextmanager
def managed_in_process(namespace: str, parameters: dict):
    """A ManagedSegmentNode spun in this process on its own context; a Manager on the same context
    calls its services over loopback DDS."""
    context = rclpy.Context()
    rclpy.init(args=[], context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]),
               signal_handler_options=SignalHandlerOptions.NO)
    values = {**TINY, "classes": CLASSES, "adaptation.steps": 1, **parameters}
    node = ManagedSegmentNode(context=context, namespace=namespace,
                              parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    manager = Manager(node.get_fully_qualified_name(), context)
    try:
        node.start()
        yield node, manager
    finally:
        manager.close()
        node.stop()
        executor.shutdown(timeout_sec=5.0)
        thread.join(timeout=10.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_cleanup_frees_the_model_and_deactivate_keeps_it():
    with managed_in_process("/mlmp_test_lifecycle_memory", {"autostart": False}) as (node, manager):
        assert node.loaded is None
        assert manager.transition("configure")
        model = weakref.ref(node.loaded)
        assert manager.transition("activate") and node.segmenter is model()
        assert manager.transition("deactivate") and model() is not None  # kept
        # set while inactive: checked at once, applied on the next activation
        assert [r.successful for r in _set_parameters(manager, node, {"adaptation.steps": 3})] == [True]
        assert [r.successful for r in _set_parameters(manager, node, {"adaptation.steps": -1})] == [False]
        assert manager.transition("activate") and node.segmenter is model()  # the same model, not reloaded
        assert _eventually(lambda: model().config.adaptation.steps == 3)
        assert manager.transition("deactivate") and manager.transition("cleanup")
        gc.collect()
        assert model() is None and node.segmenter is None and node.stream is None
        assert manager.state() == "unconfigured"


def test_a_failed_configure_says_why_and_stays_unconfigured():
    with managed_in_process("/mlmp_test_lifecycle_fail", {"autostart": False, "model": "ViT-Nope-99"}) as (
            node, manager):
        assert not manager.transition("configure")
        assert manager.state() == "unconfigured" and "ViT-Nope-99" in str(node.failure)


def test_autostart_configures_and_activates_at_start_up():
    with managed_in_process("/mlmp_test_lifecycle_auto", {}) as (node, manager):
        assert manager.state() == "active" and node.segmenter is not None


def test_the_plain_node_refuses_autostart_false_with_the_reason():
    from mlmp_ros.ros.node import SegmentNode

    context = rclpy.Context()
    rclpy.init(args=[], context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]),
               signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = SegmentNode(context=context, parameter_overrides=[Parameter("autostart", value=False)])
        with pytest.raises(ConfigError, match="lifecycle_msgs"):
            node.start()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_a_multi_camera_node_deactivates_and_activates_again():
    cameras = {"cameras": ["left", "right"], "autostart": False}
    with managed_in_process("/mlmp_test_lifecycle_cameras", cameras) as (node, manager):
        assert manager.transition("configure") and manager.transition("activate")
        assert manager.publishers("/mlmp_test_lifecycle_cameras/left/segmentation/labels") == 1
        assert manager.transition("deactivate")
        assert _eventually(lambda: manager.ros.count_subscribers("/mlmp_test_lifecycle_cameras/right/image") == 0)
        assert manager.transition("activate") and node._hub is not None
        assert _eventually(lambda: manager.ros.count_subscribers("/mlmp_test_lifecycle_cameras/right/image") == 1)


def _set_parameters(manager: Manager, node, values: dict) -> list:
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(manager.ros, node.get_fully_qualified_name())
    assert client.wait_for_services(timeout_sec=30.0)
    done = threading.Event()
    future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
    future.add_done_callback(lambda _: done.set())
    assert done.wait(60.0)
    return list(future.result().results)


def _eventually(predicate, timeout: float = 10.0) -> bool:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()
