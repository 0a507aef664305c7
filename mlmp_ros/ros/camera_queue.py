"""The multi-camera worker's inbox: one slot per camera for its newest frame, served round
robin, plus the run-time changes, resets and calls of :class:`~mlmp_ros.ros.worker.WorkQueue`.

Fair: after a camera is served, every other camera with a waiting frame is served before it
again, so no camera starves however fast the others publish.  ``get(max_frames)`` hands out
up to that many cameras' frames at once (the worker batches them when it can).

Nothing here calls ROS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .worker import Frame, Inbox, ResetRequest


@dataclass
class CameraReset:
    camera: str | None  # None: every camera
    request: ResetRequest


@dataclass
class CameraWork:
    frames: list[tuple[str, Frame]] = field(default_factory=list)  # (camera, frame), round-robin order
    changes: dict[str, Any] = field(default_factory=dict)
    resets: list[CameraReset] = field(default_factory=list)
    calls: list[Callable[[], None]] = field(default_factory=list)


class CameraQueue(Inbox):
    """See the module docs."""

    def __init__(self, cameras: Sequence[str]) -> None:
        super().__init__()
        self.cameras = tuple(cameras)
        self._frames: dict[str, Frame | None] = dict.fromkeys(self.cameras)
        self._next = 0  # index of the camera served first next time

    @staticmethod
    def _request(item: CameraReset) -> ResetRequest:
        return item.request

    def put_frame(self, camera: str, frame: Frame) -> bool:
        """Store ``camera``'s newest frame; True when it replaced one not taken yet."""
        with self._cond:
            replaced = self._frames[camera] is not None
            self._frames[camera] = frame
            self._cond.notify()
        return replaced

    def take_frame(self, camera: str) -> Frame | None:
        with self._cond:
            frame, self._frames[camera] = self._frames[camera], None
        return frame

    def put_reset(self, camera: str | None = None) -> ResetRequest:
        return self._put_reset(CameraReset(camera, ResetRequest()))

    def _any_frame(self) -> bool:
        return any(f is not None for f in self._frames.values())

    def get(self, max_frames: int = 1) -> CameraWork | None:
        """The next work (blocking): changes, resets and calls first; else up to ``max_frames``
        waiting frames, round robin.  None once closed."""
        with self._cond:
            while not (self._closed or self._has_pending() or self._any_frame()):
                self._cond.wait()
            if self._closed:
                return None
            if self._has_pending():
                changes, resets, calls = self._take_pending()
                return CameraWork(changes=changes, resets=resets, calls=calls)
            return CameraWork(frames=self._take_round(max(1, max_frames)))

    def _take_round(self, limit: int) -> list[tuple[str, Frame]]:
        n = len(self.cameras)
        order = [self.cameras[(self._next + i) % n] for i in range(n)]
        taken = []
        for name in order:
            if self._frames[name] is not None and len(taken) < limit:
                taken.append((name, self._frames[name]))
                self._frames[name] = None
        last = self.cameras.index(taken[-1][0])
        self._next = (last + 1) % n  # the camera after the last one served goes first next time
        return taken

