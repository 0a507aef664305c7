"""The live session: a camera publisher and a listener for the node over DDS (see the package docs)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from ...constants import CONFIDENCE_TOPIC, LABELS_TOPIC, NODE_NAME
from .. import rss_bytes
from ..conversions import (
    array_to_image,
    image_to_array,
    label_info_type,
    parse_label_info,
)
from ..diagnostics import status_name
from ..qos import label_info_qos, output_qos, reliability_policy
from .calls import NodeCalls, SessionTimeout
from .player import Player
from .process import NodeProcess
from .records import Diagnostics, FrameRecord, Output, PlayResult
from .stamps import cdr_stamp, cdr_with_stamp, set_stamp, stamp_of

_session_ids = itertools.count()




class LiveSession(Player, NodeCalls):
    """A camera and a listener for a running (or started) segmentation node.

    ``node``: a :class:`NodeProcess` to start (None: the node runs elsewhere; give its
    ``namespace`` and ``node_name``).  ``camera``: one of the node's ``cameras`` (its topics
    under ``<namespace>/<camera>``, its own diagnostics status).  ``image_topic`` defaults to the node's ``image``
    (or ``image/compressed`` when ``compressed``).  ``reliability`` and ``depth`` are the
    camera publisher's QoS.  ``record``: which outputs to keep (labels, confidence,
    colored), as arrays (``keep_arrays``) and as serialized bytes (``keep_serialized``).
    """

    def __init__(
        self,
        node: NodeProcess | None = None,
        *,
        namespace: str | None = None,
        node_name: str | None = None,
        image_topic: str | None = None,
        compressed: bool = False,
        reliability: str = "reliable",
        depth: int = 5,
        frame_id: str = "camera",
        record: Sequence[str] = ("labels", "confidence"),
        keep_arrays: bool = True,
        keep_serialized: bool = False,
        rss_period: float = 0.5,
        domain_id: int | None = None,
        camera: str = "",
    ):
        self.node = node
        self.camera = camera  # with the node's cameras: this camera's topics and diagnostics status
        self._name_topics(node, namespace, node_name, image_topic, compressed)
        unknown = set(record) - {"labels", "confidence", "colored"}
        if unknown:
            raise ValueError(f"cannot record {sorted(unknown)}: only labels, confidence and colored")
        self.node_fqn = f"{self.namespace.rstrip('/')}/{self.node_name}"
        self.compressed = compressed
        self.reliability = reliability
        self.depth = depth
        self.frame_id = frame_id
        self.record = tuple(dict.fromkeys(("labels", *record)))
        self.keep_arrays = keep_arrays
        self.keep_serialized = keep_serialized
        self.rss_period = rss_period
        self.domain_id = domain_id
        if domain_id is not None and node is not None:
            node.env.setdefault("ROS_DOMAIN_ID", str(domain_id))
        self._init_state()

    def _name_topics(
        self,
        node: NodeProcess | None,
        namespace: str | None,
        node_name: str | None,
        image_topic: str | None,
        compressed: bool,
    ) -> None:
        """The node's namespace and name, the camera topic and the node's output topics."""
        ns = namespace if namespace is not None else (node.namespace if node else "/")
        self.namespace = "/" + ns.strip("/")
        self.node_name = node_name or (node.name if node else NODE_NAME)
        base = self.namespace.rstrip("/") + (f"/{self.camera}" if self.camera else "")
        self.image_topic = image_topic or f"{base}/image" + ("/compressed" if compressed else "")
        self.topics = {
            "labels": f"{base}/{LABELS_TOPIC}",
            "confidence": f"{base}/{CONFIDENCE_TOPIC}",
            "colored": f"{base}/segmentation/colored",
            "label_info": f"{base}/segmentation/label_info",
        }

    def _init_state(self) -> None:
        """What the session records (empty) and its ROS handles (none until started)."""
        self._cond = threading.Condition()
        self.outputs: dict[str, dict[int, Output]] = {kind: {} for kind in self.record}
        self.label_infos: list[tuple[float, dict[int, str]]] = []
        self.diagnostics: list[Diagnostics] = []
        self.rss: list[tuple[float, int]] = []
        self._published: dict[int, float] = {}  # stamp -> time.monotonic() when published
        self._last_stamp = 0
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self.context: rclpy.Context | None = None
        self.ros = None  # the session's own rclpy node (camera and listener)
        self.publisher = None  # the camera

    # ---------------------------------------------------------- lifecycle
    def __enter__(self) -> LiveSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 180.0) -> LiveSession:
        """Start the node (if given), open the topics, wait until the node is ready."""
        try:
            if self.node is not None and self.node.process is None:
                self.node.start()
            self._open_ros()
            self.wait_until(lambda: bool(self.label_infos), timeout, "the node's label_info")
            self.wait_until(self._connected, 30.0, "the node to match the camera and output topics")
        except BaseException:
            self.close()
            raise
        return self

    def _open_ros(self) -> None:
        from rclpy.signals import SignalHandlerOptions

        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, domain_id=self.domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.ros = rclpy.create_node(f"mlmp_live_{os.getpid()}_{next(_session_ids)}", context=self.context)
        self.publisher = self.ros.create_publisher(
            CompressedImage if self.compressed else Image, self.image_topic,
            QoSProfile(depth=self.depth, reliability=reliability_policy(self.reliability)),
        )
        record_qos = output_qos(depth=100)
        for kind in self.record:
            self.ros.create_subscription(Image, self.topics[kind], self._recorder(kind), record_qos, raw=True)
        self.ros.create_subscription(label_info_type(), self.topics["label_info"], self._on_label_info, label_info_qos())
        self.ros.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.ros)
        self._start_thread(self._spin, "live_spin")
        if self.node is not None and self.rss_period > 0:
            self._start_thread(self._sample_rss, "live_rss")

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _spin(self) -> None:
        while not self._closing.is_set() and self.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:
                if self._closing.is_set():
                    return
                raise

    def _sample_rss(self) -> None:
        while not self._closing.is_set():
            pid = self.node.pid if self.node else None
            value = rss_bytes(pid) if pid and self.node.alive() else None
            if value is not None:
                with self._cond:
                    self.rss.append((time.monotonic(), value))
            self._closing.wait(self.rss_period)

    def _connected(self) -> bool:
        return self.publisher.get_subscription_count() > 0 and self.ros.count_publishers(self.topics["labels"]) > 0

    def close(self) -> int | None:
        """Stop the node (if this session started it) and the session's ROS context."""
        code = None
        if self.node is not None:
            code = self.node.stop()
        self._closing.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
        if self.ros is not None:
            self._executor.shutdown(timeout_sec=1.0)
            self.ros.destroy_node()
            self.ros = None
        if self.context is not None:
            rclpy.try_shutdown(context=self.context)
            self.context = None
        return code

    # ------------------------------------------------------------ waiting
    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str = "a condition") -> None:
        """Wait for ``predicate``; raise :class:`NodeDiedError` if the node dies, :class:`SessionTimeout` at the end."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                if self.node is not None:
                    self.node.check()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SessionTimeout(f"timed out after {timeout:.1f} s waiting for {what}")
                self._cond.wait(min(left, 0.2))

    # ---------------------------------------------------------- recording
    def _recorder(self, kind: str) -> Callable[[bytes], None]:
        def record(data: bytes) -> None:
            received, wall = time.monotonic(), time.time()
            msg = deserialize_message(data, Image)
            out = Output(
                stamp_ns=stamp_of(msg.header),
                frame_id=msg.header.frame_id,
                encoding=msg.encoding,
                width=msg.width,
                height=msg.height,
                received=received,
                received_wall=wall,
                array=image_to_array(msg) if self.keep_arrays else None,
                serialized=bytes(data) if self.keep_serialized else None,
            )
            with self._cond:
                self.outputs[kind][out.stamp_ns] = out
                self._cond.notify_all()

        return record

    def _on_label_info(self, msg: Any) -> None:
        with self._cond:
            self.label_infos.append((time.monotonic(), parse_label_info(msg)))
            self._cond.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        wanted = status_name(self.node_fqn, self.camera)
        for status in msg.status:
            if status.name == wanted:
                level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
                diag = Diagnostics(level, status.message, {kv.key: kv.value for kv in status.values}, time.monotonic())
                with self._cond:
                    self.diagnostics.append(diag)
                    del self.diagnostics[:-1000]
                    self._cond.notify_all()

    @property
    def class_map(self) -> dict[int, str]:
        """The node's latest class map (index -> name)."""
        with self._cond:
            return dict(self.label_infos[-1][1]) if self.label_infos else {}

    def wait_for_label_info(self, predicate: Callable[[dict[int, str]], bool], timeout: float = 30.0) -> dict[int, str]:
        self.wait_until(lambda: bool(self.label_infos) and predicate(self.label_infos[-1][1]), timeout, "label_info")
        return self.class_map

    def wait_for_diagnostics(
        self, predicate: Callable[[Diagnostics], bool] = lambda d: True, timeout: float = 10.0, *, after: float | None = None
    ) -> Diagnostics:
        """The first diagnostics (received after ``after``, default now) that satisfy ``predicate``."""
        since = time.monotonic() if after is None else after
        found: list[Diagnostics] = []

        def match() -> bool:
            found[:] = [d for d in self.diagnostics if d.received >= since and predicate(d)]
            return bool(found)

        self.wait_until(match, timeout, "matching diagnostics")
        return found[0]

    def output(self, stamp_ns: int, kind: str = "labels") -> Output | None:
        with self._cond:
            return self.outputs[kind].get(stamp_ns)

    def published_and_received(self, kind: str = "labels") -> tuple[list[int], dict[int, Output]]:
        """(the stamps of the frames sent so far, sorted; the ``kind`` outputs received so far, by stamp),
        read together, so that a received output's frame is among the stamps."""
        with self._cond:
            return sorted(self._published), dict(self.outputs[kind])

    def sent_at(self, stamp_ns: int) -> float:
        """When the frame stamped ``stamp_ns`` was published (``time.monotonic()``)."""
        with self._cond:
            return self._published[stamp_ns]

    def play_result(self, records: list[FrameRecord], started: float, finished: float) -> PlayResult:
        """The play's records with the outputs received, the node's memory samples and last diagnostics."""
        with self._cond:
            for rec in records:
                rec.labels = self.outputs["labels"].get(rec.stamp_ns)
                rec.confidence = self.outputs.get("confidence", {}).get(rec.stamp_ns)
            rss = [(t - started, b) for t, b in self.rss if started <= t <= finished]
            diag = self.diagnostics[-1] if self.diagnostics else None
        return PlayResult(records, started, finished, rss, diag)

    def wait_for_output(self, stamp_ns: int, timeout: float = 30.0, kind: str = "labels") -> Output:
        self.wait_until(lambda: stamp_ns in self.outputs[kind], timeout, f"{kind} for stamp {stamp_ns}")
        return self.outputs[kind][stamp_ns]

    # ----------------------------------------------------------- publishing
    def _next_stamp(self) -> int:
        return max(time.time_ns(), self._last_stamp + 1)

    def publish(self, frame: Any, stamp_ns: int | None = None, *, restamp: bool = False) -> int:
        """Publish one frame; returns the header stamp it carries.

        ``frame``: an RGB uint8 array (sent as rgb8, or jpeg for a compressed session),
        serialized Image bytes, or an Image / CompressedImage message (sent as it is
        unless ``restamp``).  Arrays take ``stamp_ns`` (default: now) as their stamp.
        Outputs are matched to frames by stamp, so a stamp is sent only once per session.
        """
        if isinstance(frame, np.ndarray):
            stamp = self._next_stamp() if restamp or stamp_ns is None else int(stamp_ns)
            msg = self._array_message(frame, stamp)
        elif isinstance(frame, (bytes, bytearray, memoryview)):
            msg = bytes(frame)
            if restamp:
                msg = cdr_with_stamp(msg, self._next_stamp())
            stamp = cdr_stamp(msg)
        elif hasattr(frame, "header"):
            msg = frame
            if restamp:
                set_stamp(msg.header, self._next_stamp())
            stamp = stamp_of(msg.header)
        else:
            raise TypeError(f"cannot publish a {type(frame).__name__} as a camera frame")
        with self._cond:
            if stamp in self._published:
                raise ValueError(f"a frame with stamp {stamp} was sent already; outputs are matched by stamp "
                                 "(play(..., restamp=True) gives every frame a new one)")
            self._published[stamp] = time.monotonic()
            self._last_stamp = max(self._last_stamp, stamp)
        self.publisher.publish(msg)
        return stamp

    def _array_message(self, rgb: np.ndarray, stamp_ns: int) -> Image | CompressedImage:
        if self.compressed:
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise ValueError("cannot encode the frame as jpeg")
            msg = CompressedImage(format="jpeg", data=data.tobytes())
        else:
            msg = array_to_image(rgb, "rgb8")
        msg.header.frame_id = self.frame_id
        set_stamp(msg.header, stamp_ns)
        return msg
