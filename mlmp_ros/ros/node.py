"""The ``mlmp_segment`` node: camera images in, labels, confidence and diagnostics out.

Threads: the executor's threads run the callbacks (image, parameters, services,
timers) and never wait for the model; one worker thread owns the
:class:`~mlmp_ros.core.Segmenter` and handles, one at a time, the newest frame and the
run-time changes (parameters, ``~/reset``).  An image that arrives while another is
waiting replaces it and is counted as dropped, so nothing queues up.

Run: ``mlmp-segment --ros-args --params-file config/segment.yaml -r image:=/camera/image_raw``.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidParameterValueException, ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger

from ..constants import CONFIDENCE_TOPIC, LABELS_TOPIC, NODE_NAME
from ..core import ConfigError, ModelNameError, Segmenter, WeightsError
from ..core.methods.base import AdaptationCancelled
from ..core.segmenter import RUNTIME_SETTINGS, FrameLimitError
from ..core.streaming import STREAM_SETTINGS, StreamSegmenter
from ..core.text import ClassList
from . import rss_bytes
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
from .params import NODE_DEFAULTS, NodeSettings, core_config, parameter_specs, plain
from .qos import (
    SubscriptionEventCallbacks,
    input_qos,
    label_info_qos,
    output_qos,
    reliability_for_publishers,
    reliability_name,
    reliability_policy,
)

QOS_CHECK_PERIOD = 1.0  # seconds between looks at the camera publisher's QoS (input.reliability: auto)
WARN_THROTTLE = 5.0  # seconds between repeated warnings about bad frames
RESET_TIMEOUT = 120.0  # seconds ~/reset waits for the worker
STOP_TIMEOUT = 10.0  # seconds a stop waits for the worker (it stops between adaptation steps)
INPUT_RECENT = 2.0  # input counts as arriving if a frame came within max(this, 2 diagnostics periods)
WALL_CLOCK_SLACK = 24 * 3600 * 10**9  # a stamp this close to the system clock is taken as wall-clock time

USAGE = """usage: mlmp-segment [-h] [--ros-args ...]

The mlmp_ros segmentation node: camera images in (image, or image/compressed with
input.compressed), segmentation/labels, segmentation/confidence, segmentation/colored,
segmentation/label_info and /diagnostics out; services ~/reset and ~/enable.

  mlmp-segment --ros-args --params-file config/segment.yaml -r image:=/camera/image_raw
  mlmp-segment --ros-args --params-file config/segment.yaml -p adaptation.steps:=5

