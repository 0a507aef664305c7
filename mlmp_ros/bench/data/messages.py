"""ROS 2 image messages as arrays and back (pure Python, ``rosbags``; no ROS install)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_typestore

from ...image_data import PIXEL_LAYOUTS, image_pixels

FRAME_ID = "camera"
IMAGE_TYPE = "sensor_msgs/msg/Image"
STRING_TYPE = "std_msgs/msg/String"

# encoding -> (channels, numpy dtype): the encodings bench bags may hold
_ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    enc: PIXEL_LAYOUTS[enc] for enc in ("rgb8", "bgr8", "mono8", "8UC1", "mono16", "16UC1")
}


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Kilted message definitions (the distribution the node targets)."""
    return get_typestore(Stores.ROS2_KILTED)


def _stamp(stamp_ns: int):
    time_type = typestore().types["builtin_interfaces/msg/Time"]
    return time_type(sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9))


def image_to_msg(image: np.ndarray, stamp_ns: int, frame_id: str = FRAME_ID, encoding: str | None = None):
    """A rosbags ``sensor_msgs/msg/Image`` from an array.

    (H, W, 3) uint8 -> ``rgb8``; (H, W) uint8 -> ``mono8``; (H, W) uint16 -> ``mono16``
    (little endian).  ``encoding`` may name ``bgr8`` for BGR data, or force another
    one of the same layout.
    """
    array = np.asarray(image)
    if encoding is None:
        if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
            encoding = "rgb8"
        elif array.ndim == 2 and array.dtype == np.uint8:
            encoding = "mono8"
        elif array.ndim == 2 and array.dtype == np.uint16:
            encoding = "mono16"
        else:
            raise ValueError(
                f"cannot pick an image encoding for shape {array.shape} and dtype {array.dtype}; "
                "expected (H, W, 3) uint8, (H, W) uint8 or (H, W) uint16"
            )
    if encoding not in _ENCODINGS:
        raise ValueError(f"unsupported encoding '{encoding}'; supported: {', '.join(_ENCODINGS)}")
    channels, dtype = _ENCODINGS[encoding]
    expected_ndim = 3 if channels == 3 else 2
    if array.ndim != expected_ndim or (channels == 3 and array.shape[2] != 3) or array.dtype != dtype:
        raise ValueError(f"a {encoding} image must be {dtype} of {expected_ndim} dims, got {array.dtype} {array.shape}")
    height, width = array.shape[:2]
    data = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).view(np.uint8).reshape(-1)
    types = typestore().types
    header = types["std_msgs/msg/Header"](stamp=_stamp(stamp_ns), frame_id=frame_id)
    return types[IMAGE_TYPE](
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels * dtype.itemsize,
        data=data,
    )


def msg_to_image(msg: Any) -> np.ndarray:
    """The pixels of a ``sensor_msgs/msg/Image`` as a fresh array (colour returned RGB).

    Handles row padding (``step`` larger than a row) and big-endian 16-bit data; an empty
    or truncated image raises ValueError.
    """
    encoding = msg.encoding
    if encoding not in _ENCODINGS:
        raise ValueError(f"unsupported image encoding '{encoding}'; supported: {', '.join(_ENCODINGS)}")
    channels, dtype = _ENCODINGS[encoding]
    pixels = image_pixels(msg, channels, dtype).astype(dtype)  # astype copies to native order
    if encoding == "bgr8":
        pixels = np.ascontiguousarray(pixels[..., ::-1])
    return pixels


def stamp_ns(msg: Any) -> int:
    """The header stamp of a rosbags message, in nanoseconds."""
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)
