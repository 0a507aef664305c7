"""Adaptation schedules for a stream of frames: ``sync`` (the paper) and ``async``.

``sync``: every frame is adapted on (``adaptation.every``, budgets and safeguards
apply, see core/safeguards.py), then predicted: :meth:`Segmenter.segment` unchanged.

``async``: a frame is predicted at once with the newest adapted weights (one forward
pass) and its result returned; the frame is also handed to an adaptation thread that
works on the newest frame it has been given (older ones are dropped; core/adapter.py).  The adaptation
thread has its own copy of the adapted parameters (the frozen weights are shared, not
copied); when it finishes a frame it publishes a copy of them, and the prediction side
installs the newest published copy *between* two predictions, on its own thread, so a
prediction never sees a half-updated model.  ``lag`` is the number of frames between
the frame the weights were adapted on and the frame predicted.

What the modes mean under ``async``:

- ``episodic``: every adaptation starts from the source weights and adapts on one frame
  (the newest); frames are predicted with the weights adapted on a recent frame, not on
  themselves (under ``sync`` a frame is predicted with the weights adapted on itself).
- ``continual``: the adaptation thread carries its weights and optimiser state from
  frame to frame (with the safeguards and ``reset_every``); predictions follow it.
- ``off``: nothing adapts; predictions use the weights installed last.

Prediction first (core/priority.py): each ``async`` prediction claims the segmenter's
:class:`~mlmp_ros.core.priority.Priority` (``ScheduledSegmenter.priority``, shared by every
camera's state of a :class:`~mlmp_ros.core.multicamera.MultiCameraSegmenter`); the adaptation thread
waits at its next safe point while a prediction runs or a frame waits (``frame_arrived`` /
``frame_left``), and one adaptation thread steps at a time.  Threads: the process-wide
:data:`~mlmp_ros.core.priority.THREADS` policy, applied when the first ``async`` schedule starts
and undone when the last one stops.  On CUDA predictions run on a high-priority CUDA stream
and the adaptation thread on a normal one, which it synchronises before it publishes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .adapter import Adapter as _Adapter
from .adapter import Published
from .config import Config, ConfigError
from .methods import Method
from .priority import THREADS, PredictionCudaStream, Priority
from .safeguards import ControlOwner
from .schema import SCHEDULE, runtime_names
from .segmenter import RUNTIME_SETTINGS, BatchResult, Segmenter
from .tally import JobRecord, Tally

LOG = logging.getLogger("mlmp_ros.schedule")

# Settings a ScheduledSegmenter changes at run time (besides the Segmenter's): declared in
# core/config.py with ``runtime=SCHEDULE`` (schedule, every, budget_ms, plateau, reset_every, safeguards).
SCHEDULE_SETTINGS = runtime_names(Config, SCHEDULE)


@dataclass
class ScheduledResult:
    result: BatchResult
    frame: int  # this frame's index in the stream
    adapted_on: int | None  # frame the weights were adapted on (None: source / never adapted)
    lag: int | None  # frame - adapted_on
    version: int  # published weights version used (0: the weights at the start)
    schedule: str


class ScheduledSegmenter:
    """A :class:`Segmenter` fed one frame at a time under ``adaptation.schedule``.

    ``priority``: the :class:`~mlmp_ros.core.priority.Priority` shared with other cameras' states on the
    same model (a new one by default); ``self.priority`` is the one in use (the node's image
    callback calls its ``frame_arrived`` / ``frame_left``).
    """

    def __init__(self, segmenter: Segmenter, *, threaded: bool = True, priority: Priority | None = None):
        self.seg = segmenter
        self.priority = priority if priority is not None else Priority()
        self.record = JobRecord()
        self._wait_s = 0.0  # seconds stopped adaptation threads waited for predictions
        self._prediction_cuda_stream = PredictionCudaStream(segmenter.device)
        self.threaded = threaded
        self._controls = ControlOwner(segmenter.config.adaptation)
        self.control = self._controls.control
        self._controls.steer(segmenter.method)
        self.frames = 0
        self.adapted_on: int | None = None
        self.version = 0
        self.generation = 0
        self.lags: list[int] = []
        self._adapter: _Adapter | None = None
        self._threads_on = False  # this segmenter counts as a user of THREADS
        self._started = time.monotonic()
        self._tally = Tally(segmenter.method)
        if self.schedule == "async":
            self._start_async()

    @property
    def config(self):
        return self.seg.config

    @property
    def schedule(self) -> str:
        return self.seg.config.adaptation.schedule

    @property
    def method(self) -> Method:
        """The method whose weights adapt (the adaptation side's under ``async``)."""
        return self._adapter.method if self._adapter is not None else self.seg.method

    # -------------------------------------------------------------- control
    def _start_async(self) -> None:
        if self.seg.device.type == "cpu" and not self._threads_on:
            THREADS.start()
            self._threads_on = True
        self._adapter = _Adapter(self.seg, self._controls, self.priority, self.record, threaded=self.threaded)
        self._tally.switch(self._adapter.method)
        self.seg.method.mode = "off"  # the prediction side only predicts
        self._controls.observe_only(self.seg.method, lambda: self.generation)

    def _stop_async(self) -> None:
        adapter, self._adapter = self._adapter, None
        if adapter is None:
            return
        adapter.stop()
        for hook in adapter.hooks:
            hook.remove()
        self._wait_s += adapter.wait_s
        self._tally.switch(self.seg.method)
        ready = adapter.take()
        if ready is not None:
            self.install(ready)
        with torch.no_grad():  # the prediction model carries on from the adaptation side's weights
            for (_, p), (_, q) in zip(self.seg.method.named_params, adapter.method.named_params):
                p.copy_(q)
        self.seg.method.mode = self.seg.config.adaptation.mode
        self._controls.steer(self.seg.method)
        if self._threads_on:
            THREADS.stop()
            self._threads_on = False

    def update(self, **changes) -> None:
        """Run-time changes: the Segmenter's (classes, mode, steps, lr) and :data:`SCHEDULE_SETTINGS`."""
        names = {k.replace("__", "."): v for k, v in changes.items()}
        unknown = [k for k in names if k not in RUNTIME_SETTINGS and k not in SCHEDULE_SETTINGS]
        if unknown:
            allowed = ", ".join((*RUNTIME_SETTINGS, *SCHEDULE_SETTINGS))
            raise ConfigError(f"{', '.join(unknown)} cannot change at run time (only {allowed})")
        new = self.seg.config.replace(**names)  # validates everything first
        old_schedule = self.schedule
        restart = self._adapter is not None and self._adapter.thread is not None
        if restart:
            self._adapter.stop()  # no job runs while settings change
        core = {k: v for k, v in names.items() if k in RUNTIME_SETTINGS}
        if core:
            self.seg.update(**core)
        self.seg.config = new
        self.seg.method.adaptation = new.adaptation
        self.control.adaptation = new.adaptation
        if self._adapter is not None:
            m = self._adapter.method
            m.adaptation, m.config, m.mode, m.steps = new.adaptation, new, new.adaptation.mode, new.adaptation.steps
            m.set_lr(new.adaptation.lr)
            m.set_text(self.seg.text)
            self.seg.method.mode = "off"
        if new.adaptation.schedule != old_schedule:
            self.lags.clear()
            if new.adaptation.schedule == "async":
                self._start_async()
            else:
                self._stop_async()  # its thread already stopped above
        elif restart:
            self._adapter.start()

    def reset(self) -> None:
        """Both sides back to the source weights."""
        adapter = self._adapter
        running = adapter is not None and adapter.running()
        if running:
            adapter.stop()  # the job in flight ends between two steps; nothing is half reset
        self.seg.method.reset()
        if adapter is not None:
            adapter.method.reset()
            adapter.take()  # weights adapted before the reset are not installed
            adapter.forget_frame()  # nor is a frame seen before it adapted on
            if running:
                adapter.start()
        self.adapted_on = None

    def close(self) -> None:
        self._stop_async()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # --------------------------------------------------------------- frames
    def install(self, published: Published) -> None:
        """Put published parameters into the prediction model (call between predictions)."""
        with torch.no_grad():
            for (_, p), v in zip(self.seg.method.named_params, published.params):
                p.copy_(v)
        self.version = published.version
        self.adapted_on = published.frame
        self.generation = published.generation

    def segment(self, images: Sequence[np.ndarray] | np.ndarray, **kwargs) -> ScheduledResult:
        """Segment one frame (a batch of images) under the schedule; kwargs go to ``segment``."""
        if isinstance(images, np.ndarray):
            images = list(images) if images.ndim == 4 else [images]
        index = self.frames
        self.frames += 1
        if self._adapter is None:
            result = self.seg.segment(images, **kwargs)
            self.record.job(result.status, result.losses)
            if result.status != "skipped":
                self.adapted_on = index
                self.version += 1
            return self._result(result, index)
        adapter = self._adapter
        if adapter.error is not None:
            raise RuntimeError(f"the adaptation thread failed: {adapter.error}") from adapter.error
        with self.priority.predicting(), self._prediction_cuda_stream:  # adaptation waits at its next safe point
            if self._threads_on:
                THREADS.on_prediction()
            if adapter.thread is not None:
                ready = adapter.take()
                if ready is not None:
                    self.install(ready)
            result = self.seg.segment(images, **kwargs)
        if adapter.thread is not None:
            adapter.submit(index, list(images))
        return self._result(result, index)

    def predict_only(self, images: list[np.ndarray], index: int, **kwargs) -> ScheduledResult:
        """Unthreaded ``async``: the prediction of frame ``index`` with the installed weights."""
        result = self.seg.segment(images, **kwargs)
        return self._result(result, index)

    def adapt_only(self, images: list[np.ndarray], index: int) -> Published | None:
        """Unthreaded ``async``: one adaptation job (the caller installs the result when due)."""
        if self._adapter is None:
            raise RuntimeError("adapt_only needs the async schedule")
        self.seg.check(images)  # a frame adapted on without being predicted enters the core here
        return self._adapter.job(index, images)

    def _result(self, result: BatchResult, index: int) -> ScheduledResult:
        lag = None if self.adapted_on is None else index - self.adapted_on
        if lag is not None:
            self.lags.append(lag)
            del self.lags[:-100]
        self.record.predicted(self.control.steps_total)
        return ScheduledResult(result, index, self.adapted_on, lag, self.version, self.schedule)

    # ------------------------------------------------------------ reporting
    def counters(self) -> dict:
        """Resets (by reason, total) and adaptation failures since this segmenter started, across schedule switches."""
        reasons, failures, last = self._tally.totals()
        return {"resets": reasons, "resets_total": sum(reasons.values()), "failures": failures, "last_failure": last}

    def adapt_wait_s(self) -> float:
        """Seconds the adaptation side has waited for predictions since this segmenter started."""
        adapter = self._adapter
        return self._wait_s + (adapter.wait_s if adapter is not None else 0.0)

    def stats(self) -> dict:
        """Schedule, what adaptation got (last job, steps per frame and per second, time spent waiting
        for predictions), the adapted weights' age in frames (``lag_frames``), resets, budget stops."""
        c = self.control.stats()
        elapsed = max(1e-9, time.monotonic() - self._started)
        lags = sorted(self.lags)
        return {
            "schedule": self.schedule,
            "mode": self.seg.config.adaptation.mode,
            "frames": self.frames,
            "frames_adapted": c["frames_adapted"],
            "steps": c["steps"],
            "steps_per_s": c["steps"] / elapsed,
            "step_ms": c["step_ms"],
            **self.record.values(),  # adapt_last_status / _loss / _steps, steps_per_frame (last 100 frames)
            "adapt_wait_s": self.adapt_wait_s(),
            "lag_frames": self.lags[-1] if self.lags else None,  # the last frame's
            "lag_frames_median": lags[len(lags) // 2] if lags else None,  # of the last 100 frames
            "lag_frames_max": lags[-1] if lags else None,
            **self.counters(),
            "stops": c["stops"],
            "version": self.version,
            "torch_threads": torch.get_num_threads(),
            "adapt_threads": THREADS.adapt_threads if self._threads_on else None,
        }
