"""One real node (tiny model, raw images): input limits, latency, class-list typos, mono8 confidence
and the Nav2 semantic_segmentation_layer's view of the outputs, ~/enable, input.max_rate_hz."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool

from mlmp_ros.ros.conversions import image_to_array, label_info_type, parse_label_info

from .ros_helpers import CLASSES, make_image, node_session
from .test_conversions import raw_image

NAMESPACE = "mlmp_test_hardening"
TIMEOUT = 90.0
MAX_PIXELS = 2_000_000


@pytest.fixture(scope="module")
def live():
    params = {"adaptation.steps": 1, "diagnostics.period": 0.5, "input.max_pixels": MAX_PIXELS}
    with node_session(NAMESPACE, params) as session:
        yield session


_stamps = iter(range(1_750_000_000 * 10**9, 1_800_000_000 * 10**9, 10**6))


def stamped(msg: Image, stamp_ns: int | None = None) -> Image:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(next(_stamps) if stamp_ns is None else stamp_ns, 10**9)
    msg.header.frame_id = "camera_optical"
    return msg


def send(live, msg: Image, kinds=("labels", "confidence"), stamp_ns: int | None = None) -> dict:
    stamp = live.publish(stamped(msg, stamp_ns))
    return {kind: live.wait_for_output(stamp, TIMEOUT, kind) for kind in kinds}


def bad_count(live) -> int:
    return int(live.wait_for_diagnostics(timeout=10.0).values["bad_frames"])


def test_thin_and_oversized_frames_are_refused_counted_and_the_node_lives_on(live):
    count = bad_count(live)
    frames = {
        # The frame: 7,999 windows after resize [224]; it used to take 22.8 GB and kill the node.
        "1x4000": (raw_image(make_image(1, 4000), "rgb8"), "7999 windows", "input.max_windows"),
        "2x600": (raw_image(make_image(2, 600), "rgb8"), "599 windows", "input.max_windows"),
        "beyond input.max_pixels": (raw_image(make_image(1100, 2000), "rgb8"), "2000x1100", "input.max_pixels"),
    }
    for name, (msg, reason, limit) in frames.items():
        sent = time.monotonic()
        stamp = live.publish(stamped(msg))
        diag = live.wait_for_diagnostics(lambda d, seen=count: int(d.values["bad_frames"]) > seen,
                                         timeout=30.0, after=sent)
        count += 1
        assert int(diag.values["bad_frames"]) == count, name
        assert reason in diag.values["last_bad_frame"], (name, diag.values["last_bad_frame"])
        assert diag.values["last_bad_frame_limit"] == limit, name
        assert diag.level >= 1 and "bad frames" in diag.message
        outs = send(live, raw_image(make_image(60, 80, seed=3), "rgb8"))  # the next frame is served
        assert outs["labels"].array.shape == (60, 80)
        assert live.output(stamp) is None, f"{name} was published"
    assert live.node.alive()


def test_latency_is_measured_from_reception_not_from_the_stamp(live):
    # A bag's (or a simulator's) clock: 2001.  The latency must not read 8e11 ms.
    old = 978_307_200 * 10**9
    sent = time.monotonic()
    send(live, raw_image(make_image(48, 64, seed=2), "rgb8"), stamp_ns=old)
    diag = live.wait_for_diagnostics(lambda d: d.values["latency_ms"] != "", timeout=10.0, after=sent)
    assert 0 <= float(diag.values["latency_ms"]) < 600_000
    assert diag.values["stamp_age_ms"] == ""  # not wall-clock stamps: no age
    # Wall-clock stamps: the age is reported beside the latency.
    sent = time.monotonic()
    send(live, raw_image(make_image(48, 64, seed=2), "rgb8"), stamp_ns=time.time_ns())
    diag = live.wait_for_diagnostics(lambda d: d.values["stamp_age_ms"] != "", timeout=10.0, after=sent)
    assert 0 <= float(diag.values["stamp_age_ms"]) < 600_000
    assert "time_since_last_output_s" in diag.values and "expected_frame_ms" in diag.values
    assert diag.values["frames_lost_in_dds"] == "0"  # loopback, reliable: nothing lost


def test_class_list_typos_and_too_many_classes_are_refused_at_run_time(live):
    cases = {
        "nonexistent_dataset": "built-in lists: cityscapes",
        "voc_21": "did you mean voc21",
    }
    for entry, text in cases.items():
        result = live.set_parameters({"classes": [entry]})[0]
        assert not result.successful, entry
        assert text in result.reason, result.reason
    result = live.set_parameters({"classes": [f"thing {i}" for i in range(65536)]}, timeout=60.0)[0]
    assert not result.successful and "16-bit" in result.reason, result.reason
    assert live.get_parameters(["classes"])["classes"] == CLASSES


def nav2_qos() -> tuple[QoSProfile, QoSProfile]:
    """The semantic_segmentation_layer's subscriptions: sensor-data images (best effort, depth 50)
    and a reliable, transient-local label_info (depth 5)."""
    images = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.VOLATILE)
    labels = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return images, labels


def test_outputs_match_what_nav2_semantic_segmentation_layer_subscribes_to(live):
    image_qos, info_qos = nav2_qos()
    got: dict[str, list] = {"labels": [], "confidence": [], "label_info": []}
    cond = threading.Condition()

    def keep(kind):
        def callback(msg):
            with cond:
                got[kind].append(msg)
                cond.notify_all()
        return callback

    subs = [
        live.ros.create_subscription(Image, live.topics["labels"], keep("labels"), image_qos),
        live.ros.create_subscription(Image, live.topics["confidence"], keep("confidence"), image_qos),
        # Joins long after the node published its class map, as a costmap does.
        live.ros.create_subscription(label_info_type(), live.topics["label_info"], keep("label_info"), info_qos),
    ]
    rgb = make_image(120, 160, seed=7)
    try:
        reference = send(live, raw_image(rgb, "rgb8"))  # 32FC1
        assert all(r.successful for r in live.set_parameters({"output.confidence_encoding": "mono8"}))
        assert not live.set_parameters({"output.confidence_encoding": "16UC1"})[0].successful
        outs = send(live, raw_image(rgb, "rgb8"))
        stamp = outs["labels"].stamp_ns
        conf = outs["confidence"]
        assert conf.encoding == "mono8" and conf.array.dtype == np.uint8
        scaled = reference["confidence"].array.astype(np.float64) * 255
        expected = np.floor(scaled + 0.5).astype(np.int16)  # round(255 p)
        # The node rounds in float32: a value within float32's rounding of a half may go either way.
        off = conf.array.astype(np.int16) != expected
        tie = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-4
        assert not (off & ~tie).any(), np.argwhere(off & ~tie)[:5]
        assert np.abs(conf.array.astype(np.int16) - expected).max() <= 1
        np.testing.assert_array_equal(outs["labels"].array, reference["labels"].array)

        def arrived():
            return (any(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == stamp for m in got["confidence"])
                    and any(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == stamp for m in got["labels"])
                    and got["label_info"])

        with cond:
            assert cond.wait_for(arrived, 30.0), "the Nav2-like subscriptions got nothing"
        by_stamp = {kind: next(m for m in got[kind] if m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == stamp)
                    for kind in ("labels", "confidence")}
        for kind, msg in by_stamp.items():
            # The layer reads data[v * width + u] as one uint8 per pixel: mono8, rows unpadded.
            assert msg.encoding == "mono8" and msg.step == msg.width == 160 and msg.height == 120, kind
            assert len(msg.data) == 160 * 120
            assert msg.header.frame_id == "camera_optical"
        # Its TimeSynchronizer pairs labels and confidence by exact stamp.
        assert by_stamp["labels"].header.stamp == by_stamp["confidence"].header.stamp
        np.testing.assert_array_equal(image_to_array(by_stamp["confidence"]), conf.array)
        # The class names it maps to costs (LabelInfo's class_map; std_msgs/String JSON without vision_msgs).
        assert parse_label_info(got["label_info"][-1]) == dict(enumerate(n.split(",")[0] for n in CLASSES))
    finally:
        live.set_parameters({"output.confidence_encoding": "32FC1"})
        for sub in subs:
            live.ros.destroy_subscription(sub)


def enable(live, on: bool) -> SetBool.Response:
    return live._call(SetBool, f"{live.node_fqn}/enable", SetBool.Request(data=on), 30.0)


def test_enable_false_unsubscribes_and_true_resumes(live):
    try:
        response = enable(live, False)
        assert response.success and "disabled" in response.message, response.message
        live.wait_until(lambda: live.publisher.get_subscription_count() == 0, 20.0, "the node to unsubscribe")
        diag = live.wait_for_diagnostics(lambda d: d.values["enabled"] == "False", timeout=10.0)
        assert "disabled" in diag.message
        stamp = live.publish(stamped(raw_image(make_image(48, 64, seed=5), "rgb8")))
        assert enable(live, False).message == "already disabled"
        response = enable(live, True)
        assert response.success and "enabled" in response.message
        live.wait_until(lambda: live.publisher.get_subscription_count() > 0, 20.0, "the node to subscribe again")
        outs = send(live, raw_image(make_image(48, 64, seed=5), "rgb8"))
        assert outs["labels"].array.shape == (48, 64)
        assert live.output(stamp) is None  # sent while disabled: never processed
    finally:
        enable(live, True)


def test_max_rate_hz_caps_the_processing_rate(live):
    try:
        assert all(r.successful for r in live.set_parameters({"input.max_rate_hz": 2.0}))
        assert not live.set_parameters({"input.max_rate_hz": -1.0})[0].successful
        start = 1_760_000_000 * 10**9
        frames = [(start + i * 50_000_000, make_image(48, 64, seed=i)) for i in range(40)]  # 2 s at 20 Hz
        result = live.play(frames, rate_hz=20.0, timeout=30.0)
        times = sorted(f.labels.received for f in result.frames if f.labels is not None)
        assert len(times) >= 2
        # Frames start at least 0.5 s apart, and none starts before the first is sent or after the last output:
        # a bound on the count that holds however long each frame's work takes (output gaps alone carry its jitter).
        # Uncapped, this tiny model would take most of the 40 frames.
        assert len(times) <= (times[-1] - result.started) * 2.0 + 1, (len(times), times[-1] - result.started)
    finally:
        live.set_parameters({"input.max_rate_hz": 0.0})
