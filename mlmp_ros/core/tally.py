"""What adaptation did, kept for a stream's diagnostics (no ROS imports).

:class:`Tally`: resets by reason and adaptation failures, across schedule switches.
:class:`JobRecord`: the last adaptation job (status, last loss, steps) and the steps run per
predicted frame over the last :data:`WINDOW` frames, filled under both schedules (``sync`` from
the frame's own adaptation, ``async`` from the adaptation thread's jobs).
"""

from __future__ import annotations

import threading
from collections import deque

from .methods import Method

WINDOW = 100  # predicted frames over which steps per frame are counted


class JobRecord:
    """The last adaptation job and steps per predicted frame (thread safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status = ""  # "" before any job
        self.loss: float | None = None
        self.steps = 0
        self.jobs = 0
        self._marks: deque[int] = deque([0], maxlen=WINDOW + 1)  # total steps after each predicted frame

    def job(self, status: str, losses: list[float]) -> None:
        """One adaptation job ended (skipped jobs included: status "skipped", 0 steps)."""
        with self.lock:
            self.status = status
            self.loss = float(losses[-1]) if losses else None
            self.steps = len(losses)
            self.jobs += 1

    def predicted(self, steps_total: int) -> None:
        """A frame was predicted; ``steps_total``: adaptation steps run so far in the stream."""
        with self.lock:
            self._marks.append(steps_total)

    def steps_per_frame(self) -> float:
        with self.lock:
            frames = len(self._marks) - 1
            return (self._marks[-1] - self._marks[0]) / frames if frames > 0 else 0.0

    def values(self) -> dict:
        with self.lock:
            status, loss, steps = self.status, self.loss, self.steps
        return {
            "adapt_last_status": status,
            "adapt_last_loss": loss,
            "adapt_last_steps": steps,
            "steps_per_frame": self.steps_per_frame(),
        }


class Tally:
    """Resets by reason and adaptation failures of the method that adapts, kept across schedule
    switches: ``sync`` counts on the prediction side's method, ``async`` on the adaptation
    thread's, and a switch hands the totals so far on to the other one (nothing goes back to 0)."""

    def __init__(self, method: Method):
        self.lock = threading.Lock()  # the node's diagnostics read while the worker switches
        self.reasons: dict[str, int] = {}
        self.failures = 0
        self.last_failure = ""
        self._watch(method)

    def _watch(self, method: Method) -> None:
        self.method = method
        self._reasons_mark = dict(method.reset_reasons)
        self._failures_mark = method.failures

    def totals(self) -> tuple[dict[str, int], int, str]:
        """(resets by reason, failures, last failure) since the stream started."""
        with self.lock:
            return self._totals()

    def _totals(self) -> tuple[dict[str, int], int, str]:
        method = self.method
        reasons = dict(self.reasons)
        for reason, count in dict(method.reset_reasons).items():  # a copy: the adaptation thread adds to it
            new = count - self._reasons_mark.get(reason, 0)
            if new:
                reasons[reason] = reasons.get(reason, 0) + new
        new_failures = method.failures - self._failures_mark
        last = method.last_failure if new_failures else self.last_failure
        return reasons, self.failures + new_failures, last

    def switch(self, method: Method) -> None:
        """From now on ``method`` adapts: keep the totals so far, count what it adds to them."""
        with self.lock:
            self.reasons, self.failures, self.last_failure = self._totals()
            self._watch(method)
