"""What a live session received from the node (labels, confidence), written as an MCAP bag."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer

from ...constants import RECORDED_TOPICS
from .messages import typestore


def recorded(outputs: Mapping[str, Mapping[int, Any]]) -> dict[str, dict[int, bytes]]:
    """The serialized labels and confidence a live session kept (``LiveSession.outputs``), by bag topic."""
    return {
        topic: {stamp: out.serialized for stamp, out in outputs.get(kind, {}).items() if out.serialized is not None}
        for kind, topic in RECORDED_TOPICS.items()
    }


def write_recorded_images(path: str | os.PathLike[str], topics: Mapping[str, Mapping[int, bytes]]) -> int:
    """Serialized ``sensor_msgs/msg/Image`` messages as received, per topic and stamp, into an MCAP bag.

    Used for what the node published during a live session (labels, confidence).
    Returns the number of messages written.
    """
    store = typestore()
    written = 0
    with Writer(Path(path), version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, messages in topics.items():
            conn = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=store)
            for stamp, data in sorted(messages.items()):
                writer.write(conn, stamp, data)
                written += 1
    return written