Every parameter, with its default and meaning, is in config/segment.yaml (installed
under share/mlmp_ros/config) and in `ros2 param describe /mlmp_segment <name>`.
"""


@dataclass
class Frame:
    msg: Image | CompressedImage
    received: float  # perf_counter when the callback got it


@dataclass
class ResetRequest:
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    message: str = ""


@dataclass
class Work:
    frame: Frame | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    resets: list[ResetRequest] = field(default_factory=list)
    calls: list[Callable[[], None]] = field(default_factory=list)


class WorkQueue:
    """The worker's inbox: one slot for the newest frame, plus run-time changes and resets.

    Changes and resets are handled before the waiting frame; several parameter changes
    that arrive while the worker is busy merge into one update.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._changes: dict[str, Any] = {}
        self._resets: list[ResetRequest] = []
        self._calls: list[Callable[[], None]] = []
        self._closed = False

    def put_frame(self, frame: Frame) -> bool:
        """Store ``frame``; True when it replaced a frame the worker had not taken yet."""
        with self._cond:
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify()
        return replaced

    def take_frame(self) -> Frame | None:
        """The waiting frame, if any (it is no longer waiting)."""
        with self._cond:
            frame, self._frame = self._frame, None
        return frame

    def put_call(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the worker, between frames."""
        with self._cond:
            self._calls.append(call)
            self._cond.notify()

    def put_changes(self, changes: dict[str, Any]) -> None:
        with self._cond:
            self._changes.update(changes)
            self._cond.notify()

    def put_reset(self) -> ResetRequest:
        request = ResetRequest()
        with self._cond:
            if self._closed:
                request.message = "the node is shutting down"
                request.done.set()
                return request
            self._resets.append(request)
            self._cond.notify()
        return request

    def get(self) -> Work | None:
        """The next work (blocking); None once closed."""
        with self._cond:
            while not (self._closed or self._frame or self._changes or self._resets or self._calls):
                self._cond.wait()
            if self._closed:
                return None
            if self._changes or self._resets or self._calls:
                work = Work(changes=self._changes, resets=self._resets, calls=self._calls)
                self._changes, self._resets, self._calls = {}, [], []
                return work
            work = Work(frame=self._frame)
            self._frame = None
            return work

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for request in self._resets:
                request.message = "the node is shutting down"
                request.done.set()
            self._resets = []
            self._cond.notify_all()


class Stats:
    """Counters for /diagnostics: totals since start and sums over the current period."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = self.processed = self.dropped = 0
        self.bad = self.errors = self.incompatible_qos = 0
        self.last_bad = self.last_error = ""
        self.steps = 0
        self.last_loss: float | None = None
        self.last_status = ""
        self.last_frame_at: float | None = None
        self.started_at = time.monotonic()
        self.last_input_at: float | None = None
        self.busy_since: float | None = None  # monotonic: the worker took the frame it works on
        self.expected: float | None = None  # seconds per frame (moving average of finished frames)
        self.lost = 0  # messages the DDS reader reported lost (message-lost events)
        self.rate_skipped = 0  # frames replaced while input.max_rate_hz held the worker back
        self._new_period(time.monotonic())

    def _new_period(self, now: float) -> None:
        self.period_start = now
        self.p_received = self.p_processed = self.p_bad = self.p_errors = 0
        self.p_failures = self.p_incompatible = 0
        self.p_latency: list[float] = []
        self.p_stamp_age: list[float] = []
        self.p_model: list[float] = []
        self.p_overhead: list[float] = []

    def frame_in(self, replaced: bool) -> None:
        with self.lock:
            self.received += 1
            self.p_received += 1
            self.last_input_at = time.monotonic()
            if replaced:
                self.dropped += 1

    def dropped_waiting(self) -> None:
        with self.lock:
            self.dropped += 1

    def replaced_while_waiting(self) -> None:
        with self.lock:
            self.dropped += 1
            self.rate_skipped += 1

    def messages_lost(self, count: int) -> None:
        with self.lock:
            self.lost += count

    def busy(self, since: float | None) -> None:
        with self.lock:
            self.busy_since = since

    def bad_frame(self, reason: str) -> None:
        with self.lock:
            self.bad += 1
            self.p_bad += 1
            self.last_bad = reason

    def frame_error(self, reason: str) -> None:
        with self.lock:
            self.errors += 1
            self.p_errors += 1
            self.last_error = reason

    def frame_done(self, *, latency: float, stamp_age: float | None, model: float, overhead: dict[str, float],
                   steps: int, loss: float | None, status: str, took: float) -> None:
        with self.lock:
            self.processed += 1
            self.p_processed += 1
            self.p_latency.append(latency)
            if stamp_age is not None:
                self.p_stamp_age.append(stamp_age)
            self.expected = took if self.expected is None else 0.8 * self.expected + 0.2 * took
            self.p_model.append(model)
            self.p_overhead.append(overhead)
            self.steps = steps
            self.last_loss = loss
            self.last_status = status
            if status.startswith("restored"):
                self.p_failures += 1
            self.last_frame_at = time.monotonic()

    def qos_incompatible(self) -> None:
        with self.lock:
            self.incompatible_qos += 1
            self.p_incompatible += 1

    def take_period(self) -> dict[str, Any]:
        """A copy of everything, then a new period."""
        with self.lock:
            now = time.monotonic()
            snap = dict(vars(self))
            snap.pop("lock")
            snap["elapsed"] = max(now - self.period_start, 1e-9)
            snap["now"] = now
            self._new_period(now)
        return snap


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.2f}"


