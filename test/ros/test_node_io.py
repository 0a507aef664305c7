"""One real node process (tiny model, raw images): encodings, sizes, classes, bad frames, reset."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image

from mlmp_ros.ros.conversions import image_to_array, label_info_type, parse_label_info
from mlmp_ros.ros.qos import label_info_qos

from .ros_helpers import CLASSES, make_image, node_session
from .test_conversions import raw_image

NAMESPACE = "mlmp_test_io"
TIMEOUT = 90.0


@pytest.fixture(scope="module")
def live():
    # Episodic with one step: every frame starts from the source weights, so the same
    # pixels give the same output however they were encoded.
    params = {"adaptation.steps": 1, "diagnostics.period": 0.5, "adaptaton.lr": 0.1}  # the last one: a typo
    with node_session(NAMESPACE, params, record=("labels", "confidence", "colored"), keep_serialized=True) as session:
        yield session


def stamped(msg: Image, stamp_ns: int, frame_id: str = "camera_optical") -> Image:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = frame_id
    return msg


_stamps = iter(range(1_700_000_000 * 10**9, 1_800_000_000 * 10**9, 10**6))


def send(live, msg: Image, kinds=("labels", "confidence")):
    """Publish ``msg`` with a fresh stamp; its outputs, each checked against the input's header and size."""
    stamp = live.publish(stamped(msg, next(_stamps)))
    outs = {kind: live.wait_for_output(stamp, TIMEOUT, kind) for kind in kinds}
    for out in outs.values():
        assert out.stamp_ns == stamp and out.frame_id == "camera_optical"
        assert (out.width, out.height) == (msg.width, msg.height)
    return outs


def check_maps(live, outs, n_classes: int) -> None:
    labels, conf = outs["labels"], outs["confidence"]
    assert labels.encoding == "mono8" and labels.array.dtype == np.uint8
    assert labels.array.shape == (labels.height, labels.width)
    assert int(labels.array.max()) < n_classes
    assert conf.encoding == "32FC1" and conf.array.dtype == np.float32
    assert conf.array.shape == labels.array.shape
    assert np.isfinite(conf.array).all() and conf.array.min() >= 0.0 and conf.array.max() <= 1.0


@pytest.mark.parametrize("width, height", [(640, 480), (1280, 720), (333, 251), (64, 48), (480, 640)])
def test_outputs_carry_the_input_header_and_size(live, width, height):
    outs = send(live, raw_image(make_image(height, width, seed=width), "rgb8"))
    check_maps(live, outs, len(CLASSES))


def test_outputs_are_recorded_as_arrays_and_as_serialized_messages(live):
    outs = send(live, raw_image(make_image(30, 40, seed=1), "rgb8"))
    for out in outs.values():
        msg = deserialize_message(out.serialized, Image)
        np.testing.assert_array_equal(image_to_array(msg), out.array)
        assert abs(out.received_wall - time.time()) < 60


def test_play_follows_the_recorded_rate_times_speed(live):
    start = 1_900_000_000 * 10**9
    frames = [(start + i * 1_000_000_000, make_image(48, 64, seed=i)) for i in range(4)]
    result = live.play(frames, speed=4.0)
    assert [f.stamp_ns for f in result.frames] == [stamp for stamp, _ in frames]
    # 1 s recorded, played at x4: frame i is due 0.25 * i s after the start and never sent before
    # (the send times are absolute, so a late frame does not delay the next ones). Played at x1 the
    # last frame would be sent after 3 s; the upper bound leaves 1.75 s for timing noise.
    sent = np.array([f.published for f in result.frames]) - result.started
    assert np.all(sent >= 0.25 * np.arange(4)), sent
    assert sent[-1] < 2.5, sent
    assert result.frames[-1].labels is not None and result.processed >= 1
    with pytest.raises(ValueError, match="was sent already"):  # outputs are matched by stamp
        live.play([(start + 1, frames[0][1]), (start + 1, frames[0][1])], paced=True)


def test_every_encoding_gives_the_same_segmentation_as_rgb8(live):
    rgb = make_image(240, 320, seed=11)
    reference = send(live, raw_image(rgb, "rgb8"))
    alpha = np.full(rgb.shape[:2], 77, np.uint8)
    variants = {
        "rgb8 padded": raw_image(rgb, "rgb8", pad=16),
        "bgr8": raw_image(np.ascontiguousarray(rgb[..., ::-1]), "bgr8"),
        "rgba8": raw_image(np.dstack([rgb, alpha]), "rgba8", pad=4),
        "bgra8": raw_image(np.dstack([rgb[..., ::-1], alpha]), "bgra8"),
    }
    for name, msg in variants.items():
        outs = send(live, msg)
        check_maps(live, outs, len(CLASSES))
        np.testing.assert_array_equal(outs["labels"].array, reference["labels"].array, err_msg=name)
        np.testing.assert_array_equal(outs["confidence"].array, reference["confidence"].array, err_msg=name)
    # The comparison can fail: the same pixels with red and blue swapped segment differently.
    swapped = send(live, raw_image(np.ascontiguousarray(rgb[..., ::-1]), "rgb8"))
    assert not np.array_equal(swapped["confidence"].array, reference["confidence"].array)


