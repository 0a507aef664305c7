"""The ``mlmp_segment`` node: camera images in, labels, confidence and diagnostics out.

Threads: the executor's threads run the callbacks (image, parameters, services,
timers) and never wait for the model; one worker thread owns the
:class:`~mlmp_ros.core.Segmenter` and handles, one at a time, the newest frame and the
run-time changes (parameters, ``~/reset``).  An image that arrives while another is
waiting replaces it and is counted as dropped, so nothing queues up.

Beside it: ``worker.py`` (the worker's inbox and the counters), ``diagnostics.py`` (what
/diagnostics reports), ``cli.py`` (the command line, start-up errors and signals); their
names used elsewhere stay importable from here.

Run: ``mlmp-segment --ros-args --params-file config/segment.yaml -r image:=/camera/image_raw``.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidParameterValueException, ParameterException
from rclpy.node import Node
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger

from ..constants import CONFIDENCE_TOPIC, LABELS_TOPIC, NODE_NAME
from ..core import ConfigError, Segmenter
from ..core.methods.base import AdaptationCancelled
from ..core.schedule import STREAM_SETTINGS, StreamSegmenter
from ..core.segmenter import RUNTIME_SETTINGS, FrameLimitError
from ..core.text import ClassList
from ..core.threads import in_passing_thread

# The command line and the worker plumbing live beside the node; their names stay importable here.
from .cli import USAGE, check_overrides, command_line_overrides, parameter_kind
from .conversions import (
    BadFrame,
    array_to_image,
    colorize,
    compressed_size,
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
    cuda_memory,
    diagnostic_array,
    diagnostic_values,
    hardware_id,
    health,
    stamp_age,
    status_name,
)
from .params import NODE_DEFAULTS, NodeSettings, core_config, parameter_specs, plain
from .qos import (
    SubscriptionEventCallbacks,
    input_qos,
    label_info_qos,
    output_qos,
    reliability_for_publishers,
    reliability_name,
    reliability_policy,
    service_qos,
)
from .worker import STOP_TIMEOUT, Frame, ResetRequest, Stats, Work, WorkQueue

__all__ = [
    "STOP_TIMEOUT",
    "USAGE",
    "Frame",
    "ResetRequest",
    "SegmentNode",
    "Stats",
    "Work",
    "WorkQueue",
    "check_overrides",
    "command_line_overrides",
    "cuda_memory",
]

QOS_CHECK_PERIOD = 1.0  # seconds between looks at the camera publisher's QoS (input.reliability: auto)
WARN_THROTTLE = 5.0  # seconds between repeated warnings about bad frames
RESET_TIMEOUT = 120.0  # seconds ~/reset waits for the worker
# Run-time settings that change what a label id means: a result computed before such a change
# returned is not published (see _publish_if_current).
LABEL_SETTINGS = ("classes",)


class SegmentNode(Node):
    """See the module docs; :meth:`start` loads the model and opens the topics."""

    MANAGED = False  # the lifecycle node (ros/lifecycle.py) is True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        values = self._declare_parameters()
        self._warn_unknown_overrides()
        self.settings = NodeSettings.from_values(values)
        # The configuration accepted so far (the worker's segmenter catches up between frames).
        self.accepted = core_config(values)
        ClassList.resolve(self.accepted.classes)  # a typo in the class list fails before the model loads
        self.segmenter: Segmenter | None = None
        self.stream: StreamSegmenter | None = None  # the schedule (sync / async) around the segmenter
        self._hub = None  # with cameras: the cameras' topics, worker and adaptation states (ros/cameras.py)
        self._resets_seen: dict[str, int] = {}
        self._steps_mark: tuple[float, int] | None = None
        self.stats = Stats()
        self._work = WorkQueue()
        self._worker: threading.Thread | None = None
        self._subscription = None
        self._reliability: ReliabilityPolicy | None = None
        self._colours = None
        self._idle_since = time.perf_counter()
        self._last_start: float | None = None  # perf_counter when the last frame was taken (input.max_rate_hz)
        self._stopping = threading.Event()
        self._enabled = True
        self._enable_lock = threading.Lock()
        # The label meaning promised to consumers (set when a change is accepted) and the one the
        # worker's segmenter labels with (set when it applies the change); outputs only while equal.
        self._labels_lock = threading.Lock()
        self._labels_accepted = self._labels_applied = self._label_meaning(self.accepted.flat())

    # ------------------------------------------------------------ parameters
    def _declare_parameters(self) -> dict[str, Any]:
        problems = []
        values = {}
        for spec in parameter_specs():
            try:
                values[spec.name] = self.declare_parameter(spec.name, spec.default, spec.descriptor).value
            except InvalidParameterValueException as exc:  # outside the declared range
                problems.append(f"parameter '{spec.name}' {spec.descriptor.additional_constraints} ({exc})")
            except ParameterException as exc:
                problems.append(f"parameter '{spec.name}' must be {parameter_kind(spec.default)} ({exc})")
        if problems:
            raise ConfigError(problems)
        return values

    def _warn_unknown_overrides(self) -> None:
        """Overrides of parameters this node does not have (typos?): warned once, kept for /diagnostics."""
        overrides = getattr(self, "_parameter_overrides", {}) or {}
        self.unknown_parameters = tuple(sorted(name for name in overrides if not self.has_parameter(name)))
        if self.unknown_parameters:
            self.get_logger().warning(f"ignoring unknown parameters (typos?): {', '.join(self.unknown_parameters)}")

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        """Validate run-time changes now; the worker applies them between frames."""
        core_changes, node_changes = {}, {}
        for p in params:
            if p.name in RUNTIME_SETTINGS or p.name in STREAM_SETTINGS:
                core_changes[p.name] = plain(p.value)
            elif p.name in NODE_DEFAULTS:
                node_changes[p.name] = plain(p.value)
        try:
            config = self.accepted.replace(**core_changes) if core_changes else self.accepted
            if "classes" in core_changes:
                ClassList.resolve(config.classes)
            settings = self.settings.replace(node_changes) if node_changes else self.settings
        except (ValueError, OSError) as exc:  # ConfigError is a ValueError
            return SetParametersResult(successful=False, reason=str(exc))
        if core_changes:
            flat = config.flat()  # the validated values, e.g. "auto" already resolved
            with self._labels_lock:  # from here on no output of the old label meaning is published
                self._labels_accepted = self._label_meaning(flat)
                self.accepted, self.settings = config, settings
                self._work.put_changes({k: flat[k] for k in core_changes})
        else:
            self.accepted, self.settings = config, settings
        return SetParametersResult(successful=True)

    @staticmethod
    def _label_meaning(values: dict[str, Any]) -> dict[str, str]:
        """The values of :data:`LABEL_SETTINGS` among flat ``values`` (all or changes), comparable."""
        return {name: repr(values[name]) for name in LABEL_SETTINGS if name in values}

    # ---------------------------------------------------------------- start
    def start(self, segmenter: Segmenter | None = None) -> None:
        """Load the model (unless given), open topics and services, start the worker."""
        if not (self.settings.autostart or self.MANAGED):
            raise ConfigError("autostart: false needs the managed node, which needs lifecycle_msgs "
                              "(pip install ros-lifecycle-msgs, or ros-jazzy-lifecycle-msgs)")
        cfg = self.accepted
        if segmenter is None:
            self.get_logger().info(f"loading {cfg.model} (weights: {cfg.weights}, device: {cfg.device})")
            segmenter = in_passing_thread(Segmenter, cfg)  # torch's work stays off this thread: core/threads.py
        self.segmenter = segmenter
        segmenter.max_windows = self.settings.max_windows
        segmenter.method.step_hook = self._before_step
        if self.settings.cameras:  # several cameras, one model: ros/cameras.py
            from .cameras import CameraHub

            self._hub = in_passing_thread(CameraHub, self, segmenter)
            self._hub.start()
            return
        self.stream = in_passing_thread(StreamSegmenter, segmenter)
        self._colours = palette(len(segmenter.class_names))

        self._input_group = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()

        out_qos = output_qos()
        self._pub_labels = self.create_publisher(Image, LABELS_TOPIC, out_qos)
        self._pub_confidence = self.create_publisher(Image, CONFIDENCE_TOPIC, out_qos)
        self._pub_colored = self.create_publisher(Image, "segmentation/colored", out_qos)
        self._pub_label_info = self.create_publisher(label_info_type(), "segmentation/label_info", label_info_qos())
        self._pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        # A deeper request queue than ROS's default (10): a burst of calls is answered, not cut at ten.
        self.create_service(Trigger, "~/reset", self._on_reset, qos_profile=service_qos(),
                            callback_group=self._service_group)
        self.create_service(SetBool, "~/enable", self._on_enable, qos_profile=service_qos(),
                            callback_group=self._service_group)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._input_topic = self._resolve_input_topic()
        self._subscribe(self._wanted_reliability())
        if self.settings.reliability == "auto":
            self.create_timer(QOS_CHECK_PERIOD, self._check_input_qos, callback_group=self._timer_group)
        self.create_timer(self.settings.diagnostics_period, self._publish_diagnostics, callback_group=self._timer_group)

        self._worker = threading.Thread(target=self._run_worker, name="mlmp_segment_worker", daemon=True)
        self._worker.start()
        self._publish_label_info()  # last: a subscriber takes the class map as the sign that the node is ready
        weights = "RANDOM weights (tests only)" if segmenter.random_weights else f"weights {segmenter.loaded.weights}"
        self.get_logger().info(
            f"ready: {cfg.model} with {weights} on {segmenter.device}, "
            f"{adaptation_summary(cfg.adaptation, segmenter.method_cls.adapts)}, {len(segmenter.class_names)} classes; "
            f"listening on {self._input_topic} ({reliability_name(self._reliability)}, "
            f"input.reliability: {self.settings.reliability})"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Cancel the frame in flight (between adaptation steps) and end the worker; False if it did not end."""
        self._stopping.set()
        self._work.close()
        if self._worker is not None:
            self._worker.join(timeout=timeout)
            if self._worker.is_alive():
                return False
        if self.stream is not None:
            self.stream.close()  # the adaptation thread (async) stops at its next step
        if self._hub is not None:
            self._hub.close()
        return True

    def _before_step(self) -> None:
        """The segmenter calls this before every adaptation step: stop here when the node stops."""
        delay = self.settings.step_delay  # tests only (dev.step_delay): a slow frame on any machine
        if delay > 0:
            self._stopping.wait(delay)
        if self._stopping.is_set():
            raise AdaptationCancelled("the node is stopping")

    # ------------------------------------------------------------------ input
    def _resolve_input_topic(self) -> str:
        if not self.settings.compressed:
            return self.resolve_topic_name("image")
        # As image_transport: <image topic>/compressed, unless image/compressed is remapped itself.
        remapped = self.resolve_topic_name("image/compressed")
        if remapped != self.resolve_topic_name("image/compressed", only_expand=True):
            return remapped
        return self.resolve_topic_name("image").rstrip("/") + "/compressed"

    def _wanted_reliability(self) -> ReliabilityPolicy:
        mode = self.settings.reliability
        if mode != "auto":
            return reliability_policy(mode)
        return reliability_for_publishers(self.get_publishers_info_by_topic(self._input_topic))

    def _subscribe(self, reliability: ReliabilityPolicy) -> None:
        self._unsubscribe()
        msg_type = CompressedImage if self.settings.compressed else Image
        qos = input_qos(reliability, self.settings.depth)
        try:  # message_lost: samples the DDS reader knows it never got (not every RMW reports them)
            events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos,
                                                message_lost=self._on_message_lost)
            self._subscription = self.create_subscription(
                msg_type, self._input_topic, self._on_image, qos, callback_group=self._input_group,
                event_callbacks=events)
        except Exception:  # noqa: BLE001 - UnsupportedEventTypeError, or an rclpy without message_lost
            events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
            self._subscription = self.create_subscription(
                msg_type, self._input_topic, self._on_image, qos, callback_group=self._input_group,
                event_callbacks=events)
        self._reliability = reliability

    def _unsubscribe(self) -> None:
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None

    def _on_message_lost(self, event: Any) -> None:
        count = int(getattr(event, "total_count_change", 0) or 0)
        if count > 0:
            self.stats.messages_lost(count)

    def _check_input_qos(self) -> None:
        with self._enable_lock:
            if not self._enabled:
                return
            self._match_input_qos()

    def _match_input_qos(self) -> None:
        wanted = self._wanted_reliability()
        if wanted != self._reliability:
            self.get_logger().info(
                f"the publishers on {self._input_topic} are now {reliability_name(wanted)}: "
                f"re-subscribing {reliability_name(wanted)}"
            )
            self._subscribe(wanted)

    def _on_incompatible_qos(self, event: Any) -> None:
        policy = getattr(event.last_policy_kind, "name", str(event.last_policy_kind))
        reliability = "RELIABILITY" in policy.upper()
        if reliability and self.settings.reliability == "auto":
            # A best-effort camera appeared; the next QoS check re-subscribes to match it.
            self.get_logger().info(f"a best-effort publisher appeared on {self._input_topic}; matching it")
            return
        self.stats.qos_incompatible(policy.upper().removeprefix("RMW_QOS_POLICY_"))
        hint = (
            "the camera probably publishes best_effort: set input.reliability to auto or best_effort"
            if reliability
            else "compare the publisher's QoS with this subscription's"
        )
        self.get_logger().warning(
            f"incompatible QoS on {self._input_topic}: a publisher's offer does not satisfy this node's "
            f"{reliability_name(self._reliability)} subscription (policy {policy}, "
            f"{event.total_count} incompatible so far); no images arrive from it; {hint}",
            throttle_duration_sec=WARN_THROTTLE,
        )

    def _on_image(self, msg: Image | CompressedImage) -> None:
        if not self._enabled:
            return
        self.stats.frame_in(self._work.put_frame(Frame(msg, time.perf_counter())))

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        """~/enable false: unsubscribe and free the accelerator's working memory (the model stays); true: back on."""
        with self._enable_lock:
            if bool(request.data) == self._enabled:
                response.success, response.message = True, f"already {'enabled' if self._enabled else 'disabled'}"
                return response
            self._enabled = bool(request.data)
            if self._enabled:
                self._subscribe(self._wanted_reliability())
                response.message = f"enabled: listening on {self._input_topic}"
            else:
                self._unsubscribe()
                if self._work.take_frame() is not None:
                    self.stats.dropped_waiting()
                self._work.put_call(self._release_memory)
                response.message = (f"disabled: unsubscribed from {self._input_topic}; working memory released, "
                                    "the model stays loaded")
        response.success = True
        self.get_logger().info(response.message)
        return response

    def _release_memory(self) -> None:
        """On the worker: drop cached tensors so the accelerator's working memory goes back."""
        gc.collect()
        device = self.segmenter.device
        if getattr(device, "type", "") == "cuda":
            import torch

            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        pending = self._work.put_reset()
        if not pending.done.wait(RESET_TIMEOUT):
            response.success, response.message = False, f"the worker did not reset within {RESET_TIMEOUT:.0f} s"
        else:
            response.success, response.message = pending.ok, pending.message
        return response

    # ----------------------------------------------------------------- worker
    def _run_worker(self) -> None:
        while True:
            work = self._work.get()
            if work is None:
                return
            try:
                if work.changes:
                    self._apply_changes(work.changes)
                for request in work.resets:
                    self._reset(request)
                for call in work.calls:
                    call()
                if work.frame is not None:
                    frame = self._hold_to_rate(work.frame)
                    if frame is not None and self._enabled:
                        self._process(frame)
            except AdaptationCancelled:
                return  # the node is stopping
            except Exception as exc:  # noqa: BLE001 - a frame must never end the worker
                if self._stopping.is_set():
                    return  # e.g. publishing after the context was shut down: not an error
                self.stats.frame_error(f"{type(exc).__name__}: {exc}")
                self.get_logger().error(
                    f"processing failed ({type(exc).__name__}: {exc}); waiting for the next frame",
                    throttle_duration_sec=WARN_THROTTLE,
                )
            finally:
                self.stats.busy(None)
            self._idle_since = time.perf_counter()

    def _hold_to_rate(self, frame: Frame) -> Frame | None:
        """input.max_rate_hz: wait until the next frame may start; a newer frame that arrives meanwhile wins."""
        rate = self.settings.max_rate_hz
        if rate > 0 and self._last_start is not None:
            wait = self._last_start + 1.0 / rate - time.perf_counter()
            if wait > 0 and self._stopping.wait(wait):
                return None
            newer = self._work.take_frame()
            if newer is not None:
                self.stats.replaced_while_waiting()
                frame = newer
        self._last_start = time.perf_counter()
        return frame

    def _apply_changes(self, changes: dict[str, Any]) -> None:
        self.stream.update(**changes)
        self.get_logger().info("applied " + ", ".join(f"{k}={v}" for k, v in changes.items()))
        if any(name in changes for name in LABEL_SETTINGS):
            self._colours = palette(len(self.segmenter.class_names))
            self._publish_label_info()  # before any label of the new meaning
            with self._labels_lock:
                self._labels_applied = {**self._labels_applied, **self._label_meaning(changes)}

    def _reset(self, request: ResetRequest) -> None:
        try:
            self.stream.reset()
            request.ok = True
            resets = self.stream.counters()["resets_total"]
            request.message = f"adapted parameters are back to the source weights (reset {resets})"
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            request.message = f"reset failed: {type(exc).__name__}: {exc}"
        finally:
            request.done.set()

    def _check_limits(self, msg: Image | CompressedImage) -> None:
        """Refuse, before converting or decoding, a frame the limits do not allow (raises BadFrame)."""
        settings = self.settings
        if isinstance(msg, CompressedImage):
            size = compressed_size(msg)
            if size is None:
                return  # decoding will say what is wrong
            h, w = size
        else:
            h, w = int(msg.height), int(msg.width)
            if h <= 0 or w <= 0:
                return  # the conversion reports empty images
        if h * w > settings.max_pixels:
            limit = f"more than input.max_pixels {settings.max_pixels}"
            if isinstance(msg, CompressedImage):
                raise BadFrame(f"a compressed frame ({len(msg.data)} bytes) would decode to {w}x{h} = {h * w} "
                               f"pixels, {limit}; not decoded", limit="input.max_pixels")
            raise BadFrame(f"a {w}x{h} frame has {h * w} pixels, {limit}", limit="input.max_pixels")
        try:
            self.segmenter.check_size(h, w)
        except FrameLimitError as exc:
            raise BadFrame(f"{exc} (input.max_windows)", limit="input.max_windows") from None

    def _process(self, frame: Frame) -> None:
        taken = time.perf_counter()
        adaptation = self.segmenter.config.adaptation  # what a frame's time depends on: the stall watchdog's regime
        self.stats.busy(time.monotonic(), f"{adaptation.schedule}/{adaptation.mode}/{adaptation.steps}")
        ready = max(frame.received, self._idle_since)
        msg = frame.msg
        rgb = self._convert(msg)
        if rgb is None:
            return
        converted = time.perf_counter()
        try:
            result = self.stream.segment([rgb], output="input").result
        except FrameLimitError as exc:  # the check above runs first; this is the core's own guard
            self._bad_frame(BadFrame(str(exc), limit="input.max_windows"))
            return
        segmented = time.perf_counter()
        if self._stopping.is_set():
            return  # the context may be gone: publishing now would fail
        self._report_resets()
        if result.status.startswith("restored"):
            self.get_logger().warning(
                f"adaptation failed on this frame ({result.status}); published the prediction "
                "of the last good weights", throttle_duration_sec=WARN_THROTTLE,
            )
        if not self._publish_if_current(result.frames[0], rgb, msg.header):
            return
        published = time.perf_counter()
        # What the node adds to the segmenter: waking the worker, converting, publishing.
        overhead = {
            "schedule": taken - ready,
            "convert": converted - taken,
            "publish": published - segmented,
            "total": published - ready - result.timings["total"],
        }
        self.stats.frame_done(
            latency=published - frame.received,
            stamp_age=stamp_age(msg.header),
            took=published - taken,
            model=result.timings["total"],
            overhead=overhead,
            steps=len(result.losses),
            loss=result.losses[-1] if result.losses else None,
            status=result.status,
        )

    def _convert(self, msg: Image | CompressedImage):
        """The frame as an RGB array, or None when it is bad (counted and warned)."""
        try:
            self._check_limits(msg)
            if isinstance(msg, CompressedImage):
                return compressed_to_rgb(msg, self.settings.max_pixels)
            return image_to_rgb(msg)
        except BadFrame as exc:
            self._bad_frame(exc)
            return None

    def _bad_frame(self, exc: BadFrame) -> None:
        self.stats.bad_frame(str(exc), exc.limit)
        self.get_logger().warning(f"skipping a bad frame: {exc}", throttle_duration_sec=WARN_THROTTLE)

    def _publish_if_current(self, out: Any, rgb: Any, header: Header) -> bool:
        """Publish the outputs unless a change of the label meaning was accepted since the worker applied
        the last one (the frame was labelled under a class list the consumers were told is gone): then
        drop and count them.  Under the lock, so no such change returns between the check and the publish."""
        with self._labels_lock:
            if self._labels_applied != self._labels_accepted:
                self.stats.dropped_by_class_change()
                return False
            self._publish_outputs(out, rgb, header)
        return True

    def _publish_outputs(self, out: Any, rgb: Any, header: Header) -> None:
        """Labels, and as configured confidence and the coloured overlay, under the input's header."""
        settings = self.settings
        self._pub_labels.publish(labels_to_image(out.labels, header))
        if settings.confidence:
            self._pub_confidence.publish(confidence_to_image(out.confidence, header, settings.confidence_encoding))
        if settings.colored:
            coloured = colorize(out.labels, self._colours, rgb, settings.blend)
            self._pub_colored.publish(array_to_image(coloured, "rgb8", header))

    def _report_resets(self) -> None:
        """Log the continual resets (by reason) since the last frame."""
        reasons = self.stream.counters()["resets"]
        new = {k: v - self._resets_seen.get(k, 0) for k, v in reasons.items() if v != self._resets_seen.get(k, 0)}
        self._resets_seen = reasons
        if any(k != "manual" for k in new):
            self.get_logger().warning("adaptation reset to the source weights: " +
                                      ", ".join(f"{k} x{v}" for k, v in new.items()))  # fmt: skip

    # ---------------------------------------------------------------- outputs
    def _publish_label_info(self) -> None:
        seg = self.segmenter
        header = Header(stamp=self.get_clock().now().to_msg())
        self._pub_label_info.publish(label_info_message(seg.class_names, header, seg.status().synonyms))

    def _publish_diagnostics(self) -> None:
        s = self.stats.take_period()
        seg = self.segmenter
        status = seg.status()
        streaming = self.stream.stats()  # the adaptation side's counters (its own method under async)
        now_m = time.monotonic()
        mark, self._steps_mark = self._steps_mark, (now_m, streaming["steps"])
        steps_per_s = (streaming["steps"] - mark[1]) / max(now_m - mark[0], 1e-9) if mark else streaming["steps_per_s"]
        view = NodeView(
            input_topic=self._input_topic,
            input_reliability=reliability_name(self._reliability),
            enabled=self._enabled,
            diagnostics_period=self.settings.diagnostics_period,
            stall_warn_factor=self.settings.stall_warn_factor,
            stall_error_factor=self.settings.stall_error_factor,
            unknown_parameters=self.unknown_parameters,
        )
        level, message = health(s, view, random_weights=seg.random_weights,
                                last_failure=streaming["last_failure"])
        values = diagnostic_values(s, view, seg=seg, weights=status.weights, streaming=streaming,
                                   steps_per_s=steps_per_s)
        header = Header(stamp=self.get_clock().now().to_msg())
        self._pub_diagnostics.publish(diagnostic_array(status_name(self.get_fully_qualified_name()), level, message,
                                                       values, hardware_id(seg.device), header))
