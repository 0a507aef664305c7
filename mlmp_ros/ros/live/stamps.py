"""Header stamps of messages, and of CDR-serialized messages without deserializing them."""

from __future__ import annotations

import struct
from typing import Any

from rclpy.time import Time


def stamp_of(header: Any) -> int:
    return Time.from_msg(header.stamp).nanoseconds


def set_stamp(header: Any, stamp_ns: int) -> None:
    header.stamp = Time(nanoseconds=int(stamp_ns)).to_msg()


def _cdr_order(data: bytes) -> str:
    if len(data) < 12 or data[0] != 0 or data[1] not in (0, 1):
        raise ValueError("not a CDR-serialized message (bad encapsulation header)")
    return "<" if data[1] == 1 else ">"


def cdr_stamp(data: bytes) -> int:
    """The header stamp of a serialized message that starts with std_msgs/Header."""
    sec, nanosec = struct.unpack_from(_cdr_order(data) + "iI", data, 4)
    return sec * 1_000_000_000 + nanosec


def cdr_with_stamp(data: bytes, stamp_ns: int) -> bytes:
    """A copy of a serialized message with its header stamp replaced."""
    out = bytearray(data)
    struct.pack_into(_cdr_order(data) + "iI", out, 4, *divmod(int(stamp_ns), 1_000_000_000))
    return bytes(out)