class SegmentNode(Node):
    """See the module docs; :meth:`start` loads the model and opens the topics."""

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
                problems.append(f"parameter '{spec.name}' must be {_kind(spec.default)} ({exc})")
        if problems:
            raise ConfigError(problems)
        return values

    def _warn_unknown_overrides(self) -> None:
        overrides = getattr(self, "_parameter_overrides", {}) or {}
        unknown = sorted(name for name in overrides if not self.has_parameter(name))
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameters (typos?): {', '.join(unknown)}")

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
        self.accepted, self.settings = config, settings
        if core_changes:
            flat = config.flat()  # the validated values, e.g. "auto" already resolved
            self._work.put_changes({k: flat[k] for k in core_changes})
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- start
    def start(self, segmenter: Segmenter | None = None) -> None:
        """Load the model (unless given), open topics and services, start the worker."""
        cfg = self.accepted
        if segmenter is None:
            self.get_logger().info(f"loading {cfg.model} (weights: {cfg.weights}, device: {cfg.device})")
            segmenter = Segmenter(cfg)
        self.segmenter = segmenter
        segmenter.max_windows = self.settings.max_windows
        segmenter.method.step_hook = self._before_step
        self.stream = StreamSegmenter(segmenter)
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

        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=self._service_group)
        self.create_service(SetBool, "~/enable", self._on_enable, callback_group=self._service_group)
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
            f"ready: {cfg.model} with {weights} on {segmenter.device}, {cfg.adaptation.method} "
            f"({cfg.adaptation.mode}, {cfg.adaptation.steps} steps), {len(segmenter.class_names)} classes; "
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
        self.stats.qos_incompatible()
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
        if "classes" in changes:
            self._colours = palette(len(self.segmenter.class_names))
            self._publish_label_info()

    def _reset(self, request: ResetRequest) -> None:
        try:
            self.stream.reset()
            request.ok = True
            request.message = f"adapted parameters are back to the source weights (reset {self.segmenter.status().resets})"
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
                               f"pixels, {limit}; not decoded")
            raise BadFrame(f"a {w}x{h} frame has {h * w} pixels, {limit}")
        try:
            self.segmenter.check_size(h, w)
        except FrameLimitError as exc:
            raise BadFrame(f"{exc} (input.max_windows)") from None

    def _process(self, frame: Frame) -> None:
        taken = time.perf_counter()
        self.stats.busy(time.monotonic())
        ready = max(frame.received, self._idle_since)
        msg = frame.msg
        settings = self.settings
        try:
            self._check_limits(msg)
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb(msg, settings.max_pixels)
            else:
                rgb = image_to_rgb(msg)
        except BadFrame as exc:
            self.stats.bad_frame(str(exc))
            self.get_logger().warning(f"skipping a bad frame: {exc}", throttle_duration_sec=WARN_THROTTLE)
            return
        converted = time.perf_counter()
        try:
            streamed = self.stream.segment([rgb], output="input")
            result = streamed.result
        except FrameLimitError as exc:  # the check above runs first; this is the core's own guard
            self.stats.bad_frame(str(exc))
            self.get_logger().warning(f"skipping a bad frame: {exc}", throttle_duration_sec=WARN_THROTTLE)
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
        out = result.frames[0]
        header = msg.header
        settings = self.settings
        self._pub_labels.publish(labels_to_image(out.labels, header))
        if settings.confidence:
            self._pub_confidence.publish(confidence_to_image(out.confidence, header, settings.confidence_encoding))
        if settings.colored:
            coloured = colorize(out.labels, self._colours, rgb, settings.blend)
            self._pub_colored.publish(array_to_image(coloured, "rgb8", header))
        published = time.perf_counter()
        # What the node adds to the segmenter: waking the worker, converting, publishing.
        overhead = {
            "schedule": taken - ready,
            "convert": converted - taken,
            "publish": published - segmented,
            "total": published - ready - result.timings["total"],
        }
        # Latency: from reception to publishing, on this process's steady clock.  The age of the
        # stamp only means something when the stamps are wall-clock time (not a bag's or a simulator's).
        stamp_ns = Time.from_msg(header.stamp).nanoseconds
        wall_ns = time.time_ns()
        stamp_age = (wall_ns - stamp_ns) * 1e-9 if abs(wall_ns - stamp_ns) < WALL_CLOCK_SLACK else None
        self.stats.frame_done(
            latency=published - frame.received,
            stamp_age=stamp_age,
            took=published - taken,
            model=result.timings["total"],
            overhead=overhead,
            steps=len(result.losses),
            loss=result.losses[-1] if result.losses else None,
            status=result.status,
        )

    def _report_resets(self) -> None:
        """Log the continual resets (by reason) since the last frame."""
        reasons = dict(self.stream.method.reset_reasons)
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
        elapsed = s["elapsed"]
        problems = []
        level = DiagnosticStatus.OK
        if seg.random_weights:
            problems.append("running on RANDOM weights (tests only)")
        if s["p_bad"]:
            problems.append(f"{s['p_bad']} bad frames (last: {s['last_bad']})")
        if s["p_failures"]:
            problems.append(f"adaptation failed on {s['p_failures']} frames ({status.last_adaptation_failure}); weights restored")
        if s["p_incompatible"]:
            problems.append(f"incompatible QoS on {self._input_topic}")
        if problems:
            level = DiagnosticStatus.WARN
        if s["p_errors"]:
            level = DiagnosticStatus.ERROR
            problems.insert(0, f"{s['p_errors']} frames failed (last: {s['last_error']})")
        # A stuck worker: input arrives, but the frame in progress has taken far longer than usual.
        now = s["now"]
        in_progress = now - s["busy_since"] if s["busy_since"] is not None else 0.0
        since_output = now - (s["last_frame_at"] if s["last_frame_at"] is not None else s["started_at"])
        input_recent = max(INPUT_RECENT, 2 * self.settings.diagnostics_period)
        input_arriving = s["last_input_at"] is not None and now - s["last_input_at"] <= input_recent
        expected = s["expected"]
        if input_arriving and expected is not None and in_progress > 0:
            factor = in_progress / max(expected, 1e-3)
            stalled = (f"no frame finished for {since_output:.1f} s: the current frame has taken {in_progress:.1f} s, "
                       f"{factor:.0f}x the usual {expected:.2f} s")
            if factor > self.settings.stall_error_factor:
                level = DiagnosticStatus.ERROR
                problems.insert(0, stalled)
            elif factor > self.settings.stall_warn_factor:
                level = max(level, DiagnosticStatus.WARN)
                problems.insert(0, stalled)
        if not self._enabled:
            problems.append("disabled through ~/enable")
        if problems:
            message = "; ".join(problems)
        elif s["last_frame_at"] is None:
            message = f"waiting for images on {self._input_topic}"
        else:
            message = "ok"
        rss = rss_bytes()
        values = {
            "enabled": self._enabled,
            "input_topic": self._input_topic,
            "input_reliability": reliability_name(self._reliability),
            "input_rate_hz": f"{s['p_received'] / elapsed:.2f}",
            "output_rate_hz": f"{s['p_processed'] / elapsed:.2f}",
            "frames_received": s["received"],
            "frames_processed": s["processed"],
            "frames_dropped": s["dropped"],
            "frames_lost_in_dds": s["lost"],
            "frames_skipped_by_rate_cap": s["rate_skipped"],
            "bad_frames": s["bad"],
            "last_bad_frame": s["last_bad"],
            "frame_errors": s["errors"],
            "last_frame_error": s["last_error"],
            "latency_ms": _ms(_mean(s["p_latency"])),
            "latency_max_ms": _ms(max(s["p_latency"], default=None)),
            "stamp_age_ms": _ms(_mean(s["p_stamp_age"])),
            "time_since_last_output_s": f"{since_output:.2f}",
            "frame_in_progress_s": f"{in_progress:.2f}",
            "expected_frame_ms": _ms(expected),
            "model_ms": _ms(_mean(s["p_model"])),
            "overhead_ms": _ms(_mean([o["total"] for o in s["p_overhead"]])),
            "overhead_max_ms": _ms(max((o["total"] for o in s["p_overhead"]), default=None)),
            "overhead_schedule_ms": _ms(_mean([o["schedule"] for o in s["p_overhead"]])),
            "overhead_convert_ms": _ms(_mean([o["convert"] for o in s["p_overhead"]])),
            "overhead_publish_ms": _ms(_mean([o["publish"] for o in s["p_overhead"]])),
            "adaptation_method": seg.config.adaptation.method,
            "adaptation_mode": seg.config.adaptation.mode,
            "adaptation_steps": s["steps"],
            "adaptation_schedule": streaming["schedule"],
            "adaptation_steps_total": streaming["steps"],
            "adaptation_steps_per_s": f"{steps_per_s:.2f}",
            "adaptation_step_ms": _ms(None if streaming["step_ms"] is None else streaming["step_ms"] / 1000.0),
            "adaptation_lag_frames": "" if streaming["lag_frames"] is None else streaming["lag_frames"],
            "adaptation_lag_frames_median": "" if streaming["lag_frames_median"] is None else streaming["lag_frames_median"],
            "adaptation_budget_stops": streaming["stops"]["budget"],
            "adaptation_plateau_stops": streaming["stops"]["plateau"],
            "resets_by_reason": ", ".join(f"{k}={v}" for k, v in sorted(streaming["resets"].items())),
            "last_loss": "" if s["last_loss"] is None else f"{s['last_loss']:.6g}",
            "adaptation_status": s["last_status"],
            "adaptation_failures": streaming["failures"],
            "last_adaptation_failure": streaming["last_failure"],
            "resets": streaming["resets_total"],
            "incompatible_qos_events": s["incompatible_qos"],
            "classes": len(seg.class_names),
            "model": seg.config.model,
            "weights": status.weights,
            "random_weights": seg.random_weights,
            "device": str(seg.device),
            "rss_mb": "" if rss is None else f"{rss / 2**20:.1f}",
        }
        values.update(cuda_memory(seg.device))
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: segmentation",
            message=message,
            hardware_id=str(seg.device),
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        self._pub_diagnostics.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))


