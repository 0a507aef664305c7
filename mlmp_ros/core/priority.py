"""Prediction first: adaptation under ``async`` never delays a prediction (no ROS imports).

One :class:`Priority` object is shared by the prediction side and every adaptation thread
that works on the same model (one per camera state in
:class:`~mlmp_ros.core.multicamera.MultiCameraSegmenter`, one for a lone
:class:`~mlmp_ros.core.schedule.ScheduledSegmenter`; both hand it out as ``.priority``).

A prediction is *claimed* while it runs and while a frame waits for it:

- ``with priority.predicting(): ...`` -- :meth:`ScheduledSegmenter.segment` does this under ``async``
  for the duration of each prediction (the caller does nothing);
- ``priority.frame_arrived(source)`` / ``priority.frame_left(source)`` -- called by whoever queues
  frames (the node): ``frame_arrived(camera)`` once for every frame of ``camera`` put in the queue
  (the image callback), ``frame_left(camera)`` once for every such frame when the node is done with
  it: after ``segment()`` returned for it (or raised), or when it left the queue without prediction
  (replaced by a newer frame, rate cap, class change, disabled, bad frame).  Counted per source, so
  a frame that arrives while the previous one is being predicted keeps adaptation paused after that
  one leaves.  A source whose last ``frame_arrived`` is older than ``stale_s`` (2 s) is cleared, so
  a missing ``frame_left`` cannot stop adaptation for good.

While anything is claimed, adaptation threads wait at their next safe point:

- between two steps (:meth:`checkpoint`, from the method's ``step_hook``), and at the start of a job;
- inside a step on the CPU (:func:`install_safe_points`): before each LayerNorm of the adaptation
  side's own copy of the encoder blocks (a separate module copy from the predictor's) in the forward
  pass, and when the backward pass reaches that LayerNorm's output -- about 4 points per block.

One adaptation thread steps at a time (the *turn*): a thread takes the turn at the start of a job
and, at each step boundary where a prediction is claimed or another thread waits, gives it back
and queues again behind the others (first come, first served: steps of several cameras alternate).

Threads (:class:`ThreadPolicy`, one per process): PyTorch's intra-op thread count is a per-thread
setting that new threads inherit from the last ``torch.set_num_threads``.  While at least one
``async`` schedule runs, the prediction side keeps every thread it had and each adaptation thread sets
itself to half of them (at least 1): measured in ``benchmarks/labels_on_time.py`` (see
docs/streaming.md, Async adaptation latency).  The count the process had is put back when the last
``async`` schedule stops, once, whatever the number of schedules.

CUDA: predictions run on a high-priority CUDA stream (:class:`PredictionCudaStream`) and adaptation on
a normal-priority one (:func:`adaptation_cuda_stream`); both are no-ops on the CPU.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import torch

STALE_S = 2.0  # a waiting-frame flag older than this is dropped
POLL_S = 0.25  # waits wake at least this often (stale flags, stop requests)


def _never() -> bool:
    return False


class Priority:
    """See the module docs.  ``pause=False`` (measurements only): claims never stop adaptation."""

    def __init__(self, *, pause: bool = True, stale_s: float = STALE_S, clock: Callable[[], float] = time.monotonic):
        self.pause_enabled = pause
        self.stale_s = stale_s
        self.clock = clock
        self._cond = threading.Condition()
        self._predicting = 0
        self._waiting: dict[Hashable, list] = {}  # source -> [frames waiting, time of the last arrival]
        self._owner: Any = None
        self._queue: deque[Any] = deque()
        self.predictions = 0  # predictions claimed so far
        self.held = 0  # adaptation threads waiting now because a prediction is claimed

    # ------------------------------------------------------- prediction side
    @contextlib.contextmanager
    def predicting(self) -> Iterator[None]:
        """Claim priority for the block (a prediction)."""
        with self._cond:
            self._predicting += 1
            self.predictions += 1
        try:
            yield
        finally:
            with self._cond:
                self._predicting -= 1
                self._cond.notify_all()

    def frame_arrived(self, source: Hashable = "") -> None:
        """A frame of ``source`` waits for prediction: adaptation pauses until it leaves (:meth:`frame_left`)."""
        with self._cond:
            entry = self._waiting.setdefault(source, [0, 0.0])
            entry[0] += 1
            entry[1] = self.clock()

    def frame_left(self, source: Hashable = "") -> None:
        """A frame of ``source`` that arrived was predicted or dropped."""
        with self._cond:
            entry = self._waiting.get(source)
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] <= 0:
                del self._waiting[source]
                self._cond.notify_all()

    def claimed(self) -> bool:
        """Whether a prediction runs or a frame waits (adaptation should not step now)."""
        with self._cond:
            return self._claimed()

    def _claimed(self) -> bool:
        if not self.pause_enabled:
            return False
        if self._predicting:
            return True
        if self._waiting:
            now = self.clock()
            for source in [k for k, (_, t) in self._waiting.items() if now - t > self.stale_s]:
                del self._waiting[source]
        return bool(self._waiting)

    # ------------------------------------------------------ adaptation side
    def acquire(self, token: Any, stop: Callable[[], bool] = _never) -> float:
        """Wait for the turn (no claim, ``token`` first in line); seconds waited for predictions.
        Returns without the turn when ``stop()`` turns true."""
        waited = 0.0
        with self._cond:
            if self._owner is token:
                return 0.0
            if token not in self._queue:
                self._queue.append(token)
            while True:
                if stop():
                    self._drop(token)
                    return waited
                blocked = self._claimed()
                if not blocked and self._owner is None and self._queue[0] is token:
                    break
                waited += self._wait(blocked)
            self._queue.popleft()
            self._owner = token
        return waited

    def release(self, token: Any) -> None:
        """Give the turn back (and leave the line)."""
        with self._cond:
            self._drop(token)

    def _drop(self, token: Any) -> None:
        if self._owner is token:
            self._owner = None
        if token in self._queue:
            self._queue.remove(token)
        self._cond.notify_all()

    def holds(self, token: Any) -> bool:
        with self._cond:
            return self._owner is token

    def checkpoint(self, token: Any, stop: Callable[[], bool] = _never) -> float:
        """A step boundary: keep the turn when nobody waits for it, else queue again behind the
        others (after any claimed prediction); seconds waited for predictions."""
        with self._cond:
            if self._owner is token and not self._claimed() and not self._queue:
                return 0.0
        self.release(token)
        return self.acquire(token, stop)

    def pause(self, stop: Callable[[], bool] = _never) -> float:
        """A safe point inside a step: wait while a prediction is claimed (the turn is kept)."""
        if not (self._predicting or self._waiting) or not self.pause_enabled:
            return 0.0  # the common case, without the lock
        waited = 0.0
        with self._cond:
            while self._claimed() and not stop():
                waited += self._wait(True)
        return waited

    def _wait(self, for_prediction: bool) -> float:
        """Wait on the condition (lock held); the seconds it took when it was for a prediction."""
        self.held += for_prediction
        t0 = time.perf_counter()
        try:
            self._cond.wait(POLL_S)
        finally:
            self.held -= for_prediction
        return time.perf_counter() - t0 if for_prediction else 0.0

    def queued(self) -> int:
        """Adaptation threads in line for the turn."""
        with self._cond:
            return len(self._queue)

    def wake(self) -> None:
        """Wake every waiting thread (e.g. to see a stop request)."""
        with self._cond:
            self._cond.notify_all()


def install_safe_points(encoder: Any, pause: Callable[[], Any]) -> list[Any]:
    """Call ``pause()`` before each LayerNorm of ``encoder``'s blocks runs forward and when the
    backward pass reaches its output.  Returns the hook handles (``.remove()`` them to undo)."""
    handles = []

    def before(module: Any, args: Any) -> None:
        pause()

    def after(module: Any, args: Any, output: Any) -> None:
        if torch.is_tensor(output) and output.requires_grad:
            output.register_hook(_grad_pause(pause))

    for block in getattr(encoder, "blocks", []):
        for norm in (getattr(block, "ln_1", None), getattr(block, "ln_2", None)):
            if norm is not None:
                handles.append(norm.register_forward_pre_hook(before))
                handles.append(norm.register_forward_hook(after))
    return handles


def _grad_pause(pause: Callable[[], Any]) -> Callable[[torch.Tensor], None]:
    def hook(grad: torch.Tensor) -> None:
        pause()

    return hook


class ThreadPolicy:
    """How CPU threads are split while ``async`` schedules run (see module docs); one per process.

    ``split``: ``"adapt_half"`` (the default: prediction keeps its threads, adaptation threads
    use half), ``"share"`` (both sides keep every thread) or ``"halves"`` (both halved; the old
    policy, for measurements).
    """

    split = "adapt_half"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.users = 0
        self.before: int | None = None
        self.predict_threads: int | None = None
        self.adapt_threads: int | None = None

    def start(self) -> None:
        """An ``async`` schedule starts; the first one applies the policy."""
        with self._lock:
            self.users += 1
            if self.users > 1:
                return
            self.before = torch.get_num_threads()
            half = max(1, self.before // 2)
            self.predict_threads = half if self.split == "halves" else self.before
            self.adapt_threads = self.before if self.split == "share" else half
            if self.predict_threads != self.before:
                torch.set_num_threads(self.predict_threads)

    def stop(self) -> None:
        """An ``async`` schedule stops; the last one puts the process's thread count back."""
        with self._lock:
            if self.users == 0:
                return
            self.users -= 1
            if self.users == 0:
                torch.set_num_threads(self.before)
                self.before = self.predict_threads = self.adapt_threads = None

    def on_adaptation_thread(self) -> None:
        """Called by each adaptation thread when it starts: its own thread count."""
        with self._lock:
            n = self.adapt_threads
        if n is not None and torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def on_prediction(self) -> None:
        """Called before each async prediction: the prediction side's count (a thread started
        after an adaptation thread would otherwise inherit that thread's count)."""
        n = self.predict_threads
        if n is not None and torch.get_num_threads() != n:
            torch.set_num_threads(n)


