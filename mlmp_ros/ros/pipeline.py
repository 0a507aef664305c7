"""One camera's way through the node, on the ROS side: its input subscription (QoS matched to the
camera, frames into the worker's inbox, sequence gaps counted), its output publishers, the frame
checks and conversion, and its counters.

The node has one :class:`CameraPipeline` per camera: with ``cameras: []`` one named ``""``
whose topics are the node's own (``image`` in, ``segmentation/...`` out); with ``cameras:
[front, rear]`` one per name, under the camera's name (``front/image``, ``front/segmentation/...``).
Every camera goes through the same code: the worker (ros/worker.py) serves them all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ..constants import CONFIDENCE_TOPIC, LABELS_TOPIC
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
from .counters import Counters, SequenceGaps
from .inbox import Inbox, ReceivedFrame
from .qos import (
    SubscriptionEventCallbacks,
    input_qos,
    label_info_qos,
    output_qos,
    reliability_for_publishers,
    reliability_name,
    reliability_policy,
)

WARN_THROTTLE = 5.0  # seconds between repeated warnings about bad frames


@dataclass
class Outputs:
    """A camera's publishers."""

    labels: Any
    confidence: Any
    colored: Any
    label_info: Any


class CameraPipeline:
    """See the module docs.  ``node``: the SegmentNode (settings, logger, entities)."""

    def __init__(self, node: Any, name: str, counters: Counters) -> None:
        self.node = node
        self.name = name
        self.counters = counters
        self.prefix = f"{name}/" if name else ""
        self.input_topic = self._resolve_input_topic()
        self.gaps = SequenceGaps()
        self.subscription = None
        self.reliability: ReliabilityPolicy | None = None
        self.outputs: Outputs | None = None
        self.inbox: Inbox | None = None
        self.priority: Any = None  # core/priority.py: a waiting frame holds adaptation back (async)
        self.colours = None
        self.resets_seen: dict[str, int] = {}
        self.steps_mark: tuple[float, int] | None = None
        # Its own group: one camera's callbacks never wait for another's, and run in arrival order.
        self._group = MutuallyExclusiveCallbackGroup()

    @property
    def label(self) -> str:
        """How logs name the camera ("" for the single camera)."""
        return f"{self.name}: " if self.name else ""

    # ---------------------------------------------------------------- topics
    def _resolve_input_topic(self) -> str:
        node, image = self.node, f"{self.prefix}image"
        if not node.settings.compressed:
            return node.resolve_topic_name(image)
        # As image_transport: <image topic>/compressed, unless .../image/compressed is remapped itself.
        remapped = node.resolve_topic_name(f"{image}/compressed")
        if remapped != node.resolve_topic_name(f"{image}/compressed", only_expand=True):
            return remapped
        return node.resolve_topic_name(image).rstrip("/") + "/compressed"

    def open(self, inbox: Inbox, classes: int, priority: Any) -> None:
        """Publishers (the node tracks them as this activation's entities), the inbox frames go to and
        the adaptation priority they claim while they wait."""
        node, qos, p = self.node, output_qos(), self.prefix
        self.inbox, self.priority = inbox, priority
        self.colours = palette(classes)
        self.outputs = Outputs(
            labels=node.create_publisher(Image, f"{p}{LABELS_TOPIC}", qos),
            confidence=node.create_publisher(Image, f"{p}{CONFIDENCE_TOPIC}", qos),
            colored=node.create_publisher(Image, f"{p}segmentation/colored", qos),
            label_info=node.create_publisher(label_info_type(), f"{p}segmentation/label_info", label_info_qos()),
        )

    def close(self) -> None:
        """Forget this activation's entities (the node destroys them)."""
        self.subscription = self.outputs = self.inbox = self.priority = None

    # ----------------------------------------------------------------- input
    def wanted_reliability(self) -> ReliabilityPolicy:
        mode = self.node.settings.reliability
        if mode != "auto":
            return reliability_policy(mode)
        return reliability_for_publishers(self.node.get_publishers_info_by_topic(self.input_topic))

    def subscribe(self, reliability: ReliabilityPolicy | None = None) -> None:
        self.unsubscribe()
        self.gaps.restart()  # what was sent while the node did not listen is not lost
        reliability = self.wanted_reliability() if reliability is None else reliability
        settings = self.node.settings
        msg_type = CompressedImage if settings.compressed else Image
        qos = input_qos(reliability, settings.depth)
        # message_lost: samples the DDS reader knows it never got; not every RMW reports them
        # (UnsupportedEventTypeError, or an rclpy without message_lost): then without it.
        for events in (dict(message_lost=self._on_message_lost), {}):
            try:
                self.subscription = self.node.create_subscription(
                    msg_type, self.input_topic, self._on_image, qos, callback_group=self._group,
                    event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos, **events))
                break
            except Exception:
                if not events:
                    raise
        self.reliability = reliability

    def unsubscribe(self) -> None:
        if self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
            self.subscription = None

    def match_input_qos(self) -> None:
        """input.reliability auto: re-subscribe when the camera's publishers changed reliability."""
        wanted = self.wanted_reliability()
        if self.subscription is not None and wanted != self.reliability:
            self.node.get_logger().info(f"the publishers on {self.input_topic} are now {reliability_name(wanted)}: "
                                        f"re-subscribing {reliability_name(wanted)}")
            self.subscribe(wanted)

    def _on_image(self, msg: Image | CompressedImage, info: Any) -> None:
        """rclpy hands ``info`` (MessageInfo: the publisher's sequence number) to a two-argument callback."""
        received = time.perf_counter()
        gap = self.gaps.gap(info)
        if gap:
            self.counters.messages_lost(gap)
        inbox, priority = self.inbox, self.priority
        if inbox is None or not self.node.enabled:  # taken just before the node stopped listening
            self.counters.frame_in(None)
            self.counters.drop("disabled" if inbox is not None else "inactive")
            return
        if priority is not None:
            priority.frame_arrived(self.name)  # adaptation steps back while a frame waits
        # The reason the frame it replaced is gone ("inactive": the inbox closed, this frame is dropped).
        replaced = inbox.put_frame(self.name, ReceivedFrame(msg, received))
        self.counters.frame_in(replaced)
        if replaced and priority is not None:
            priority.frame_left(self.name)  # one frame fewer waits: the replaced one (or this one, refused)

    def _on_message_lost(self, event: Any) -> None:
        count = int(getattr(event, "total_count_change", 0) or 0)
        if count > 0:
            self.counters.messages_lost(count, event=True)

    def _on_incompatible_qos(self, event: Any) -> None:
        policy = getattr(event.last_policy_kind, "name", str(event.last_policy_kind)).upper()
        reliability = "RELIABILITY" in policy
        if reliability and self.node.settings.reliability == "auto":
            # A best-effort camera appeared; the next QoS check re-subscribes to match it.
            self.node.get_logger().info(f"a best-effort publisher appeared on {self.input_topic}; matching it")
            return
        self.counters.qos_incompatible(policy.removeprefix("RMW_QOS_POLICY_"))
        hint = ("the camera probably publishes best_effort: set input.reliability to auto or best_effort"
                if reliability else "compare the publisher's QoS with this subscription's")
        self.node.get_logger().warning(
            f"incompatible QoS on {self.input_topic}: a publisher's offer does not satisfy this node's "
            f"{reliability_name(self.reliability)} subscription (policy {policy}, "
            f"{getattr(event, 'total_count', '?')} incompatible so far); no images arrive from it; {hint}",
            throttle_duration_sec=WARN_THROTTLE)

    # ------------------------------------------------------------ the frame
    def convert(self, msg: Image | CompressedImage):
        """The frame as an RGB array, or None when it is bad (counted and warned).  The core checks
        its window count when it segments it (a frame refused there comes back to :meth:`bad_frame`)."""
        try:
            check_pixels(msg, self.node.settings.max_pixels)
            if isinstance(msg, CompressedImage):
                return compressed_to_rgb(msg, self.node.settings.max_pixels)
            return image_to_rgb(msg)
        except BadFrame as exc:
            self.bad_frame(exc)
            return None

    def bad_frame(self, exc: BadFrame) -> None:
        self.counters.bad_frame(str(exc), exc.limit)
        self.node.get_logger().warning(f"{self.label}skipping a bad frame: {exc}", throttle_duration_sec=WARN_THROTTLE)

    # --------------------------------------------------------------- outputs
    def publish(self, out: Any, rgb: Any, header: Header) -> None:
        """Labels, and as configured confidence and the coloured overlay, under the input's header."""
        settings, pubs = self.node.settings, self.outputs
        pubs.labels.publish(labels_to_image(out.labels, header))
        if settings.confidence:
            pubs.confidence.publish(confidence_to_image(out.confidence, header, settings.confidence_encoding))
        if settings.colored:
            coloured = colorize(out.labels, self.colours, rgb, settings.blend)
            pubs.colored.publish(array_to_image(coloured, "rgb8", header))

    def publish_label_info(self, class_names: list[str], synonyms: Any) -> None:
        """The class map (and the overlay's palette for it): before any label of a new class list."""
        self.colours = palette(len(class_names))
        header = Header(stamp=self.node.get_clock().now().to_msg())
        self.outputs.label_info.publish(label_info_message(class_names, header, synonyms))


def check_pixels(msg: Image | CompressedImage, max_pixels: int) -> None:
    """Refuse, before converting or decoding, a frame over ``input.max_pixels`` (raises BadFrame)."""
    if isinstance(msg, CompressedImage):
        size = compressed_size(msg)
        if size is None:
            return  # decoding will say what is wrong
        h, w = size
    else:
        h, w = int(msg.height), int(msg.width)
        if h <= 0 or w <= 0:
            return  # the conversion reports empty images
    if h * w > max_pixels:
        limit = f"more than input.max_pixels {max_pixels}"
        if isinstance(msg, CompressedImage):
            raise BadFrame(f"a compressed frame ({len(msg.data)} bytes) would decode to {w}x{h} = {h * w} "
                           f"pixels, {limit}; not decoded", limit="input.max_pixels")
        raise BadFrame(f"a {w}x{h} frame has {h * w} pixels, {limit}", limit="input.max_pixels")
