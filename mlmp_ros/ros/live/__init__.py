"""A live session with the segmentation node: play frames in over DDS, record what comes out.

The session can start the node itself (:class:`NodeProcess`, a child process of
``mlmp-segment``), waits until it is ready (its transient-local ``label_info``
arrived), publishes frames as a camera would and records every output with its
receive time, matched to the input by header stamp::

    with LiveSession(NodeProcess(params_file, {"model": "mlmp-tiny-test"})) as live:
        result = live.play(sample_frames(), rate_hz=10)
    print(result.summary())

Frames are ``(stamp_ns, image)`` pairs where image is an (H, W, 3) uint8 RGB array, the
serialized CDR bytes of a sensor_msgs/Image (as read from a bag), or an Image /
CompressedImage message.  It measures rates, latency, drops and the node's memory; it
holds no benchmark or metric logic.

The package is split by concern: :mod:`.process` (the node as a child process),
:mod:`.session` (the DDS camera and listener), :mod:`.records` (what a play records
and its summary), :mod:`.stamps` (header stamps, also of serialized messages) and
:mod:`.parameters` (values for the node's parameter services).  The public names are
all importable from ``mlmp_ros.ros.live``.
"""

from __future__ import annotations

from .parameters import parameter_value, python_value
from .process import NodeDiedError, NodeProcess, format_parameter, node_command
from .records import Diagnostics, FrameRecord, Output, PlayResult
from .session import LiveSession, SessionTimeout
from .stamps import cdr_stamp, cdr_with_stamp, stamp_of

__all__ = [
    "Diagnostics",
    "FrameRecord",
    "LiveSession",
    "NodeDiedError",
    "NodeProcess",
    "Output",
    "PlayResult",
    "SessionTimeout",
    "cdr_stamp",
    "cdr_with_stamp",
    "format_parameter",
    "node_command",
    "parameter_value",
    "python_value",
    "stamp_of",
]
