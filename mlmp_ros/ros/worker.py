"""The node's worker plumbing: the work queue between the executor and the worker thread,
and the counters the worker and the callbacks keep for /diagnostics.

Nothing here calls ROS: the queue holds messages as they came, the counters plain numbers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sensor_msgs.msg import CompressedImage, Image

STOP_TIMEOUT = 10.0  # seconds a stop waits for the worker (it stops between adaptation steps)


@dataclass
class Frame:
    msg: Image | CompressedImage
    received: float  # perf_counter when the callback got it


@dataclass
class ResetRequest:
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    message: str = ""


@dataclass
class Work:
    frame: Frame | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    resets: list[ResetRequest] = field(default_factory=list)
    calls: list[Callable[[], None]] = field(default_factory=list)


class Inbox:
    """What a worker takes between frames: calls, run-time changes and resets (the base of its queues).

    Resets are queued as items that :meth:`_request` maps to their :class:`ResetRequest`; a
    reset asked for after :meth:`close` is answered at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._changes: dict[str, Any] = {}
        self._resets: list[Any] = []
        self._calls: list[Callable[[], None]] = []
        self._closed = False

    @staticmethod
    def _request(item: Any) -> ResetRequest:
        return item

    def put_call(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the worker, between frames."""
        with self._cond:
            self._calls.append(call)
            self._cond.notify()

    def put_changes(self, changes: dict[str, Any]) -> None:
        with self._cond:
            self._changes.update(changes)
            self._cond.notify()

    def _put_reset(self, item: Any) -> ResetRequest:
        request = self._request(item)
        with self._cond:
            if self._closed:
                request.message = "the node is shutting down"
                request.done.set()
                return request
            self._resets.append(item)
            self._cond.notify()
        return request

    def _has_pending(self) -> bool:
        return bool(self._changes or self._resets or self._calls)

    def _take_pending(self) -> tuple[dict[str, Any], list[Any], list[Callable[[], None]]]:
        """The waiting changes, resets and calls (caller holds the lock); the inbox is left empty of them."""
        taken = (self._changes, self._resets, self._calls)
        self._changes, self._resets, self._calls = {}, [], []
        return taken

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for item in self._resets:
                request = self._request(item)
                request.message = "the node is shutting down"
                request.done.set()
            self._resets = []
            self._cond.notify_all()


class WorkQueue(Inbox):
    """The worker's inbox: one slot for the newest frame, plus run-time changes and resets.

    Changes and resets are handled before the waiting frame; several parameter changes
    that arrive while the worker is busy merge into one update.
    """

    def __init__(self) -> None:
        super().__init__()
        self._frame: Frame | None = None

    def put_frame(self, frame: Frame) -> bool:
        """Store ``frame``; True when it replaced a frame the worker had not taken yet."""
        with self._cond:
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify()
        return replaced

    def take_frame(self) -> Frame | None:
        """The waiting frame, if any (it is no longer waiting)."""
        with self._cond:
            frame, self._frame = self._frame, None
        return frame

    def put_reset(self) -> ResetRequest:
        return self._put_reset(ResetRequest())

    def get(self) -> Work | None:
        """The next work (blocking); None once closed."""
        with self._cond:
            while not (self._closed or self._frame or self._has_pending()):
                self._cond.wait()
            if self._closed:
                return None
            if self._has_pending():
                changes, resets, calls = self._take_pending()
                return Work(changes=changes, resets=resets, calls=calls)
            work = Work(frame=self._frame)
            self._frame = None
            return work


class Stats:
    """Counters for /diagnostics: totals since start and sums over the current period."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = self.processed = self.dropped = 0
        self.bad = self.errors = self.incompatible_qos = 0
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
        self.lost = 0  # messages the DDS reader reported lost (message-lost events)
        self.rate_skipped = 0  # frames replaced while input.max_rate_hz held the worker back
        self.class_change_dropped = 0  # results not published: a class change returned while they were computed
        self._new_period(time.monotonic())

    def _new_period(self, now: float) -> None:
        self.period_start = now
        self.p_received = self.p_processed = self.p_bad = self.p_errors = 0
        self.p_failures = self.p_incompatible = 0
        self.p_latency: list[float] = []
        self.p_stamp_age: list[float] = []
        self.p_model: list[float] = []
        self.p_overhead: list[float] = []

    def frame_in(self, replaced: bool) -> None:
        with self.lock:
            self.received += 1
            self.p_received += 1
            self.last_input_at = time.monotonic()
            if replaced:
                self.dropped += 1

    def dropped_waiting(self) -> None:
        with self.lock:
            self.dropped += 1

    def replaced_while_waiting(self) -> None:
        with self.lock:
            self.dropped += 1
            self.rate_skipped += 1

    def dropped_by_class_change(self) -> None:
        with self.lock:
            self.class_change_dropped += 1

    def messages_lost(self, count: int) -> None:
        with self.lock:
            self.lost += count

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
            self.bad += 1
            self.p_bad += 1
            self.last_bad = reason
            self.last_bad_limit = limit

    def frame_error(self, reason: str) -> None:
        with self.lock:
            self.errors += 1
            self.p_errors += 1
            self.last_error = reason

    def frame_done(self, *, latency: float, stamp_age: float | None, model: float, overhead: dict[str, float],
                   steps: int, loss: float | None, status: str, took: float) -> None:
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
            self.steps = steps
            self.last_loss = loss
            self.last_status = status
            if status.startswith("restored"):
                self.p_failures += 1
            self.last_frame_at = time.monotonic()

    def qos_incompatible(self, policy: str) -> None:
        with self.lock:
            self.incompatible_qos += 1
            self.last_qos_policy = policy
            self.p_incompatible += 1

    def take_period(self) -> dict[str, Any]:
        """A copy of everything, then a new period."""
        with self.lock:
            now = time.monotonic()
            snap = dict(vars(self))
            snap.pop("lock")
            snap["elapsed"] = max(now - self.period_start, 1e-9)
            snap["now"] = now
            self._new_period(now)
        return snap