def _kind(default: Any) -> str:
    """How a parameter's type reads in an error message."""
    kinds = {bool: "true or false", int: "an integer", float: "a floating-point number (write 1.0, not 1)",
             str: "a string"}
    if isinstance(default, list):
        return "a list of " + {bool: "booleans", int: "integers", float: "floating-point numbers",
                               str: "strings"}[type(default[0])]
    return kinds[type(default)]


def cuda_memory(device: Any) -> dict[str, str]:
    if getattr(device, "type", "") != "cuda":
        return {}
    import torch

    return {
        "cuda_allocated_mb": f"{torch.cuda.memory_allocated(device) / 2**20:.1f}",
        "cuda_max_allocated_mb": f"{torch.cuda.max_memory_allocated(device) / 2**20:.1f}",
    }


# ------------------------------------------------------------------------ main
class _RosLogHandler(logging.Handler):
    """Python logging (the core, open_clip) to the ROS logger, so every line looks alike."""

    def emit(self, record: logging.LogRecord) -> None:
        name = NODE_NAME if record.name == "root" else record.name
        logger = rclpy.logging.get_logger(name)
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            logger.error(text)
        elif record.levelno >= logging.WARNING:
            logger.warning(text)
        elif record.levelno >= logging.INFO:
            logger.info(text)
        else:
            logger.debug(text)


