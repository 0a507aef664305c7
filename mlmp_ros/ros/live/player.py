"""Playing a sequence of frames into the node at a chosen pace (a part of :class:`~mlmp_ros.ros.live.LiveSession`)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from .calls import SessionTimeout
from .records import FrameRecord


def _check_pacing(rate_hz: float | None, speed: float | None, paced: bool) -> None:
    """Refuse (``ValueError``) anything but exactly one positive pacing of :meth:`LiveSession.play`."""
    if sum(x is not None and x is not False for x in (rate_hz, speed, paced)) != 1:
        raise ValueError("give exactly one of rate_hz, speed or paced")
    if any(x is not None and not (math.isfinite(x) and x > 0) for x in (rate_hz, speed)):
        raise ValueError(f"rate_hz and speed must be finite and positive, not {rate_hz if rate_hz is not None else speed}")


class Player:
    """``play`` and its pacing; mixed into LiveSession (uses its publish, sent_at, play_result and node)."""

    def play(
        self,
        frames: Iterable[tuple[int, Any]],
        *,
        rate_hz: float | None = None,
        speed: float | None = None,
        paced: bool = False,
        timeout: float = 30.0,
        restamp: bool = False,
        drain: bool = True,
    ) -> PlayResult:
        """Publish ``(stamp_ns, frame)`` items and collect the outputs.

        Exactly one pacing: ``rate_hz`` (fixed rate), ``speed`` (x N the recorded
        rate, from the stamps) or ``paced`` (send the next frame when the previous
        one's labels arrived, or after ``timeout`` seconds).  ``restamp`` stamps each
        frame with the wall clock at sending (the node's latency then reads true).
        With ``drain``, waits up to ``timeout`` for the last frame's labels.
        """
        _check_pacing(rate_hz, speed, paced)
        records: list[FrameRecord] = []
        started = time.monotonic()
        next_at = started
        previous_source: int | None = None
        for index, (source_stamp, frame) in enumerate(frames):
            if speed is not None and previous_source is not None:
                next_at += max(0, int(source_stamp) - previous_source) * 1e-9 / speed
            previous_source = int(source_stamp)
            self._sleep_until(next_at)
            now = time.monotonic()
            if rate_hz is not None:
                # Fixed rate without bursts: a late frame moves the next send times instead of catching up.
                next_at = max(next_at, now - 1.0 / rate_hz) + 1.0 / rate_hz
            stamp = self.publish(frame, source_stamp if isinstance(frame, np.ndarray) else None, restamp=restamp)
            records.append(FrameRecord(index, stamp, int(source_stamp), self.sent_at(stamp)))
            if paced:
                self._wait_for_output_quietly(stamp, timeout)
            elif self.node is not None:
                self.node.check()
        if drain and records:
            self._wait_for_output_quietly(records[-1].stamp_ns, timeout)
        return self.play_result(records, started, time.monotonic())

    def _wait_for_output_quietly(self, stamp_ns: int, timeout: float) -> None:
        """Wait up to ``timeout`` for the labels of ``stamp_ns``; no error when they do not come."""
        try:
            self.wait_for_output(stamp_ns, timeout)
        except SessionTimeout:
            pass

    def _sleep_until(self, when: float) -> None:
        while True:
            left = when - time.monotonic()
            if left <= 0:
                return
            if self.node is not None:
                self.node.check()
            time.sleep(min(left, 0.1))
