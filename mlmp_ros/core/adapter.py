"""The adaptation side of the ``async`` schedule (core/schedule.py): a thread with its own method
on a copy of the adapted parameters, adapting on the newest frame it was given and publishing
copies of its weights; it yields to predictions through a shared
:class:`~mlmp_ros.core.priority.Priority` (no ROS imports).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .methods import Method
from .methods.guards import AdaptationCancelled
from .priority import THREADS, Priority, adaptation_cuda_stream, install_safe_points
from .safeguards import ControlOwner
from .segmenter import Segmenter
from .tally import JobRecord

LOG = logging.getLogger("mlmp_ros.schedule")


@dataclass
class Published:
    """Adapted parameters published by the adaptation side."""

    version: int
    frame: int  # index of the frame they were adapted on
    params: list[torch.Tensor]
    generation: int  # the control's reset generation when they were made
    status: str = "ok"
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


class Adapter:
    """The adaptation side of ``async``: its own method on a copy of the adapted parameters."""

    def __init__(self, seg: Segmenter, controls: ControlOwner, priority: Priority, record: JobRecord,
                 *, threaded: bool = True):
        self.seg = seg
        self.priority = priority
        self.record = record
        self.wait_s = 0.0  # seconds this side waited for predictions
        pred = seg.method
        adapted = {id(p) for _, p in pred.named_params}
        # share every frozen tensor with the prediction model; copy only what adapts
        memo = {id(p): p for p in seg.loaded.model.parameters() if id(p) not in adapted}
        memo.update({id(b): b for b in seg.loaded.model.buffers()})
        model = copy.deepcopy(seg.loaded.model, memo)
        from .dense import DenseCLIP

        cfg = seg.config
        encoder = DenseCLIP(model, cfg.attention, cfg.features, cfg.gaussian_std).to(seg.device)
        self.method: Method = seg.method_cls(encoder, seg.text, cfg, seg.layers, seg.precision)
        self.method.take_source_from(pred)
        with torch.no_grad():  # carry on from the weights the predictor has now
            for (_, p), (_, q) in zip(self.method.named_params, pred.named_params):
                p.copy_(q)
        self.method.mode, self.method.steps = pred.mode, pred.steps
        self._outer_hook = getattr(pred, "step_hook", None)  # e.g. a node stopping, tests' step delay
        self.method.step_hook = self._before_step
        controls.steer(self.method)
        self.control = controls.control
        self.version = 0
        self.lock = threading.Condition()
        self._frame: tuple[int, list[np.ndarray]] | None = None
        self._ready: Published | None = None
        self._stop = False
        self.error: BaseException | None = None
        self.jobs = 0
        self.cuda_stream = adaptation_cuda_stream(seg.device)
        self.hooks = []  # safe points inside a step: the CPU's eager path (compiled graphs keep theirs whole)
        if seg.device.type == "cpu" and not self.method.compiler.enabled:
            self.hooks = install_safe_points(encoder, self._pause)
        self.thread: threading.Thread | None = None  # None: unthreaded (the caller runs :meth:`job`)
        if threaded:
            self.start()

    def _stopping(self) -> bool:
        return self._stop

    def _pause(self) -> None:
        """A safe point inside a step: wait while a prediction is claimed."""
        self.wait_s += self.priority.pause(self._stopping)

    def _before_step(self) -> None:
        """Between steps: yield to predictions and other adaptation threads; stop when the thread
        is asked to (settings change, schedule switch, close)."""
        if self._stop:
            raise AdaptationCancelled("the adaptation thread is stopping")
        self.wait_s += self.priority.checkpoint(self, self._stopping)
        if self._stop:
            raise AdaptationCancelled("the adaptation thread is stopping")
        if self._outer_hook is not None:
            self._outer_hook()
        if self._stop:
            raise AdaptationCancelled("the adaptation thread is stopping")

    # ----------------------------------------------------------- threaded
    def start(self) -> None:
        """Start the adaptation thread, or start it again after :meth:`stop` (the method and its
        weights carry on)."""
        self._stop = False
        self.thread = threading.Thread(target=self._loop, name="mlmp-adapt", daemon=True)
        self.thread.start()

    def running(self) -> bool:
        """Whether the adaptation thread runs now."""
        return self.thread is not None and self.thread.is_alive()

    def forget_frame(self) -> None:
        """Drop the frame waiting for adaptation, if any (one seen before a reset)."""
        with self.lock:
            self._frame = None

    def submit(self, index: int, images: list[np.ndarray]) -> None:
        with self.lock:
            self._frame = (index, images)  # the newest frame only
            self.lock.notify()

    def _loop(self) -> None:
        if self.seg.device.type == "cpu":
            THREADS.on_adaptation_thread()
        while True:
            with self.lock:
                while self._frame is None and not self._stop:
                    self.lock.wait()
                if self._stop:
                    return
                index, images = self._frame
                self._frame = None
            try:
                published = self.job(index, images)
            except AdaptationCancelled:
                return  # stopping (the weights of the cancelled job were put back)
            except BaseException as exc:  # noqa: BLE001 - reported by the schedule
                LOG.error("adaptation thread failed: %s", exc)
                self.error = exc
                return
            if published is not None:
                with self.lock:
                    self._ready = published

    def take(self) -> Published | None:
        with self.lock:
            ready, self._ready = self._ready, None
            return ready

    def stop(self) -> None:
        with self.lock:
            self._stop = True
            self.lock.notify()
        self.priority.wake()
        if self.thread is not None:
            self.thread.join()

    # ------------------------------------------------------------- one job
    def job(self, index: int, images: list[np.ndarray]) -> Published | None:
        """Adapt on one frame; the published parameters, or None when nothing adapted."""
        self.wait_s += self.priority.acquire(self, self._stopping)  # the turn, after any claimed prediction
        try:
            if self._stop:
                raise AdaptationCancelled("the adaptation thread is stopping")
            return self._job(index, images)
        finally:
            self.priority.release(self)

    def _job(self, index: int, images: list[np.ndarray]) -> Published | None:
        t0 = time.perf_counter()
        ctx = torch.cuda.stream(self.cuda_stream) if self.cuda_stream is not None else contextlib.nullcontext()
        with ctx:
            x, _ = self.seg.prepare(images)
            batch = self.method.make_batch(x)
            status, losses = self.method.adapt_frame(batch)
            self.record.job(status, losses)
            if status == "skipped":
                return None
            params = [p.detach().clone() for _, p in self.method.named_params]
        if self.cuda_stream is not None:
            self.cuda_stream.synchronize()
        self.jobs += 1
        self.version += 1
        seconds = time.perf_counter() - t0
        return Published(self.version, index, params, self.control.generation, status, losses, seconds)


__all__ = ["Adapter", "Published"]