def test_mono_encodings_agree(live):
    gray = make_image(200, 300, seed=5)[..., 1].copy()
    gray[0, 0] = 255  # mono16 is scaled by the frame's maximum: this keeps the values
    mono8 = send(live, raw_image(gray, "mono8"))
    check_maps(live, mono8, len(CLASSES))
    for big_endian in (False, True):
        mono16 = send(live, raw_image(gray.astype(np.uint16) * 257, "mono16", pad=2, big_endian=big_endian))
        np.testing.assert_array_equal(mono16["labels"].array, mono8["labels"].array)
        np.testing.assert_array_equal(mono16["confidence"].array, mono8["confidence"].array)


def test_colored_output_switches_on_at_run_time(live):
    rgb = make_image(120, 160, seed=8)
    try:
        assert all(r.successful for r in live.set_parameters({"output.colored": True, "output.blend": 0.0}))
        outs = send(live, raw_image(rgb, "rgb8"), kinds=("labels", "colored"))
        colored = outs["colored"]
        assert colored.encoding == "rgb8" and colored.array.shape == (120, 160, 3)
        # Same label, same colour; different labels, different colours.
        labels = outs["labels"].array
        colours = {}
        for label, colour in zip(labels.ravel(), colored.array.reshape(-1, 3)):
            assert colours.setdefault(int(label), tuple(colour)) == tuple(colour)
        assert len(set(colours.values())) == len(colours)
        refused = live.set_parameters({"output.blend": 2.0})
        assert not refused[0].successful
        assert all(r.successful for r in live.set_parameters({"output.blend": 1.0}))
        blended = send(live, raw_image(rgb, "rgb8"), kinds=("labels", "colored"))["colored"]
        np.testing.assert_array_equal(blended.array, rgb)  # blend 1: the input only
    finally:
        live.set_parameters({"output.colored": False, "output.blend": 0.0})


def test_label_info_reaches_late_subscribers_and_follows_class_changes(live):
    received = []
    changed = threading.Event()

    def on_info(msg):
        received.append(parse_label_info(msg))
        if len(received[-1]) == 3:
            changed.set()

    # A subscriber that joins long after the node published its class map.
    sub = live.ros.create_subscription(label_info_type(), live.topics["label_info"], on_info, label_info_qos())
    try:
        live.wait_until(lambda: bool(received), 20.0, "label_info for a late subscriber")
        assert received[0] == dict(enumerate(["cat", "dog", "sky", "grass", "road"]))

        results = live.set_parameters({"classes": ["road", "sky", "tree, bush"]})
        assert results[0].successful, results[0].reason
        assert changed.wait(30.0), "no label_info after the class change"
        assert received[-1] == {0: "road", 1: "sky", 2: "tree"}
        assert live.get_parameters(["classes"])["classes"] == ["road", "sky", "tree, bush"]
        outs = send(live, raw_image(make_image(100, 140, seed=2), "rgb8"))
        check_maps(live, outs, 3)

        for bad in ([""], [], ["cat", " "], ["missing_class_file.txt"]):
            result = live.set_parameters({"classes": bad})[0]
            assert not result.successful, bad
            assert "class" in result.reason, result.reason
        assert live.get_parameters(["classes"])["classes"] == ["road", "sky", "tree, bush"]
        assert live.class_map == {0: "road", 1: "sky", 2: "tree"}
    finally:
        assert live.set_parameters({"classes": CLASSES})[0].successful
        live.wait_for_label_info(lambda m: len(m) == len(CLASSES))
        live.ros.destroy_subscription(sub)


def test_unknown_parameters_are_reported(live):
    assert live.wait_for_diagnostics().values["unknown_parameters"] == "adaptaton.lr"


def test_run_time_parameters_are_checked(live):
    assert not live.set_parameters({"adaptation.steps": -1})[0].successful
    assert "adaptation.steps" in live.set_parameters({"adaptation.steps": -1})[0].reason
    assert "adaptation.mode" in live.set_parameters({"adaptation.mode": "sometimes"})[0].reason
    read_only = live.set_parameters({"model": "ViT-B-32"})[0]
    assert not read_only.successful
    assert live.get_parameters(["adaptation.steps", "model"]) == {"adaptation.steps": 1, "model": "mlmp-tiny-test"}


def test_declared_ranges_refuse_values_at_run_time(live):
    # A closed range is the parameter's ROS range (rclpy refuses first); an open end is the node's check.
    blend = live.set_parameters({"output.blend": 1.5})[0]
    assert not blend.successful and "output.blend" in blend.reason and "range" in blend.reason, blend.reason
    alpha = live.set_parameters({"adaptation.safeguards.ensemble_alpha": 0.0})[0]
    assert not alpha.successful and "ensemble_alpha must be in (0, 1], not 0.0" in alpha.reason, alpha.reason
    assert live.get_parameters(["output.blend"]) == {"output.blend": 0.0}


