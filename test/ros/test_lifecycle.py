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
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

from mlmp_ros.ros.cli import EXECUTOR_THREADS
from mlmp_ros.ros.inbox import STOP_TIMEOUT
from mlmp_ros.ros.live import LiveSession, NodeProcess

from .ros_helpers import CLASSES, NODE_ENV, PARAMS_FILE, TINY, make_image, paper_parameters

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


def _frames_come_back(namespace: str, cameras: list[str], classes: list[str] | None = None) -> None:
    """A frame into every camera comes back labelled (and the class map, when given, is ``classes``)."""
    for camera in cameras or [""]:
        with LiveSession(namespace=namespace, camera=camera) as live:
            if classes is not None:
                live.wait_for_label_info(lambda m: list(m.values()) == [c.split(",")[0] for c in classes], 60.0)
            out = live.wait_for_output(live.publish(make_image(60, 80)), 120.0)
            assert (out.width, out.height) == (80, 60)
            if classes is not None:
                assert int(out.array.max()) < len(classes)


def _subscribers(manager: Manager, namespace: str, cameras: list[str]) -> int:
    return sum(manager.ros.count_subscribers(f"{namespace}/{c + '/' if c else ''}image") for c in cameras or [""])


CAMERAS = [pytest.param([], id="one_camera"), pytest.param(["left", "right"], id="two_cameras")]


@pytest.mark.parametrize("cameras", CAMERAS)
def test_transitions_over_dds_and_shutdown_ends_the_process(tmp_path, cameras):
    namespace = f"/mlmp_test_lifecycle_{len(cameras)}"
    node = NodeProcess(PARAMS_FILE, {**TINY, "classes": CLASSES, "adaptation.steps": 1, "autostart": False,
                                     **({"cameras": cameras} if cameras else {})},
                       namespace=namespace, env=NODE_ENV, log_path=tmp_path / "node.log")
    node.start()
    manager = Manager(f"{namespace}/mlmp_segment")
    labels = f"{namespace}/{cameras[0] + '/' if cameras else ''}segmentation/labels"
    try:
        assert manager.state() == "unconfigured"
        assert manager.publishers(labels) == 0  # autostart false: nothing opened before activation
        assert not manager.transition("activate")  # the wrong order: refused, with the reason in the log
        assert _eventually(lambda: "refused transition 'activate': the node is unconfigured" in node.log())
        assert manager.transition("configure") and manager.state() == "inactive"
        assert manager.publishers(labels) == 0
        assert manager.transition("activate") and manager.state() == "active"
        _frames_come_back(namespace, cameras)
        assert manager.transition("deactivate") and manager.state() == "inactive"
        assert _eventually(lambda: _subscribers(manager, namespace, cameras) == 0 and manager.publishers(labels) == 0)
        assert manager.transition("cleanup") and manager.state() == "unconfigured"
        assert manager.transition("configure") and manager.transition("activate")  # the model loads again
        _frames_come_back(namespace, cameras)
        assert manager.transition("shutdown")
        # shutdown ends the process, with exit 0, within the stop timeout
        node.process.wait(STOP_TIMEOUT + 5.0)
        assert node.returncode == 0, node.log_tail()
    finally:
        manager.close()
        print(node.log_tail())
        node.stop()
        node.cleanup()


@pytest.mark.parametrize("state", ["unconfigured", "inactive"])
def test_shutdown_from_any_state_ends_the_process(tmp_path, state):
    namespace = f"/mlmp_test_lifecycle_shutdown_{state}"
    node = NodeProcess(PARAMS_FILE, {**TINY, "classes": CLASSES, "autostart": False}, namespace=namespace,
                       env=NODE_ENV, log_path=tmp_path / "node.log")
    node.start()
    manager = Manager(f"{namespace}/mlmp_segment")
    try:
        if state == "inactive":
            assert manager.transition("configure")
        assert manager.state() == state and manager.transition("shutdown")
        node.process.wait(STOP_TIMEOUT + 5.0)
        assert node.returncode == 0, node.log_tail()
    finally:
        manager.close()
        node.stop()
        node.cleanup()


