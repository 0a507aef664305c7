"""Several cameras, one model: the node's ``cameras`` mode (see the README, Several cameras).

Each camera ``c`` has its input ``c/image`` (or ``c/image/compressed``) and outputs
``c/segmentation/{labels,confidence,colored,label_info}`` under the node's namespace, its own
counters and its own /diagnostics status (``<node>: c/segmentation``).  One worker thread
serves the cameras' newest frames round robin (:class:`~mlmp_ros.ros.camera_queue.CameraQueue`)
and batches them into one forward pass when nothing adapts and their sizes match.  Adaptation
state is per camera (``adaptation.share: none``) or shared (``cameras``), see
:mod:`mlmp_ros.core.multistream`.  Services: ``~/reset`` (every camera), ``~/<camera>/reset``,
``~/enable`` (every camera).

:class:`CameraHub` is started by :meth:`SegmentNode.start` when ``cameras`` is set; it uses the
node's settings, parameter validation, frame limits and stopping.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger

from ..constants import CONFIDENCE_TOPIC, LABELS_TOPIC
from ..core.methods.base import AdaptationCancelled
from ..core.multistream import MultiStream
from ..core.segmenter import FrameLimitError
from .camera_queue import CameraQueue
from .conversions import (
    BadFrame,
    array_to_image,
    colorize,
    compressed_to_rgb,
    confidence_to_image,
    image_to_rgb,
    label_info_message,
    label_info_type,
    labels_to_image,
    palette,
)
from .diagnostics import (
    NodeView,
    adaptation_summary,
    diagnostic_array,
    diagnostic_values,
    hardware_id,
    health,
    stamp_age,
    status_name,
)
from .qos import (
    SubscriptionEventCallbacks,
    input_qos,
    label_info_qos,
    output_qos,
    reliability_for_publishers,
    reliability_name,
    reliability_policy,
)
from .worker import Frame, Stats

WARN_THROTTLE = 5.0
RESET_TIMEOUT = 120.0
QOS_CHECK_PERIOD = 1.0


@dataclass
class Camera:
    """One camera's topics, subscription and counters."""

    name: str
    input_topic: str
    stats: Stats = field(default_factory=Stats)
    publishers: dict[str, Any] = field(default_factory=dict)
    subscription: Any = None
    reliability: Any = None
    resets_seen: dict[str, int] = field(default_factory=dict)
    steps_mark: tuple[float, int] | None = None