THREADS = ThreadPolicy()  # the process's policy


class PredictionCudaStream:
    """A context that runs its block on a high-priority CUDA stream (ordered after the current
    stream's work, and the current stream after it); nothing on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda_stream = None
        if device.type == "cuda":
            self.cuda_stream = torch.cuda.Stream(device, priority=min(torch.cuda.Stream.priority_range()))
        self._ctx: Any = None

    def __enter__(self) -> PredictionCudaStream:
        if self.cuda_stream is not None:
            self.cuda_stream.wait_stream(torch.cuda.current_stream(self.cuda_stream.device))
            self._ctx = torch.cuda.stream(self.cuda_stream)
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> bool:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)
            self._ctx = None
            torch.cuda.current_stream(self.cuda_stream.device).wait_stream(self.cuda_stream)
        return False


def adaptation_cuda_stream(device: torch.device) -> torch.cuda.Stream | None:
    """The adaptation side's CUDA stream (normal priority, below predictions); None on the CPU."""
    if device.type != "cuda":
        return None
    return torch.cuda.Stream(device, priority=max(torch.cuda.Stream.priority_range()))


__all__ = [
    "THREADS",
    "PredictionCudaStream",
    "Priority",
    "ThreadPolicy",
    "adaptation_cuda_stream",
    "install_safe_points",
]