@contextlib.contextmanager
def managed_in_process(namespace: str, parameters: dict):
    """A ManagedSegmentNode spun in this process on its own context (the paper's settings, the tiny
    model); a Manager on the same context calls its services over loopback DDS."""
    context = rclpy.Context()
    rclpy.init(args=[], context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]),
               signal_handler_options=SignalHandlerOptions.NO)
    values = {**paper_parameters(), **TINY, "classes": CLASSES, "adaptation.steps": 1, **parameters}
    node = ManagedSegmentNode(context=context, namespace=namespace,
                              parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    executor = MultiThreadedExecutor(num_threads=4, context=context)
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
        assert node.segmenter is None
        assert manager.transition("configure")
        model = weakref.ref(node.segmenter)
        assert manager.transition("activate") and node.segmenter is model()
        assert manager.transition("deactivate") and model() is not None  # kept
        # set while inactive: checked at once, applied on the next activation
        assert [r.successful for r in _set_parameters(manager, node, {"adaptation.steps": 3})] == [True]
        assert [r.successful for r in _set_parameters(manager, node, {"adaptation.steps": -1})] == [False]
        assert manager.transition("activate") and node.segmenter is model()  # the same model, not reloaded
        assert _eventually(lambda: model().config.adaptation.steps == 3)
        assert manager.transition("deactivate") and manager.transition("cleanup")
        gc.collect()
        assert model() is None and node.segmenter is None and node.multicamera is None
        assert manager.state() == "unconfigured"


@pytest.mark.parametrize("cameras", CAMERAS)
def test_parameters_set_before_the_first_configure_are_checked_and_run(cameras):
    extra = {"cameras": cameras} if cameras else {}
    with managed_in_process(f"/mlmp_test_lifecycle_early_{len(cameras)}", {"autostart": False, **extra}) as (
            node, manager):
        bad_classes, bad_steps = _set_parameters(manager, node, {"classes": ["nonexistent_dataset"],
                                                                 "adaptation.steps": -5})
        assert not bad_classes.successful and "nonexistent_dataset" in bad_classes.reason
        assert not bad_steps.successful and "adaptation.steps" in bad_steps.reason
        assert node.get_parameter("adaptation.steps").value == 1 and node.get_parameter("classes").value == CLASSES
        assert [r.successful for r in _set_parameters(manager, node, {"adaptation.steps": 3,
                                                                      "classes": ["cat", "sky"]})] == [True, True]
        assert manager.transition("configure") and manager.transition("activate")
        assert node.segmenter.config.adaptation.steps == 3 and node.segmenter.class_names == ["cat", "sky"]
        _frames_come_back(node.get_namespace(), cameras, ["cat", "sky"])


@pytest.mark.parametrize("cameras", CAMERAS)
def test_a_class_change_while_inactive_or_unconfigured_is_labelled_after_activate(cameras):
    namespace = f"/mlmp_test_lifecycle_classes_{len(cameras)}"
    extra = {"cameras": cameras} if cameras else {}
    with managed_in_process(namespace, {"autostart": False, **extra}) as (node, manager):
        assert manager.transition("configure") and manager.transition("activate")
        _frames_come_back(namespace, cameras, CLASSES)
        assert manager.transition("deactivate")
        assert [r.successful for r in _set_parameters(manager, node, {"classes": ["sky", "road", "cat"]})] == [True]
        assert manager.transition("activate")
        _frames_come_back(namespace, cameras, ["sky", "road", "cat"])
        assert manager.transition("deactivate") and manager.transition("cleanup")
        assert [r.successful for r in _set_parameters(manager, node, {"classes": ["grass", "dog"]})] == [True]
        assert manager.transition("configure") and manager.transition("activate")
        _frames_come_back(namespace, cameras, ["grass", "dog"])
        # the counters carried on across the activations: every frame above is counted
        for name, pipe in node.pipelines.items():
            assert pipe.counters.processed == 3 and pipe.counters.dropped == 0, name
            assert pipe.counters.drops["class_change"] == 0


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


@pytest.mark.timeout(900)
@pytest.mark.parametrize("cameras", [pytest.param([], id="one_camera"),
                                     pytest.param(["c0", "c1", "c2", "c3"], id="four_cameras")])
def test_cycles_while_frames_stream_keep_threads_and_memory_flat(tmp_path, cameras):
    """configure / activate / deactivate / cleanup, again and again, while every camera streams at
    10 Hz: the node's thread count after each cleanup is the same every time, and its memory does
    not keep growing (benchmarks/node_accounting.py measures 20 cycles with the world model)."""
    from mlmp_ros.ros import rss_bytes, thread_count

    namespace = f"/mlmp_test_lifecycle_cycles_{len(cameras)}"
    node = NodeProcess(None, {**TINY, "classes": CLASSES, "adaptation.steps": 1, "autostart": False,
                              **({"cameras": cameras} if cameras else {})},
                       namespace=namespace, env=NODE_ENV, log_path=tmp_path / "node.log")
    node.start()
    manager = Manager(f"{namespace}/mlmp_segment")
    stop, sessions, after = threading.Event(), [], []
    try:
        for _ in range(8):
            assert manager.transition("configure") and manager.transition("activate"), node.log_tail()
            if not sessions:
                sessions = [LiveSession(namespace=namespace, camera=c, keep_arrays=False).start()
                            for c in cameras or [""]]
                threading.Thread(target=_stream_until, args=(sessions, stop), daemon=True).start()
            for live in sessions:  # frames are labelled in this cycle, on every camera
                seen = len(live.outputs["labels"])
                live.wait_until(lambda live=live, seen=seen: len(live.outputs["labels"]) > seen, 120.0, "labels")
            assert manager.transition("deactivate") and manager.transition("cleanup")
            threading.Event().wait(0.5)
            after.append((thread_count(node.pid), rss_bytes(node.pid) / 2**20))
        threads, rss = zip(*after)
        # A thread left behind per cycle would add 8; the executor's pool may still be filling up.
        assert max(threads) - min(threads) <= EXECUTOR_THREADS - 1, after
        # MB: no growth cycle after cycle (the tiny model is ~1 MB; without the heap-arena cap the
        # 4-camera node grew ~90 MB here; benchmarks/node_accounting.py measures 20 cycles)
        assert rss[-1] - rss[1] < 50.0, after
    finally:
        stop.set()
        for live in sessions:
            live.close()
        manager.close()
        node.stop()
        node.cleanup()


def _stream_until(sessions: list, stop: threading.Event) -> None:
    image = make_image(60, 80)
    while not stop.wait(0.1):
        for live in sessions:
            try:
                live.publish(image)
            except Exception:  # noqa: BLE001 - the session closed under the streamer
                return