def _setup_logging() -> None:
    root = logging.getLogger()
    root.handlers[:] = [_RosLogHandler()]
    root.setLevel(logging.WARNING)
    logging.getLogger("mlmp_ros").setLevel(logging.INFO)
    logging.captureWarnings(True)
    # The core logs this one itself; as a Python warning it would print twice.
    warnings.filterwarnings("ignore", message="RANDOM WEIGHTS")


STARTUP_ERRORS = (ConfigError, WeightsError, ModelNameError, ParameterException, FileNotFoundError)


def _fail(message: str) -> int:
    print(f"mlmp-segment: error: {message}", file=sys.stderr, flush=True)
    return 1


class _Interrupt:
    """SIGINT before spinning interrupts the start-up; after that, rclpy's own handler
    shuts the context down and the spin ends.  Raising then too could land a
    KeyboardInterrupt in the middle of the clean-up."""

    def __init__(self) -> None:
        self.armed = True

    def __call__(self, signum: int, frame: Any) -> None:
        if self.armed:
            raise KeyboardInterrupt


def _ros_arguments(argv: list[str]) -> list[str]:
    """The tokens inside ``--ros-args ... [--]`` sections."""
    out, inside = [], False
    for token in argv:
        if token == "--ros-args":
            inside = True
        elif token == "--" and inside:
            inside = False
        elif inside:
            out.append(token)
    return out


