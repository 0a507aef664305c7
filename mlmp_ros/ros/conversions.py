"""Messages <-> arrays: camera images in, label / confidence / colour images out.

Received data is viewed in place (``np.frombuffer`` on the message's buffer, row
padding given by ``step`` honoured); channel reordering uses OpenCV, which costs
0.2 ms on a 1280x720 frame where a NumPy channel-reversal copy costs 8 ms.  Outgoing
data is set with ``array.tobytes()``: 0.3 ms for 1280x720 rgb8, where a memoryview
costs 82 ms in rclpy.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ..image_data import PIXEL_LAYOUTS, image_pixels

try:  # full ROS 2 installs
    from vision_msgs.msg import LabelInfo, VisionClass

    HAVE_VISION_MSGS = True
except ImportError:  # pip ROS 2: std_msgs/String with JSON
    from std_msgs.msg import String

    HAVE_VISION_MSGS = False

_BIG_ENDIAN_HOST = sys.byteorder == "big"

# encoding -> OpenCV conversion to RGB (None: already RGB); channels and dtype from PIXEL_LAYOUTS
_TO_RGB: dict[str, int | None] = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "8UC1": cv2.COLOR_GRAY2RGB,
    "mono16": cv2.COLOR_GRAY2RGB,
    "16UC1": cv2.COLOR_GRAY2RGB,
}
# encoding -> (channels, dtype, OpenCV conversion to RGB or None)
RAW_ENCODINGS: dict[str, tuple[int, np.dtype, int | None]] = {
    enc: (*PIXEL_LAYOUTS[enc], code) for enc, code in _TO_RGB.items()
}

# Encodings of the arrays the node publishes (and the live session reads back).
OUTPUT_ENCODINGS: dict[str, tuple[int, np.dtype]] = {enc: PIXEL_LAYOUTS[enc] for enc in ("mono8", "mono16", "32FC1", "rgb8")}

COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
_PIL_LOCK = threading.Lock()  # compressed_size lifts PIL's global pixel limit for one header read


class BadFrame(ValueError):
    """A received image cannot be used; the message says why, ``limit`` which setting refused it (if one did)."""

    def __init__(self, message: str, limit: str = ""):
        super().__init__(message)
        self.limit = limit


try:
    from cv_bridge import CvBridge

    _BRIDGE: CvBridge | None = CvBridge()
except ImportError:
    _BRIDGE = None


# ---------------------------------------------------------------- in
def image_to_rgb(msg: Image) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from a camera image; raises :class:`BadFrame`.

    mono16 is scaled to 8 bit by the frame's maximum (a mono16 camera rarely fills
    the 16-bit range, so a fixed shift would give a black image).
    """
    encoding = msg.encoding
    if encoding not in RAW_ENCODINGS:
        return _bridge_to_rgb(msg)
    channels, dtype, code = RAW_ENCODINGS[encoding]
    pixels = image_pixels(msg, channels, dtype, BadFrame)
    if dtype == np.uint16:
        pixels = _scale_to_8bit(pixels)
    if code is None:
        return np.ascontiguousarray(pixels)  # no copy unless rows are padded
    return cv2.cvtColor(pixels, code)


