"""The worker's inbox: one slot per camera for its newest frame, plus run-time changes, resets and
calls, which the worker takes before any frame.

A frame that arrives while its camera's slot is full replaces the waiting one, and
:meth:`Inbox.put_frame` says why the old one is gone (``replaced``, or ``rate_cap`` while
``input.max_rate_hz`` holds the worker back), so every replaced frame is counted.  Cameras are
served round robin: after a camera is served, every other camera with a waiting frame is served
before it again, so no camera starves however fast the others publish.  ``get(max_frames)`` hands
out up to that many cameras' frames at once (the worker batches them when it can).  With one
camera (the node's ``cameras: []``) it is the single newest-frame slot.

Nothing here calls ROS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

STOP_TIMEOUT = 10.0  # seconds a stop waits for the worker (it stops between adaptation steps)


@dataclass
class ReceivedFrame:
    """A camera message as the node received it, from its callback until the worker accounts for it."""

    msg: Any  # sensor_msgs Image or CompressedImage, as it came
    received: float  # perf_counter when the callback got it
    finished: bool = False  # the worker accounted for it (published, or counted under a drop reason)


@dataclass
class ResetRequest:
    camera: str | None = None  # None: every camera
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    message: str = ""

    def answer(self, ok: bool, message: str) -> None:
        self.ok, self.message = ok, message
        self.done.set()


@dataclass
class Work:
    frames: list[tuple[str, ReceivedFrame]] = field(default_factory=list)  # (camera, frame), round-robin order
    changes: dict[str, Any] = field(default_factory=dict)
    resets: list[ResetRequest] = field(default_factory=list)
    calls: list[Callable[[], None]] = field(default_factory=list)


class Inbox:
    """See the module docs; ``cameras``: the cameras' names, in order."""

    def __init__(self, cameras: Sequence[str]) -> None:
        if not cameras:
            raise ValueError("the inbox needs at least one camera")
        self.cameras = tuple(cameras)
        self._cond = threading.Condition()
        self._frames: dict[str, ReceivedFrame | None] = dict.fromkeys(self.cameras)
        self._next = 0  # index of the camera served first next time
        self._changes: dict[str, Any] = {}
        self._resets: list[ResetRequest] = []
        self._calls: list[Callable[[], None]] = []
        self._closed = False
        self.holding = False  # the worker waits for input.max_rate_hz: a replaced frame counts as rate_cap

    # --------------------------------------------------------------- frames
    def put_frame(self, camera: str, frame: ReceivedFrame) -> str | None:
        """Store ``camera``'s newest frame; the drop reason of the frame it replaced, or None."""
        with self._cond:
            if self._closed:
                return "inactive"  # the frame itself is dropped: the worker is gone
            replaced = None
            if self._frames[camera] is not None:
                replaced = "rate_cap" if self.holding else "replaced"
            self._frames[camera] = frame
            self._cond.notify()
        return replaced

    def take_frame(self, camera: str) -> ReceivedFrame | None:
        """``camera``'s waiting frame, if any (it is no longer waiting)."""
        with self._cond:
            frame, self._frames[camera] = self._frames[camera], None
        return frame

    def waiting(self) -> bool:
        """Whether any camera has a frame waiting."""
        with self._cond:
            return any(f is not None for f in self._frames.values())

    # ------------------------------------------------- changes, resets, calls
    def put_call(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the worker, between frames."""
        with self._cond:
            self._calls.append(call)
            self._cond.notify()

    def put_changes(self, changes: dict[str, Any]) -> None:
        """Run-time changes; several that arrive while the worker is busy merge into one update."""
        with self._cond:
            self._changes.update(changes)
            self._cond.notify()

    def put_reset(self, camera: str | None = None) -> ResetRequest:
        request = ResetRequest(camera)
        with self._cond:
            if self._closed:
                request.answer(False, "the node is not active")
                return request
            self._resets.append(request)
            self._cond.notify()
        return request

    def _has_pending(self) -> bool:
        return bool(self._changes or self._resets or self._calls)

    # ---------------------------------------------------------------- worker
    def get(self, max_frames: int = 1) -> Work | None:
        """The next work (blocking): changes, resets and calls first; else up to ``max_frames``
        waiting frames, round robin.  None once closed."""
        with self._cond:
            while not (self._closed or self._has_pending() or any(f is not None for f in self._frames.values())):
                self._cond.wait()
            if self._closed:
                return None
            if self._has_pending():
                work = Work(changes=self._changes, resets=self._resets, calls=self._calls)
                self._changes, self._resets, self._calls = {}, [], []
                return work
            return Work(frames=self._take_round(max(1, max_frames)))

    def _take_round(self, limit: int) -> list[tuple[str, ReceivedFrame]]:
        n = len(self.cameras)
        taken = []
        for name in (self.cameras[(self._next + i) % n] for i in range(n)):
            if self._frames[name] is not None and len(taken) < limit:
                taken.append((name, self._frames[name]))
                self._frames[name] = None
        self._next = (self.cameras.index(taken[-1][0]) + 1) % n  # the camera after the last served goes first
        return taken

    def close(self) -> dict[str, int]:
        """No more work: waiting resets are answered, waiting frames handed back (per camera: 1 or 0)."""
        with self._cond:
            self._closed = True
            for request in self._resets:
                request.answer(False, "the node is shutting down")
            self._resets = []
            left = {name: int(frame is not None) for name, frame in self._frames.items()}
            self._frames = dict.fromkeys(self.cameras)
            self._cond.notify_all()
        return left