def bad_frames() -> dict[str, Image]:
    good = raw_image(make_image(60, 80, seed=4), "rgb8")
    frames = {}
    msg = raw_image(make_image(60, 80, seed=4), "rgb8")
    msg.step = 80 * 3 - 3
    frames["step smaller than a row"] = msg
    msg = raw_image(make_image(60, 80, seed=4), "rgb8")
    msg.data = bytes(good.data)[: 80 * 3 * 59]
    frames["data shorter than declared"] = msg
    msg = raw_image(make_image(60, 80, seed=4), "rgb8")
    msg.encoding = "not_an_encoding"
    frames["unsupported encoding"] = msg
    frames["zero size"] = Image(height=0, width=0, encoding="rgb8", step=0, data=b"")
    return frames


def test_bad_frames_are_skipped_counted_and_the_next_good_frame_is_served(live):
    count = int(live.wait_for_diagnostics(timeout=10.0).values["bad_frames"])
    for name, msg in bad_frames().items():
        sent = time.monotonic()
        bad_stamp = live.publish(stamped(msg, next(_stamps)))
        # Wait until the node has looked at it (a frame sent at once would replace it).
        diag = live.wait_for_diagnostics(
            lambda d, seen=count: int(d.values["bad_frames"]) > seen, timeout=10.0, after=sent
        )
        count += 1
        assert int(diag.values["bad_frames"]) == count, name
        assert diag.level >= 1 and "bad frames" in diag.message, name
        outs = send(live, raw_image(make_image(60, 80, seed=6), "rgb8"))
        check_maps(live, outs, len(CLASSES))
        assert live.output(bad_stamp) is None, f"{name}: the bad frame was published"
    assert "empty image" in diag.values["last_bad_frame"]
    assert diag.values["frame_errors"] == "0"
    assert live.node.alive()


def test_reset_puts_the_source_weights_back(live):
    rgb = make_image(96, 128, seed=9)
    try:
        # Continual: each frame starts from the previous frame's adapted weights.
        assert all(r.successful for r in live.set_parameters({"adaptation.mode": "continual", "adaptation.lr": 0.05}))
        resets_before = int(live.wait_for_diagnostics().values["resets"])
        assert live.reset().success
        first = send(live, raw_image(rgb, "rgb8"))
        second = send(live, raw_image(rgb, "rgb8"))
        assert np.abs(second["confidence"].array - first["confidence"].array).max() > 1e-4
        response = live.reset()
        assert response.success and "source weights" in response.message
        after = send(live, raw_image(rgb, "rgb8"))
        np.testing.assert_array_equal(after["labels"].array, first["labels"].array)
        np.testing.assert_array_equal(after["confidence"].array, first["confidence"].array)
        diag = live.wait_for_diagnostics(lambda d: int(d.values["resets"]) >= resets_before + 2)
        assert diag.values["adaptation_mode"] == "continual"
    finally:
        live.set_parameters({"adaptation.mode": "episodic", "adaptation.lr": 0.001})


def test_a_failed_adaptation_is_reported_and_the_prediction_still_published(live):
    try:
        # A huge learning rate: the second step's loss is NaN, so the core restores the weights.
        assert all(r.successful for r in live.set_parameters({"adaptation.steps": 2, "adaptation.lr": 1e30}))
        sent = time.monotonic()
        outs = send(live, raw_image(make_image(96, 128, seed=12), "rgb8"))
        check_maps(live, outs, len(CLASSES))
        diag = live.wait_for_diagnostics(lambda d: d.values["adaptation_status"].startswith("restored"), after=sent)
        assert int(diag.values["adaptation_failures"]) >= 1
        assert "non-finite" in diag.values["last_adaptation_failure"]
        assert diag.level == 1 and "adaptation failed" in diag.message
    finally:
        live.set_parameters({"adaptation.steps": 1, "adaptation.lr": 0.001})


def test_diagnostics_describe_the_node(live):
    send(live, raw_image(make_image(48, 64, seed=1), "rgb8"))
    diag = live.wait_for_diagnostics(lambda d: d.values["frames_processed"] != "0")
    v = diag.values
    assert v["input_topic"] == f"/{NAMESPACE}/image" and v["input_reliability"] == "reliable"
    assert v["device"] == "cpu" and v["weights"] == "random" and v["random_weights"] == "True"
    assert "RANDOM" in diag.message and diag.level == 1  # WARN while on random weights
    assert v["adaptation_method"] == "mlmp" and v["adaptation_steps"] == "1"
    assert float(v["last_loss"]) > 0 and float(v["model_ms"]) > 0
    assert 0 <= float(v["overhead_ms"]) < 1000
    assert float(v["rss_mb"]) > 100
    assert int(v["frames_received"]) >= int(v["frames_processed"]) + int(v["frames_dropped"]) > 0