def command_line_overrides(argv: list[str]) -> dict[str, str]:
    """``-p name:=value`` / ``--param name:=value`` of the command line (the last one per name), as text."""
    tokens = _ros_arguments(argv)
    found: dict[str, str] = {}
    for flag, arg in itertools.pairwise(tokens):
        if flag in ("-p", "--param") and ":=" in arg:
            name, text = arg.split(":=", 1)
            found[name.split(":", 1)[-1] if name.count(":") == 1 else name] = text
    return found


def _same_value(text: str, applied: Any) -> bool:
    """Whether the applied parameter value is what ``-p name:=text`` asked for."""
    try:
        given = yaml.safe_load(text)
    except yaml.YAMLError:
        given = text
    applied = plain(applied)
    if isinstance(applied, str):
        return str(given) == applied or text.strip().strip("'\"") == applied
    if isinstance(applied, bool) or isinstance(given, bool):
        return given is applied
    if isinstance(applied, (int, float)):
        try:
            return type(applied)(float(text) if isinstance(applied, float) else int(text)) == applied
        except ValueError:
            return False
    if isinstance(applied, list) and isinstance(given, list) and len(given) == len(applied):
        return all(_same_value(yaml.safe_dump(g).strip().removesuffix("...").strip(), a) for g, a in zip(given, applied))
    return given == applied


def check_overrides(node: Node, argv: list[str]) -> None:
    """Refuse ``-p`` overrides that ROS dropped (a type mismatch beside --params-file is silently ignored)."""
    problems = []
    for name, text in command_line_overrides(argv).items():
        if not node.has_parameter(name):
            continue
        applied = node.get_parameter(name).value
        if not _same_value(text, applied):
            problems.append(f"-p {name}:={text} was not applied (the parameter is {_describe(applied)}, now "
                            f"{applied!r} from the parameter file or default): give {_kind_of(applied)}")
    if problems:
        raise ConfigError(problems)


def _describe(value: Any) -> str:
    value = plain(value)
    if isinstance(value, list):
        return "a list"
    return {bool: "a boolean", int: "an integer", float: "a floating-point number", str: "a string"}.get(
        type(value), type(value).__name__)


def _kind_of(value: Any) -> str:
    value = plain(value)
    if isinstance(value, list):
        return _kind(value) if value else "a list"
    return _kind(value)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``mlmp-segment``; returns the exit code."""
    argv = list(sys.argv if args is None else args)
    before_ros = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if any(a in ("-h", "--help") for a in before_ros):
        print(USAGE, end="")
        return 0
    _setup_logging()
    interrupt = _Interrupt()
    signal.signal(signal.SIGINT, interrupt)  # rclpy.init chains its handler to this one
    try:
        rclpy.init(args=args)
    except Exception as exc:  # noqa: BLE001 - rcl reports bad --ros-args as RCLError
        return _fail(f"cannot start ROS 2: {exc}")
    node = None
    code = None
    try:
        # Made before the node logs anything: a SIGINT inside the executor's constructor would leave a
        # half-made executor whose finaliser complains.
        executor = MultiThreadedExecutor(num_threads=4)
        node = SegmentNode()
        check_overrides(node, argv)
        node.start()
        # Still inside the try: a SIGINT right after "ready" (before spinning) is a clean start-up stop.
        executor.add_node(node)
        interrupt.armed = False
    except STARTUP_ERRORS as exc:
        what = "invalid parameters" if isinstance(exc, (ConfigError, ParameterException)) else "cannot load the model"
        code = _fail(f"{what}: {' '.join(str(exc).split())}")
    except KeyboardInterrupt:
        code = 0
    if code is not None:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
        return code
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A SIGINT just as spinning starts: rclpy's handler shut the context down before the first
        # wait set was made (RCLError "context is not valid"). That is a stop, not a failure.
        if rclpy.ok():
            raise
    finally:
        stopped = node.stop()
        if not stopped:
            # A single step longer than the stop timeout: leave without waiting for it (exit 0; tearing
            # rclpy down under a running thread would abort the process).
            node.get_logger().warning(f"the frame in progress did not stop within {STOP_TIMEOUT:.0f} s; exiting")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
