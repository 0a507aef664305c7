"""Message <-> array conversions, parameter mapping and the worker's inbox, in one process."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from mlmp_ros.core import Config, ConfigError
from mlmp_ros.core.config import ros_parameters
from mlmp_ros.core.schedule import SCHEDULE_SETTINGS
from mlmp_ros.core.segmenter import RUNTIME_SETTINGS
from mlmp_ros.robot import ROBOT_ADAPTATION, SAMPLE_SETTINGS
from mlmp_ros.ros import conversions as conv
from mlmp_ros.ros.conversions import BadFrame, compressed_size, compressed_to_rgb, confidence_to_image, image_to_array
from mlmp_ros.ros.live import (
    cdr_stamp,
    cdr_with_stamp,
    format_parameter,
    parameter_value,
    python_value,
)
from mlmp_ros.ros.params import (
    DEV_PARAMETERS,
    NODE_CORE_DEFAULTS,
    NODE_DEFAULTS,
    NodeSettings,
    core_config,
    parameter_specs,
)

from .ros_helpers import PARAMS_FILE, make_image


def raw_image(pixels: np.ndarray, encoding: str, *, pad: int = 0, big_endian: bool = False) -> Image:
    """An Image built by hand (independently of conversions.py), rows padded by ``pad`` bytes."""
    h, w = pixels.shape[:2]
    dtype = pixels.dtype.newbyteorder(">" if big_endian else "<") if pixels.itemsize > 1 else pixels.dtype
    rows = pixels.astype(dtype).reshape(h, -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, is_bigendian=int(big_endian), step=rows.shape[1],
                 data=rows.tobytes())


RGB = make_image(37, 53, seed=3)
GRAY = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY)


@pytest.mark.parametrize("pad", [0, 7])
@pytest.mark.parametrize(
    "encoding, pixels, expected",
    [
        ("rgb8", RGB, RGB),
        ("bgr8", RGB[..., ::-1], RGB),
        ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)]), RGB),
        ("bgra8", np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)]), RGB),
        ("mono8", GRAY, np.dstack([GRAY] * 3)),
        ("8UC1", GRAY, np.dstack([GRAY] * 3)),
    ],
)
def test_raw_encodings_become_rgb(encoding, pixels, expected, pad):
    rgb = conv.image_to_rgb(raw_image(np.ascontiguousarray(pixels), encoding, pad=pad))
    assert rgb.dtype == np.uint8 and rgb.shape == RGB.shape and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, expected)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_mono16_is_scaled_by_the_frame_maximum(encoding, big_endian):
    # A 12-bit camera: values up to 4095; full scale maps to 255, half to ~128.
    pixels = (GRAY.astype(np.uint16) * 4095 // 255).astype(np.uint16)
    pixels[0, 0] = 4095
    rgb = conv.image_to_rgb(raw_image(pixels, encoding, pad=3, big_endian=big_endian))
    expected = np.round(pixels.astype(np.float64) * 255 / 4095).astype(np.uint8)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    np.testing.assert_array_equal(rgb[..., 1], rgb[..., 2])
    assert rgb[0, 0, 0] == 255


def test_mono16_of_a_mono8_image_round_trips_exactly():
    gray = GRAY.copy()
    gray[0, 0] = 255
    rgb = conv.image_to_rgb(raw_image(gray.astype(np.uint16) * 257, "mono16", big_endian=True))
    np.testing.assert_array_equal(rgb, np.dstack([gray] * 3))


def test_black_mono16_frame_is_black():
    rgb = conv.image_to_rgb(raw_image(np.zeros((4, 5), np.uint16), "mono16"))
    assert rgb.shape == (4, 5, 3) and not rgb.any()


def test_rgb8_without_padding_is_not_copied():
    msg = raw_image(RGB, "rgb8")
    rgb = conv.image_to_rgb(msg)
    assert np.shares_memory(rgb, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"width": 0, "height": 0, "step": 0, "data": b""}, "empty image"),
        ({"step": 53 * 3 - 1}, "step"),
        ({"data": bytes(53 * 3 * 37 - 1)}, "fewer than step"),
        ({"encoding": "not_an_encoding"}, "not_an_encoding"),
    ],
)
def test_malformed_images_are_refused_with_a_reason(change, reason):
    msg = raw_image(RGB, "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(conv.BadFrame, match=reason):
        conv.image_to_rgb(msg)


@pytest.mark.parametrize("ext, fmt", [(".png", "png"), (".jpg", "jpeg"), (".png", "rgb8; png compressed bgr8")])
def test_compressed_images_decode_to_rgb(ext, fmt):
    ok, data = cv2.imencode(ext, cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert ok
    rgb = conv.compressed_to_rgb(CompressedImage(format=fmt, data=data.tobytes()))
    assert rgb.shape == RGB.shape and rgb.dtype == np.uint8
    if ext == ".png":
        np.testing.assert_array_equal(rgb, RGB)
    else:
        assert np.abs(rgb.astype(int) - RGB).mean() < 12


@pytest.mark.parametrize(
    "msg, reason",
    [
        (CompressedImage(format="jpeg", data=b""), "no data"),
        (CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 this is not a jpeg" * 10), "cannot decode"),
        (CompressedImage(format="tiff", data=b"II*\x00"), "unsupported compressed format"),
    ],
)
def test_bad_compressed_images_are_refused(msg, reason):
    with pytest.raises(conv.BadFrame, match=reason):
        conv.compressed_to_rgb(msg)


@pytest.mark.parametrize(
    "array, encoding",
    [
        (np.arange(12, dtype=np.uint8).reshape(3, 4), "mono8"),
        (np.arange(12, dtype=np.uint16).reshape(3, 4) * 999, "mono16"),
        (np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), "32FC1"),
        (RGB, "rgb8"),
    ],
)
def test_output_images_round_trip_through_serialization(array, encoding):
    msg = conv.array_to_image(array, encoding)
    assert (msg.height, msg.width, msg.encoding) == (array.shape[0], array.shape[1], encoding)
    back = conv.image_to_array(deserialize_message(serialize_message(msg), Image))
    np.testing.assert_array_equal(back, array)


def test_labels_pick_mono16_above_255_classes():
    from std_msgs.msg import Header

    assert conv.labels_to_image(np.zeros((2, 2), np.uint8), Header()).encoding == "mono8"
    assert conv.labels_to_image(np.full((2, 2), 300, np.uint16), Header()).encoding == "mono16"


def test_palette_and_blend():
    colours = conv.palette(300)
    assert len({tuple(c) for c in colours[:256]}) == 256
    labels = np.array([[0, 1], [2, 3]], np.uint8)
    np.testing.assert_array_equal(conv.colorize(labels, colours), colours[labels])
    wide = labels.astype(np.uint16) + 260
    np.testing.assert_array_equal(conv.colorize(wide, colours), colours[wide])
    image = np.full((2, 2, 3), 200, np.uint8)
    np.testing.assert_array_equal(conv.colorize(labels, colours, image, blend=1.0), image)
    half = conv.colorize(labels, colours, image, blend=0.5).astype(int)
    assert np.abs(half - (colours[labels].astype(int) + 200) / 2).max() <= 1


def test_label_info_round_trip():
    from std_msgs.msg import Header

    msg = conv.label_info_message(["person", "cup"], Header(frame_id="cam"), [("person",), ("cup", "mug")])
    assert conv.parse_label_info(msg) == {0: "person", 1: "cup"}


def test_cdr_stamp_patch_matches_a_real_message():
    msg = Image(height=2, width=3, encoding="rgb8", step=9, data=bytes(18))
    msg.header.stamp.sec, msg.header.stamp.nanosec = 17, 42
    data = serialize_message(msg)
    assert cdr_stamp(data) == 17 * 10**9 + 42
    patched = cdr_with_stamp(data, 5 * 10**9 + 7)
    back = deserialize_message(patched, Image)
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (5, 7)
    assert bytes(back.data) == bytes(msg.data) and back.encoding == "rgb8"
    with pytest.raises(ValueError, match="CDR"):
        cdr_stamp(b"\x07" * 20)


def test_parameter_values_for_the_command_line_and_the_service():
    assert format_parameter("-1,-2") == '"-1,-2"'
    assert format_parameter(["cup, mug", "dog"]) == '["cup, mug", "dog"]'
    assert format_parameter(1.0) == "1.0" and format_parameter(1e-3) == "0.001" and format_parameter(True) == "true"
    for value in (True, 3, 0.5, "x", ["a"], [1, 2], [0.9, 0.999], []):
        assert python_value(parameter_value(value)) == value


# ----------------------------------------------------------------- params
def test_every_core_setting_is_a_parameter_with_a_description():
    specs = {s.name: s for s in parameter_specs()}
    assert set(specs) == set(Config().flat()) | set(NODE_DEFAULTS)
    assert all(s.descriptor.description for s in specs.values())
    writable = {n for n, s in specs.items() if not s.descriptor.read_only}
    extra = {n for n in NODE_DEFAULTS if n.startswith("output.")} | {"input.max_rate_hz", *DEV_PARAMETERS}
    extra |= set(SCHEDULE_SETTINGS)  # schedules, budgets and safeguards (core/schedule.py)
    assert set(RUNTIME_SETTINGS) <= writable <= set(RUNTIME_SETTINGS) | extra


def test_parameter_defaults_build_the_core_defaults():
    values = {s.name: s.default for s in parameter_specs()}
    assert core_config(values).flat() == Config().replace(**NODE_CORE_DEFAULTS).flat()
    # the node runs the hardware's best precision and the robot settings (mlmp_ros/robot.py)
    assert NODE_CORE_DEFAULTS == {"precision": "auto", **SAMPLE_SETTINGS, **ROBOT_ADAPTATION}
    assert NodeSettings.from_values(values) == NodeSettings()


def test_the_parameter_file_matches_the_declared_types():
    """A value of another type in config/segment.yaml would stop the node at start-up."""
    data = ros_parameters(yaml.safe_load(PARAMS_FILE.read_text()))
    flat = {}

    def walk(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(data)
    specs = {s.name: s for s in parameter_specs()}
    assert set(flat) == set(specs) - set(DEV_PARAMETERS)  # every parameter but the test-only ones
    for name in NODE_DEFAULTS:  # the node's own defaults are the file's values
        assert name in DEV_PARAMETERS or flat[name] == NODE_DEFAULTS[name], name
    for name, value in flat.items():
        default = specs[name].default
        if value == [] and not isinstance(default, list):  # an empty list: declared by its type (cameras)
            assert default.name.endswith("_ARRAY"), name
            continue
        assert type(value) is type(default), name
        if isinstance(value, list):
            assert {type(v) for v in value} == {type(default[0])}, name
    core_config(flat)  # and they are valid


def test_node_settings_are_validated():
    with pytest.raises(ConfigError) as err:
        NodeSettings.from_values({"input.reliability": "fast", "output.blend": 1.5, "diagnostics.period": 0.0})
    text = str(err.value)
    assert "input.reliability" in text and "output.blend" in text and "diagnostics.period" in text


def test_mono8_confidence_is_round_255_p():
    conf = np.array([[0.0, 1.0, 0.5, 0.499], [1 / 255, 0.998, 0.002, 0.0019]], np.float32)
    msg = confidence_to_image(conf, Header(), "mono8")
    assert msg.encoding == "mono8" and msg.step == msg.width == 4
    expected = np.floor(conf.astype(np.float64) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(image_to_array(msg), expected)
    assert confidence_to_image(conf, Header()).encoding == "32FC1"


def test_a_compressed_image_size_is_read_from_its_header():
    for ext in (".png", ".jpg"):
        ok, data = cv2.imencode(ext, make_image(30, 50))
        assert ok
        msg = CompressedImage(format=ext[1:], data=data.tobytes())
        assert compressed_size(msg) == (30, 50)
        with pytest.raises(BadFrame, match="max_pixels"):
            compressed_to_rgb(msg, max_pixels=30 * 50 - 1)
        assert compressed_to_rgb(msg, max_pixels=30 * 50).shape == (30, 50, 3)
    assert compressed_size(CompressedImage(format="jpeg", data=b"not an image")) is None
    # Beyond PIL's own decompression-bomb limit the size is still read (and PIL's limit is kept).
    from PIL import Image as PILImage

    from .test_node_compressed import huge_png

    limit = PILImage.MAX_IMAGE_PIXELS
    assert compressed_size(CompressedImage(format="png", data=huge_png(20000, 10000))) == (10000, 20000)
    assert limit == PILImage.MAX_IMAGE_PIXELS