class CameraHub:
    """See the module docs."""

    def __init__(self, node: Any, segmenter: Any):
        self.node = node
        names = list(self.settings.cameras)
        self.streams = MultiStream(segmenter, names, share=node.accepted.adaptation.share == "cameras")
        self.queue = CameraQueue(names)
        self.cameras = {name: Camera(name, self._input_topic(name)) for name in names}
        self.enabled = True
        self._colours = palette(len(segmenter.class_names))
        self._idle_since = time.perf_counter()
        self._last_start: float | None = None  # when the worker last took frames (input.max_rate_hz)
        self._lock = threading.Lock()

    @property
    def settings(self) -> Any:
        """The node's settings now (the parameter service replaces them at run time)."""
        return self.node.settings

    # ----------------------------------------------------------------- start
    def start(self) -> None:
        """Publishers, services, subscriptions, timers and the worker (the node's ``start``)."""
        node = self.node
        self._input_group = MutuallyExclusiveCallbackGroup()
        services, timers = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        for cam in self.cameras.values():
            self._open_outputs(cam)
        self._diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        node.create_service(Trigger, "~/reset", self._on_reset_all, callback_group=services)
        for name in self.cameras:
            node.create_service(Trigger, f"~/{name}/reset", self._reset_handler(name), callback_group=services)
        node.create_service(SetBool, "~/enable", self._on_enable, callback_group=services)
        node.add_on_set_parameters_callback(node._on_set_parameters)
        for cam in self.cameras.values():
            self._subscribe(cam, self._wanted_reliability(cam))
        if self.settings.reliability == "auto":
            node.create_timer(QOS_CHECK_PERIOD, self._check_input_qos, callback_group=timers)
        node.create_timer(self.settings.diagnostics_period, self._publish_diagnostics, callback_group=timers)
        node._work = self.queue
        node._worker = threading.Thread(target=self._run_worker, name="mlmp_segment_cameras", daemon=True)
        node._worker.start()
        for cam in self.cameras.values():
            self._publish_label_info(cam)
        self._log_ready()

    def _log_ready(self) -> None:
        seg, cfg = self.streams.seg, self.node.accepted
        weights = "RANDOM weights (tests only)" if seg.random_weights else f"weights {seg.loaded.weights}"
        state = "one adaptation state for all" if self.streams.shared else "adaptation per camera"
        inputs = ", ".join(f"{c.name} ({c.input_topic})" for c in self.cameras.values())
        self.node.get_logger().info(
            f"ready: {cfg.model} with {weights} on {seg.device}, "
            f"{adaptation_summary(cfg.adaptation, seg.method_cls.adapts)}, {len(seg.class_names)} classes; "
            f"{len(self.cameras)} cameras, {state}: {inputs}")

    def _input_topic(self, name: str) -> str:
        node = self.node
        if not self.settings.compressed:
            return node.resolve_topic_name(f"{name}/image")
        remapped = node.resolve_topic_name(f"{name}/image/compressed")
        if remapped != node.resolve_topic_name(f"{name}/image/compressed", only_expand=True):
            return remapped
        return node.resolve_topic_name(f"{name}/image").rstrip("/") + "/compressed"

    def _open_outputs(self, cam: Camera) -> None:
        node, qos, n = self.node, output_qos(), cam.name
        cam.publishers = {
            "labels": node.create_publisher(Image, f"{n}/{LABELS_TOPIC}", qos),
            "confidence": node.create_publisher(Image, f"{n}/{CONFIDENCE_TOPIC}", qos),
            "colored": node.create_publisher(Image, f"{n}/segmentation/colored", qos),
            "label_info": node.create_publisher(label_info_type(), f"{n}/segmentation/label_info", label_info_qos()),
        }

    # ----------------------------------------------------------------- input
    def _wanted_reliability(self, cam: Camera):
        if self.settings.reliability != "auto":
            return reliability_policy(self.settings.reliability)
        return reliability_for_publishers(self.node.get_publishers_info_by_topic(cam.input_topic))

    def _subscribe(self, cam: Camera, reliability: Any) -> None:
        self._unsubscribe(cam)
        msg_type = CompressedImage if self.settings.compressed else Image
        qos = input_qos(reliability, self.settings.depth)
        on_image = functools.partial(self._on_image, cam.name)
        lost = functools.partial(self._on_message_lost, cam)
        incompatible = functools.partial(self._on_incompatible_qos, cam)
        try:  # message_lost: not every RMW reports it (as the single-camera node)
            events = SubscriptionEventCallbacks(incompatible_qos=incompatible, message_lost=lost)
            cam.subscription = self.node.create_subscription(msg_type, cam.input_topic, on_image, qos,
                                                             callback_group=self._input_group, event_callbacks=events)
        except Exception:  # noqa: BLE001 - UnsupportedEventTypeError, or an rclpy without message_lost
            events = SubscriptionEventCallbacks(incompatible_qos=incompatible)
            cam.subscription = self.node.create_subscription(msg_type, cam.input_topic, on_image, qos,
                                                             callback_group=self._input_group, event_callbacks=events)
        cam.reliability = reliability

    @staticmethod
    def _on_message_lost(cam: Camera, event: Any) -> None:
        count = int(getattr(event, "total_count_change", 0) or 0)
        if count > 0:
            cam.stats.messages_lost(count)

    def _on_incompatible_qos(self, cam: Camera, event: Any) -> None:
        policy = getattr(event.last_policy_kind, "name", str(event.last_policy_kind)).upper()
        if "RELIABILITY" in policy and self.settings.reliability == "auto":
            return  # a best-effort camera appeared: the next QoS check re-subscribes to match it
        cam.stats.qos_incompatible(policy.removeprefix("RMW_QOS_POLICY_"))
        self.node.get_logger().warning(f"incompatible QoS on {cam.input_topic} (policy {policy}); no images arrive "
                                       "from that publisher", throttle_duration_sec=WARN_THROTTLE)

    def _unsubscribe(self, cam: Camera) -> None:
        if cam.subscription is not None:
            self.node.destroy_subscription(cam.subscription)
            cam.subscription = None

    def _check_input_qos(self) -> None:
        with self._lock:
            if not self.enabled:
                return
            for cam in self.cameras.values():
                wanted = self._wanted_reliability(cam)
                if wanted != cam.reliability:
                    self.node.get_logger().info(f"{cam.input_topic}: re-subscribing {reliability_name(wanted)}")
                    self._subscribe(cam, wanted)

    def _on_image(self, name: str, msg: Any) -> None:
        if not self.enabled:
            return
        self.cameras[name].stats.frame_in(self.queue.put_frame(name, Frame(msg, time.perf_counter())))

    # -------------------------------------------------------------- services
    def _reset_handler(self, name: str):
        def handle(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            return self._answer_reset(self.queue.put_reset(name), response)
        return handle

    def _on_reset_all(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._answer_reset(self.queue.put_reset(None), response)

    @staticmethod
    def _answer_reset(pending: Any, response: Trigger.Response) -> Trigger.Response:
        if not pending.done.wait(RESET_TIMEOUT):
            response.success, response.message = False, f"the worker did not reset within {RESET_TIMEOUT:.0f} s"
        else:
            response.success, response.message = pending.ok, pending.message
        return response

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        """~/enable for every camera: unsubscribe (waiting frames dropped) or subscribe again."""
        with self._lock:
            wanted = bool(request.data)
            if wanted != self.enabled:
                self.enabled = wanted
                for cam in self.cameras.values():
                    if wanted:
                        self._subscribe(cam, self._wanted_reliability(cam))
                    else:
                        self._unsubscribe(cam)
                        if self.queue.take_frame(cam.name) is not None:
                            cam.stats.dropped_waiting()
                if not wanted:
                    self.queue.put_call(self.node._release_memory)
        response.success = True
        response.message = f"{'enabled' if wanted else 'disabled'}: {len(self.cameras)} cameras"
        self.node.get_logger().info(response.message)
        return response

    # ---------------------------------------------------------------- worker
    def _hold_to_rate(self) -> bool:
        """input.max_rate_hz: wait until frames may be taken again (frames arriving meanwhile replace the
        waiting ones, and wait together); False when the node stops meanwhile."""
        rate = self.settings.max_rate_hz
        if rate > 0 and self._last_start is not None:
            wait = self._last_start + 1.0 / rate - time.perf_counter()
            if wait > 0 and self.node._stopping.wait(wait):
                return False
        return True

    def _run_worker(self) -> None:
        while True:
            if not self._hold_to_rate():
                return
            work = self.queue.get(len(self.cameras) if self.streams.batchable() else 1)
            if work is None:
                return
            if work.frames:
                self._last_start = time.perf_counter()
            try:
                self._handle(work)
            except AdaptationCancelled:
                return
            except Exception as exc:  # noqa: BLE001 - a frame must never end the worker
                if self.node._stopping.is_set():
                    return
                for name, _ in work.frames:
                    self.cameras[name].stats.frame_error(f"{type(exc).__name__}: {exc}")
                self.node.get_logger().error(f"processing failed ({type(exc).__name__}: {exc})",
                                             throttle_duration_sec=WARN_THROTTLE)
            finally:
                for name, _ in work.frames:
                    self.cameras[name].stats.busy(None)
            self._idle_since = time.perf_counter()

    def _handle(self, work: Any) -> None:
        if work.changes:
            self.streams.update(**work.changes)
            self.node.get_logger().info("applied " + ", ".join(f"{k}={v}" for k, v in work.changes.items()))
            if "classes" in work.changes:
                self._colours = palette(len(self.streams.seg.class_names))
                for cam in self.cameras.values():
                    self._publish_label_info(cam)
        for reset in work.resets:
            self._reset(reset)
        for call in work.calls:
            call()
        if work.frames and self.enabled:
            self._process(work.frames)

    def _reset(self, reset: Any) -> None:
        request = reset.request
        try:
            self.streams.reset(reset.camera)
            which = "every camera" if reset.camera is None else f"camera {reset.camera}"
            shared = " (adaptation is shared: every camera)" if self.streams.shared and reset.camera else ""
            request.ok, request.message = True, f"{which} back to the source weights{shared}"
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            request.message = f"reset failed: {type(exc).__name__}: {exc}"
        finally:
            request.done.set()

    def _convert(self, cam: Camera, msg: Any):
        try:
            self.node._check_limits(msg)
            if isinstance(msg, CompressedImage):
                return compressed_to_rgb(msg, self.settings.max_pixels)
            return image_to_rgb(msg)
        except (BadFrame, FrameLimitError) as exc:
            cam.stats.bad_frame(str(exc), getattr(exc, "limit", "input.max_windows"))
            self.node.get_logger().warning(f"{cam.name}: skipping a bad frame: {exc}",
                                           throttle_duration_sec=WARN_THROTTLE)
            return None

    def _process(self, frames: list) -> None:
        """Convert, segment (one pass for same-size frames when batchable), publish."""
        taken = time.perf_counter()
        ready = []
        for name, frame in frames:
            cam = self.cameras[name]
            cam.stats.busy(time.monotonic())
            rgb = self._convert(cam, frame.msg)
            if rgb is not None:
                ready.append((cam, frame, rgb))
        converted = time.perf_counter()
        for group in self._groups(ready):
            if self.node._stopping.is_set():
                return
            results = self._segment(group)
            for (cam, frame, rgb), (out, timings, steps, loss, status) in zip(group, results):
                self._finish(cam, frame, rgb, out, timings, (taken, converted), (steps, loss, status))

    def _groups(self, ready: list) -> list[list]:
        """Same-size frames together when they can share a forward pass, else one by one."""
        if len(ready) < 2 or not self.streams.batchable():
            return [[item] for item in ready]
        groups: dict[tuple, list] = {}
        for item in ready:
            groups.setdefault(item[2].shape, []).append(item)
        return list(groups.values())

    def _segment(self, group: list) -> list[tuple]:
        """(frame result, timings, steps, last loss, status) per frame of the group."""
        if len(group) == 1:
            cam, _, rgb = group[0]
            r = self.streams.segment(cam.name, [rgb], output="input").result
            self._report_resets(cam)
            return [(r.frames[0], r.timings, len(r.losses), r.losses[-1] if r.losses else None, r.status)]
        outs, timings = self.streams.segment_batch([rgb for _, _, rgb in group], output="input")
        # Each frame waited for the whole pass: its model time is the pass's (model_ms, not a share of it).
        return [(out, timings, 0, None, f"batched x{len(group)}") for out in outs]

    def _finish(self, cam: Camera, frame: Any, rgb: Any, out: Any, timings: dict, marks: tuple, run: tuple) -> None:
        taken, converted = marks
        segmented = time.perf_counter()
        self._publish_outputs(cam, out, rgb, frame.msg.header)
        published = time.perf_counter()
        ready = max(frame.received, self._idle_since)
        overhead = {"schedule": taken - ready, "convert": converted - taken, "publish": published - segmented,
                    "total": max(0.0, published - ready - timings["total"])}
        steps, loss, status = run
        cam.stats.frame_done(latency=published - frame.received, stamp_age=stamp_age(frame.msg.header),
                             took=published - taken,
                             model=timings["total"], overhead=overhead, steps=steps, loss=loss, status=status)

    def _report_resets(self, cam: Camera) -> None:
        reasons = dict(self.streams.stream(cam.name).method.reset_reasons)
        new = {k: v - cam.resets_seen.get(k, 0) for k, v in reasons.items() if v != cam.resets_seen.get(k, 0)}
        cam.resets_seen = reasons
        if any(k != "manual" for k in new):
            self.node.get_logger().warning(f"{cam.name}: adaptation reset to the source weights: " +
                                           ", ".join(f"{k} x{v}" for k, v in new.items()))

    # --------------------------------------------------------------- outputs
    def _publish_outputs(self, cam: Camera, out: Any, rgb: Any, header: Header) -> None:
        s, pubs = self.settings, cam.publishers
        pubs["labels"].publish(labels_to_image(out.labels, header))
        if s.confidence:
            pubs["confidence"].publish(confidence_to_image(out.confidence, header, s.confidence_encoding))
        if s.colored:
            pubs["colored"].publish(array_to_image(colorize(out.labels, self._colours, rgb, s.blend), "rgb8", header))

    def _publish_label_info(self, cam: Camera) -> None:
        view = self.streams.view(cam.name)
        header = Header(stamp=self.node.get_clock().now().to_msg())
        cam.publishers["label_info"].publish(label_info_message(view.class_names, header, view.status().synonyms))

    def _publish_diagnostics(self) -> None:
        node = self.node
        header = Header(stamp=node.get_clock().now().to_msg())
        statuses = [self._camera_status(cam, node.get_fully_qualified_name()) for cam in self.cameras.values()]
        self._diagnostics.publish(DiagnosticArray(header=header, status=statuses))

    def _camera_status(self, cam: Camera, fqn: str) -> Any:
        s = cam.stats.take_period()
        stream = self.streams.stream(cam.name)
        view = self.streams.view(cam.name)
        streaming = stream.stats()
        now = time.monotonic()
        mark, cam.steps_mark = cam.steps_mark, (now, streaming["steps"])
        steps_per_s = (streaming["steps"] - mark[1]) / max(now - mark[0], 1e-9) if mark else streaming["steps_per_s"]
        settings = self.settings
        nv = NodeView(input_topic=cam.input_topic, input_reliability=reliability_name(cam.reliability),
                      enabled=self.enabled, diagnostics_period=settings.diagnostics_period,
                      stall_warn_factor=settings.stall_warn_factor, stall_error_factor=settings.stall_error_factor,
                      unknown_parameters=self.node.unknown_parameters)
        level, message = health(s, nv, random_weights=view.random_weights,
                                last_failure=view.status().last_adaptation_failure)
        values = {"camera": cam.name, **diagnostic_values(s, nv, seg=view, weights=view.status().weights,
                                                          streaming=streaming, steps_per_s=steps_per_s)}
        values["adaptation_shared"] = self.streams.shared
        values["adaptation_weight_shift"] = f"{self.streams.weight_shift(cam.name):.6g}"
        array = diagnostic_array(status_name(fqn, cam.name), level, message, values, hardware_id(view.device), Header())
        return array.status[0]

    # ----------------------------------------------------------------- stop
    def close(self) -> None:
        """After the worker ended: the adaptation threads (async) stop."""
        self.streams.close()
