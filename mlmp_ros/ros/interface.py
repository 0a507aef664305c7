"""The node's services and timers, the same for one camera or several:

- ``~/reset`` (every camera back to the source weights), and with named cameras
  ``~/<camera>/reset`` (that camera's adaptation state);
- ``~/enable`` (false: every camera unsubscribed, waiting frames dropped and counted, working
  memory released; true: subscribed again);
- the input QoS check (``input.reliability: auto``) and ``/diagnostics`` (one status per camera).

Services use :func:`~mlmp_ros.ros.qos.service_qos`, so a burst of calls is answered, not cut at ten.
"""

from __future__ import annotations

import threading
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger

from .diagnostics import NodeView, adaptation_summary, camera_status
from .qos import reliability_name, service_qos

QOS_CHECK_PERIOD = 1.0  # seconds between looks at the camera publishers' QoS (input.reliability: auto)
RESET_TIMEOUT = 120.0  # seconds ~/reset waits for the worker


class NodeInterface:
    """See the module docs; ``node``: the SegmentNode."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._enable_lock = threading.Lock()
        self._diagnostics = None

    def open(self) -> None:
        """Create the services, timers and the /diagnostics publisher (the node destroys them on close)."""
        node = self.node
        services, timers = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        self._diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        node.create_service(Trigger, "~/reset", self._reset_handler(None), qos_profile=service_qos(),
                            callback_group=services)
        if node.named_cameras:
            for name in node.pipelines:
                node.create_service(Trigger, f"~/{name}/reset", self._reset_handler(name),
                                    qos_profile=service_qos(), callback_group=services)
        node.create_service(SetBool, "~/enable", self._on_enable, qos_profile=service_qos(), callback_group=services)
        if node.settings.reliability == "auto":
            node.create_timer(QOS_CHECK_PERIOD, self._check_input_qos, callback_group=timers)
        node.create_timer(node.settings.diagnostics_period, self.publish_diagnostics, callback_group=timers)

    def log_ready(self) -> None:
        node, seg, cfg = self.node, self.node.segmenter, self.node.accepted
        weights = "RANDOM weights (tests only)" if seg.random_weights else f"weights {seg.loaded.weights}"
        inputs = ", ".join(f"{p.name + ' ' if p.name else ''}{p.input_topic} ({reliability_name(p.reliability)})"
                           for p in node.pipelines.values())
        cameras = ""
        if node.named_cameras:
            state = "one adaptation state for all" if node.multicamera.shared else "adaptation per camera"
            cameras = f"{len(node.pipelines)} cameras, {state}; "
        node.get_logger().info(
            f"ready: {cfg.model} with {weights} on {seg.device}, "
            f"{adaptation_summary(cfg.adaptation, seg.method_cls.adapts)}, {len(seg.class_names)} classes; "
            f"{cameras}listening on {inputs}, input.reliability: {node.settings.reliability}")

    # --------------------------------------------------------------- services
    def _reset_handler(self, camera: str | None):
        def handle(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            inbox = self.node.inbox
            if inbox is None:
                response.success, response.message = False, "the node is not active"
                return response
            pending = inbox.put_reset(camera)
            if not pending.done.wait(RESET_TIMEOUT):
                response.success, response.message = False, f"the worker did not reset within {RESET_TIMEOUT:.0f} s"
            else:
                response.success, response.message = pending.ok, pending.message
            return response
        return handle

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        """~/enable false: unsubscribe every camera and free the accelerator's working memory (the model
        stays); true: subscribe again."""
        node, wanted = self.node, bool(request.data)
        with self._enable_lock, node.entities_lock:
            if wanted == node.enabled:
                response.success, response.message = True, f"already {'enabled' if wanted else 'disabled'}"
                return response
            node.enabled = wanted
            for pipe in node.pipelines.values():
                if wanted:
                    pipe.subscribe()
                    continue
                pipe.unsubscribe()
                if node.inbox is not None and node.inbox.take_frame(pipe.name) is not None:
                    pipe.counters.drop("disabled")
                    node.multicamera.priority.frame_left(pipe.name)
            topics = ", ".join(p.input_topic for p in node.pipelines.values())
            if wanted:
                response.message = f"enabled: listening on {topics}"
            else:
                if node.inbox is not None:
                    node.inbox.put_call(node.release_memory)
                response.message = f"disabled: unsubscribed from {topics}; working memory released, the model stays loaded"
        response.success = True
        node.get_logger().info(response.message)
        return response

    # ----------------------------------------------------------------- timers
    def _check_input_qos(self) -> None:
        with self._enable_lock, self.node.entities_lock:
            if not self.node.enabled or self.node.multicamera is None:
                return
            for pipe in self.node.pipelines.values():
                pipe.match_input_qos()

    def publish_diagnostics(self) -> None:
        with self.node.entities_lock:  # not while a deactivate destroys the publisher
            if self.node.multicamera is not None:
                self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        node, multicamera = self.node, self.node.multicamera
        settings = node.settings
        statuses = []
        for pipe in node.pipelines.values():
            view = NodeView(
                input_topic=pipe.input_topic, input_reliability=reliability_name(pipe.reliability),
                enabled=node.enabled, diagnostics_period=settings.diagnostics_period,
                stall_warn_factor=settings.stall_warn_factor, stall_error_factor=settings.stall_error_factor,
                unknown_parameters=node.unknown_parameters, sequence_numbers=pipe.gaps.available)
            statuses.append(camera_status(pipe, multicamera, view, node.get_fully_qualified_name(),
                                          cameras=node.named_cameras))
        header = Header(stamp=node.get_clock().now().to_msg())
        self._diagnostics.publish(DiagnosticArray(header=header, status=statuses))
