"""The pixels of a ``sensor_msgs/Image`` as a NumPy array, without ROS imports.

Works on any object with the message's fields (an rclpy message, a rosbags one), so
the node's conversions and the bench's bag reader share one reading of ``step`` (row
padding), ``is_bigendian`` and a too-short ``data``.
"""

from __future__ import annotations

import numpy as np

# sensor_msgs/Image encoding -> (channels, numpy dtype): the one table of pixel layouts.  The node's
# input and output tables and the bag reader pick the encodings they accept from it.
PIXEL_LAYOUTS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "8UC1": (1, np.dtype(np.uint8)),
    "mono16": (1, np.dtype(np.uint16)),
    "16UC1": (1, np.dtype(np.uint16)),
    "32FC1": (1, np.dtype(np.float32)),
}


def image_pixels(msg, channels: int, dtype, error: type[Exception] = ValueError) -> np.ndarray:
    """(H, W) or (H, W, C) pixels of ``msg``: a view of its buffer, in the message's byte order.

    Raises ``error`` for an empty image, a ``step`` shorter than a row, or ``data``
    shorter than ``step x height``.
    """
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise error(f"empty image: {w}x{h}")
    dtype = np.dtype(dtype)
    row = w * channels * dtype.itemsize
    if step < row:
        raise error(f"step {step} is smaller than width {w} x {channels * dtype.itemsize} bytes per pixel")
    data = msg.data if isinstance(msg.data, np.ndarray) else np.frombuffer(msg.data, np.uint8)
    if data.size < step * h:
        raise error(
            f"data holds {data.size} bytes, fewer than step {step} x height {h} = {step * h}, "
            f"which a {w}x{h} {msg.encoding} image needs"
        )
    rows = data[: step * h].reshape(h, step)[:, :row]
    if dtype.itemsize > 1:
        rows = rows.view(dtype.newbyteorder(">" if msg.is_bigendian else "<"))
    return rows.reshape((h, w, channels) if channels > 1 else (h, w))