def _scale_to_8bit(pixels: np.ndarray) -> np.ndarray:
    top = int(pixels.max())
    if top == 0:
        return np.zeros(pixels.shape, np.uint8)
    return ((pixels.astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8)


def _bridge_to_rgb(msg: Image) -> np.ndarray:
    if _BRIDGE is None:
        raise BadFrame(
            f"unsupported encoding '{msg.encoding}' (supported: {', '.join(RAW_ENCODINGS)}; "
            "install cv_bridge for others)"
        )
    if msg.height <= 0 or msg.width <= 0:
        raise BadFrame(f"empty image: {msg.width}x{msg.height}")
    try:
        rgb = _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except Exception as exc:  # noqa: BLE001 - cv_bridge raises several kinds
        raise BadFrame(f"cv_bridge cannot convert encoding '{msg.encoding}' to rgb8: {exc}") from None
    return np.ascontiguousarray(rgb)


def compressed_size(msg: CompressedImage) -> tuple[int, int] | None:
    """(height, width) from a jpeg / png header, without decoding the pixels; None if unreadable.

    A 200 KB png can hold a 16000x12000 image: its size must be known before decoding.
    """
    from PIL import Image as PILImage

    with _PIL_LOCK:
        limit, PILImage.MAX_IMAGE_PIXELS = PILImage.MAX_IMAGE_PIXELS, None  # the caller judges the size
        try:
            with PILImage.open(io.BytesIO(bytes(msg.data))) as img:
                width, height = img.size
        except Exception:  # noqa: BLE001 - PIL raises many kinds for bad data; decoding will say why
            return None
        finally:
            PILImage.MAX_IMAGE_PIXELS = limit
    return int(height), int(width)


def compressed_to_rgb(msg: CompressedImage, max_pixels: int | None = None) -> np.ndarray:
    """Decode a jpeg or png CompressedImage to (H, W, 3) uint8 RGB; raises :class:`BadFrame`.

    ``max_pixels``: refuse, from the header and before decoding, an image with more pixels.
    """
    fmt = msg.format.lower()
    if fmt and not any(f in fmt for f in COMPRESSED_FORMATS):
        raise BadFrame(f"unsupported compressed format '{msg.format}' (jpeg or png)")
    data = np.frombuffer(msg.data, np.uint8)
    if data.size == 0:
        raise BadFrame("compressed image holds no data")
    if max_pixels is not None:
        size = compressed_size(msg)
        if size is not None and size[0] * size[1] > max_pixels:
            raise BadFrame(
                f"the compressed image ({data.size} bytes) would decode to {size[1]}x{size[0]} = "
                f"{size[0] * size[1]} pixels, more than input.max_pixels {max_pixels}; not decoded",
                limit="input.max_pixels",
            )
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise BadFrame(f"cannot decode the compressed image ({data.size} bytes, format '{msg.format}')")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_to_array(msg: Image) -> np.ndarray:
    """An output image (mono8, mono16, 32FC1, rgb8) as a native-byte-order array (a copy)."""
    if msg.encoding not in OUTPUT_ENCODINGS:
        raise BadFrame(f"not an output encoding: '{msg.encoding}'")
    channels, dtype = OUTPUT_ENCODINGS[msg.encoding]
    return image_pixels(msg, channels, dtype, BadFrame).astype(dtype)


# --------------------------------------------------------------- out
def array_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image holding ``array`` (H, W) or (H, W, C) in host byte order."""
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    msg = Image(
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=int(_BIG_ENDIAN_HOST and array.itemsize > 1),
        step=w * (array.shape[2] if array.ndim == 3 else 1) * array.itemsize,
        data=array.tobytes(),
    )
    if header is not None:
        msg.header = header
    return msg


def labels_to_image(labels: np.ndarray, header: Header) -> Image:
    """mono8 for uint8 labels (at most 255 classes), mono16 above."""
    return array_to_image(labels, "mono8" if labels.dtype == np.uint8 else "mono16", header)


def confidence_to_image(confidence: np.ndarray, header: Header, encoding: str = "32FC1") -> Image:
    """32FC1 (the probability) or mono8 (round(255 p), what Nav2's semantic_segmentation_layer reads)."""
    if encoding == "mono8":
        scaled = np.floor(confidence.astype(np.float32, copy=False) * np.float32(255.0) + np.float32(0.5))
        return array_to_image(np.clip(scaled, 0, 255).astype(np.uint8), "mono8", header)
    return array_to_image(confidence.astype(np.float32, copy=False), "32FC1", header)


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 colours, distinct for neighbouring indices (bit-interleaved, as VOC's)."""
    idx = np.arange(n, dtype=np.int64)
    colours = np.zeros((n, 3), np.int64)
    rest = idx.copy()
    for bit in range(7, -1, -1):
        for ch in range(3):
            colours[:, ch] |= ((rest >> ch) & 1) << bit
        rest >>= 3
    return colours.astype(np.uint8)


def colorize(labels: np.ndarray, colours: np.ndarray, image: np.ndarray | None = None, blend: float = 0.0) -> np.ndarray:
    """(H, W, 3) uint8: the palette colour of each label, optionally blended with ``image``.

    ``blend`` is the input image's weight (0: palette only).
    """
    if labels.dtype == np.uint8:
        lut = np.zeros((256, 1, 3), np.uint8)
        lut[: min(256, len(colours)), 0] = colours[:256]
        out = cv2.LUT(cv2.cvtColor(labels, cv2.COLOR_GRAY2RGB), lut)
    else:
        out = np.take(colours, labels, axis=0, mode="clip")
    if image is not None and blend > 0:
        out = cv2.addWeighted(out, 1.0 - blend, image, blend, 0.0)
    return out


# ----------------------------------------------------------- label info
def label_info_message(names: Sequence[str], header: Header, synonyms: Sequence[Sequence[str]] | None = None):
    """The class map: vision_msgs/LabelInfo where installed, else std_msgs/String with JSON."""
    if HAVE_VISION_MSGS:
        return LabelInfo(
            header=header,
            class_map=[VisionClass(class_id=i, class_name=n) for i, n in enumerate(names)],
            threshold=0.0,
        )
    payload = {
        "class_map": {str(i): n for i, n in enumerate(names)},
        "threshold": 0.0,
        "frame_id": header.frame_id,
        "stamp": {"sec": header.stamp.sec, "nanosec": header.stamp.nanosec},
    }
    if synonyms is not None:
        payload["synonyms"] = {str(i): list(s) for i, s in enumerate(synonyms)}
    return String(data=json.dumps(payload))


def label_info_type() -> type:
    return LabelInfo if HAVE_VISION_MSGS else String


def parse_label_info(msg) -> dict[int, str]:
    """Class index -> name from either form of the label_info message."""
    if hasattr(msg, "class_map"):
        return {int(c.class_id): c.class_name for c in msg.class_map}
    data: Mapping = json.loads(msg.data)
    return {int(k): v for k, v in data["class_map"].items()}
