"""A node on image/compressed with a forced-reliable input: codecs, a corrupt jpeg, QoS mismatch, shutdown."""

from __future__ import annotations

import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage

from .ros_helpers import CLASSES, best_effort_camera, make_image, node_session

NAMESPACE = "mlmp_test_compressed"
CAMERA = "/mlmp_test_camera/image_raw"
TIMEOUT = 90.0


@pytest.fixture(scope="module")
def live():
    params = {"input.compressed": True, "input.reliability": "reliable", "adaptation.steps": 1,
              "diagnostics.period": 0.5}
    # As image_transport: remapping ``image`` moves ``image/compressed`` along with it.
    with node_session(NAMESPACE, params, remaps={"image": CAMERA}, compressed=True,
                      image_topic=CAMERA + "/compressed") as session:
        yield session


def compressed(rgb: np.ndarray, ext: str, fmt: str) -> CompressedImage:
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format=fmt, data=data.tobytes())
    msg.header.frame_id = "front_camera"
    return msg


_stamps = iter(range(1_600_000_000 * 10**9, 1_700_000_000 * 10**9, 10**6))


def send(live, msg: CompressedImage) -> dict:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(next(_stamps), 10**9)
    stamp = live.publish(msg)
    return {kind: live.wait_for_output(stamp, TIMEOUT, kind) for kind in ("labels", "confidence")}


@pytest.mark.parametrize("ext, fmt, size", [(".jpg", "jpeg", (480, 640)), (".png", "png", (720, 1280)),
                                            (".jpg", "bgr8; jpeg compressed bgr8", (251, 333))])
def test_compressed_frames_are_decoded_and_segmented(live, ext, fmt, size):
    height, width = size
    outs = send(live, compressed(make_image(height, width, seed=height), ext, fmt))
    labels, conf = outs["labels"], outs["confidence"]
    for out in (labels, conf):
        assert (out.width, out.height, out.frame_id) == (width, height, "front_camera")
    assert labels.encoding == "mono8" and int(labels.array.max()) < len(CLASSES)
    assert conf.encoding == "32FC1" and conf.array.min() >= 0.0 and conf.array.max() <= 1.0


def test_png_input_segments_like_the_pixels_it_holds(live):
    rgb = make_image(120, 160, seed=21)
    a = send(live, compressed(rgb, ".png", "png"))
    b = send(live, compressed(rgb, ".png", "png"))
    np.testing.assert_array_equal(a["labels"].array, b["labels"].array)
    np.testing.assert_array_equal(a["confidence"].array, b["confidence"].array)
    other = send(live, compressed(np.ascontiguousarray(rgb[::-1]), ".png", "png"))
    assert not np.array_equal(other["confidence"].array, a["confidence"].array)


def test_a_corrupt_jpeg_is_skipped_and_the_next_frame_served(live):
    count = int(live.wait_for_diagnostics().values["bad_frames"])
    good = compressed(make_image(100, 100, seed=1), ".jpg", "jpeg")
    corrupt = CompressedImage(format="jpeg", data=bytes(good.data)[:20] + b"\x00garbage" * 50)
    corrupt.header.stamp.sec = 5
    sent = time.monotonic()
    bad_stamp = live.publish(corrupt)
    diag = live.wait_for_diagnostics(lambda d: int(d.values["bad_frames"]) > count, timeout=10.0, after=sent)
    assert int(diag.values["bad_frames"]) == count + 1
    assert "cannot decode" in diag.values["last_bad_frame"] and "bad frames" in diag.message
    outs = send(live, good)
    assert outs["labels"].width == 100
    assert live.output(bad_stamp) is None


def huge_png(width: int, height: int, rows_per_block: int = 100) -> bytes:
    """A valid grey png of width x height zeros, built fast: one compressed block of rows, repeated.

    After a full flush deflate forgets what came before, so every block of identical rows
    compresses to identical bytes; the zlib trailer's Adler-32 is computed over all rows.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    assert height % rows_per_block == 0
    block = b"\x00" * ((width + 1) * rows_per_block)  # filter byte + grey pixels, per row
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed_block = raw.compress(block) + raw.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(height // rows_per_block):
        checksum = zlib.adler32(block, checksum)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)  # an empty final block
    body = b"\x78\xda" + compressed_block * (height // rows_per_block) + end + struct.pack(">I", checksum)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_a_small_png_of_a_huge_image_is_refused_before_decoding(live):
    data = huge_png(16000, 12000)  # 192 Mpx; it would have asked for 12 GB
    assert len(data) < 400_000
    count = int(live.wait_for_diagnostics().values["bad_frames"])
    msg = CompressedImage(format="png", data=data)
    msg.header.stamp.sec = 6
    sent = time.monotonic()
    bad_stamp = live.publish(msg)
    diag = live.wait_for_diagnostics(lambda d: int(d.values["bad_frames"]) > count, timeout=20.0, after=sent)
    reason = diag.values["last_bad_frame"]
    assert "16000x12000" in reason and "input.max_pixels" in reason and "not decoded" in reason, reason
    outs = send(live, compressed(make_image(100, 120, seed=3), ".png", "png"))
    assert outs["labels"].width == 120
    assert live.output(bad_stamp) is None


def test_a_best_effort_camera_against_a_reliable_input_is_reported(live):
    """input.reliability: reliable cannot hear a best-effort camera: the node must say so."""
    created = time.monotonic()
    camera = best_effort_camera(live, CompressedImage)
    try:
        diag = live.wait_for_diagnostics(lambda d: int(d.values["incompatible_qos_events"]) > 0, timeout=20.0,
                                         after=created)
        assert diag.values["last_incompatible_qos_policy"] == "RELIABILITY"
        assert diag.values["input_reliability"] == "reliable"
        assert diag.level >= 1 and "input.reliability" in diag.message  # the setting to change, named
        assert diag.values["input_topic"] == CAMERA + "/compressed"
    finally:
        live.ros.destroy_publisher(camera)


def test_the_node_stops_cleanly_on_sigint():
    # Its own node: stopping the module's shared one would break every test run after this one.
    params = {"input.compressed": True, "input.reliability": "reliable", "adaptation.steps": 1}
    with node_session(NAMESPACE + "_stop", params, compressed=True) as session:
        frame = make_image(120, 160, seed=21)
        assert session.play([(1_800_000_000 * 10**9, frame)], paced=True, timeout=TIMEOUT).processed == 1
        assert session.node.alive()
        code = session.node.stop()
        assert code == 0, session.node.log_tail()
        assert "Traceback" not in session.node.log()
