"""One camera's frame accounting and timings, for /diagnostics.

Every frame a camera sends ends in exactly one place::

    sent     = received + lost before the node          (lost: publication sequence gaps)
    received = processed + dropped + waiting             (waiting: in the node's slot or being worked on)
    dropped  = replaced + rate_cap + class_change + disabled + inactive + bad + error

``replaced``: a newer frame took its place while the worker was busy; ``rate_cap``: replaced
while ``input.max_rate_hz`` held the worker back; ``class_change``: computed under a class list
that was replaced before it could be published; ``disabled``: waiting when ``~/enable false``
came; ``inactive``: waiting when the node deactivated or stopped; ``bad``: refused by the
checks or the conversion; ``error``: the model failed on it.

Counters live as long as the node: a lifecycle deactivate / activate does not restart them.
Nothing here calls ROS.
"""

from __future__ import annotations

import threading
import time
from typing import Any

DROP_REASONS = ("replaced", "rate_cap", "class_change", "disabled", "inactive", "bad", "error")


class Counters:
    """Totals since the node started and sums over the current diagnostics period."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = self.processed = 0
        self.drops = dict.fromkeys(DROP_REASONS, 0)
        self.lost = 0  # frames the camera sent that never reached the node (sequence gaps, or DDS events)
        self.lost_events = 0  # samples the DDS reader reported lost (message-lost events)
        self.incompatible_qos = 0
        self.last_bad = self.last_error = ""
        self.last_bad_limit = ""  # the setting whose limit refused the last bad frame, if one did
        self.last_qos_policy = ""  # the QoS policy of the last incompatible-QoS event
        self.steps = 0
        self.last_loss: float | None = None
        self.last_status = ""
        self.last_frame_at: float | None = None
        self.started_at = time.monotonic()
        self.last_input_at: float | None = None
        self.busy_since: float | None = None  # monotonic: the worker took the frame it works on
        self.expected: float | None = None  # seconds per frame under the current regime (see busy)
        self.expected_by_regime: dict[str, float] = {}  # moving average of finished frames, per regime
        self.regime = ""
        self._new_period(time.monotonic())

    def _new_period(self, now: float) -> None:
        self.period_start = now
        self.p_received = self.p_processed = self.p_bad = self.p_errors = 0
        self.p_failures = self.p_incompatible = 0
        self.p_latency: list[float] = []
        self.p_stamp_age: list[float] = []
        self.p_model: list[float] = []
        self.p_overhead: list[dict[str, float]] = []

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    # --------------------------------------------------------------- input
    def frame_in(self, replaced: str | None) -> None:
        """A frame reached the node; ``replaced``: the drop reason of the frame it replaced, if any."""
        with self.lock:
            self.received += 1
            self.p_received += 1
            self.last_input_at = time.monotonic()
            if replaced:
                self.drops[replaced] += 1

    def drop(self, reason: str) -> None:
        with self.lock:
            self.drops[reason] += 1

    def messages_lost(self, count: int, *, event: bool = False) -> None:
        """``count`` frames never reached the node: sequence gaps, or (``event``) the reader's lost-sample
        events, which count towards ``lost`` only where sequence numbers are not available."""
        with self.lock:
            if event:
                self.lost_events += count
            else:
                self.lost += count

    def qos_incompatible(self, policy: str) -> None:
        with self.lock:
            self.incompatible_qos += 1
            self.last_qos_policy = policy
            self.p_incompatible += 1

    # -------------------------------------------------------------- worker
    def busy(self, since: float | None, regime: str | None = None) -> None:
        """The worker took a frame at ``since`` (None: it is idle again).

        ``regime``: what decides a frame's time (schedule, mode, steps); the stall watchdog
        compares the frame in progress with the frames of the same regime only, so a switch
        (async to sync, off to continual) is not taken for a stall.
        """
        with self.lock:
            self.busy_since = since
            if regime is not None:
                self.regime = regime
                self.expected = self.expected_by_regime.get(regime)

    def bad_frame(self, reason: str, limit: str = "") -> None:
        with self.lock:
            self.drops["bad"] += 1
            self.p_bad += 1
            self.last_bad = reason
            self.last_bad_limit = limit

    def frame_error(self, reason: str) -> None:
        with self.lock:
            self.drops["error"] += 1
            self.p_errors += 1
            self.last_error = reason

    def frame_done(self, *, latency: float, stamp_age: float | None, model: float, overhead: dict[str, float],
                   took: float, adaptation: tuple[int, float | None, str]) -> None:
        """A frame's outputs were published; ``adaptation``: (steps, last loss, status) of its frame."""
        with self.lock:
            self.processed += 1
            self.p_processed += 1
            self.p_latency.append(latency)
            if stamp_age is not None:
                self.p_stamp_age.append(stamp_age)
            self.expected = took if self.expected is None else 0.8 * self.expected + 0.2 * took
            self.expected_by_regime[self.regime] = self.expected
            self.p_model.append(model)
            self.p_overhead.append(overhead)
            self.steps, self.last_loss, self.last_status = adaptation
            if self.last_status.startswith("restored"):
                self.p_failures += 1
            self.last_frame_at = time.monotonic()

    def take_period(self) -> dict[str, Any]:
        """A copy of everything, then a new period."""
        with self.lock:
            now = time.monotonic()
            snap = dict(vars(self))
            snap.pop("lock")
            snap["drops"] = dict(self.drops)
            snap["dropped"] = self.dropped
            snap["elapsed"] = max(now - self.period_start, 1e-9)
            snap["now"] = now
            self._new_period(now)
        return snap


class SequenceGaps:
    """Frames lost before the node, from the publishers' sequence numbers (``MessageInfo``): per
    publisher, every number skipped after the first one seen is a frame sent and never received."""

    def __init__(self) -> None:
        self._last: dict[Any, int] = {}
        self.available = False  # whether the middleware gave sequence numbers at all

    def restart(self) -> None:
        """The node subscribed anew (enable, activate, a QoS change): frames sent while it did not
        listen are not lost frames, so every publisher's count starts again at its next frame."""
        self._last.clear()

    def gap(self, info: dict[str, Any] | None) -> int:
        """How many frames of this message's publisher were skipped before it (0 when unknown)."""
        seq = (info or {}).get("publication_sequence_number")
        if not seq:  # None, or 0: the RMW does not fill it
            return 0
        self.available = True
        gid = (info or {}).get("publisher_gid")
        key = _gid_key(gid)
        last = self._last.get(key)
        self._last[key] = max(seq, last or 0)
        if last is None or seq <= last:
            return 0  # the publisher's first frame here, or one out of order (counted already)
        return seq - last - 1


def _gid_key(gid: Any) -> Any:
    if isinstance(gid, dict):
        data = gid.get("data", gid)
        return bytes(data) if isinstance(data, (list, tuple, bytes, bytearray)) else repr(data)
    return None if gid is None else repr(gid)
