"""Adaptation schedules for a stream of frames: ``sync`` (the paper) and ``async``.

``sync``: every frame is adapted on (``adaptation.every``, budgets and safeguards
apply, see core/safeguards.py), then predicted: :meth:`Segmenter.segment` unchanged.

``async``: a frame is predicted at once with the newest adapted weights (one forward
pass) and its result returned; the frame is also handed to an adaptation thread that
works on the newest frame it has been given (older ones are dropped).  The adaptation
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

Prediction first (core/priority.py): each ``async`` prediction claims the stream's
:class:`~mlmp_ros.core.priority.Priority` (``StreamSegmenter.priority``, shared by every
stream of a :class:`~mlmp_ros.core.multistream.MultiStream`); the adaptation thread waits at
its next safe point while a prediction runs or a frame waits (``frame_arrived`` /
``frame_left``), and one adaptation thread steps at a time.  Threads: the process-wide
:data:`~mlmp_ros.core.priority.THREADS` policy, applied when the first async stream starts
and undone when the last one stops.  On CUDA predictions run on a high-priority CUDA stream
and the adaptation thread on a normal one, which it synchronises before it publishes.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import Config, ConfigError
from .methods import Method
from .methods.base import AdaptationCancelled
from .priority import THREADS, PredictionStream, Priority, adaptation_stream, install_safe_points
from .safeguards import AdaptationControl
from .schema import STREAM, runtime_names
from .segmenter import RUNTIME_SETTINGS, BatchResult, Segmenter
from .tally import JobRecord, Tally

LOG = logging.getLogger("mlmp_ros.schedule")

# Settings a StreamSegmenter changes at run time (besides the Segmenter's): declared in
# core/config.py with ``runtime=STREAM`` (schedule, every, budget_ms, plateau, reset_every, safeguards).
STREAM_SETTINGS = runtime_names(Config, STREAM)


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


@dataclass
class StreamResult:
    result: BatchResult
    frame: int  # this frame's index in the stream
    adapted_on: int | None  # frame the weights were adapted on (None: source / never adapted)
    lag: int | None  # frame - adapted_on
    version: int  # published weights version used (0: the weights at the start)
    schedule: str


class _Adapter:
    """The adaptation side of ``async``: its own method on a copy of the adapted parameters."""

    def __init__(self, seg: Segmenter, control: AdaptationControl, priority: Priority, record: JobRecord,
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
        self.method._source = {"params": [t.clone() for t in pred._source["params"]], "optim": {}}
        with torch.no_grad():  # carry on from the weights the predictor has now
            for (_, p), (_, q) in zip(self.method.named_params, pred.named_params):
                p.copy_(q)
        self.method.mode, self.method.steps = pred.mode, pred.steps
        self._outer_hook = getattr(pred, "step_hook", None)  # e.g. a node stopping, tests' step delay
        self.method.step_hook = self._before_step
        self.method.control = control
        self.control = control
        self.version = 0
        self.lock = threading.Condition()
        self._frame: tuple[int, list[np.ndarray]] | None = None
        self._ready: Published | None = None
        self._stop = False
        self.error: BaseException | None = None
        self.jobs = 0
        self.stream = adaptation_stream(seg.device)
        self.hooks = []  # safe points inside a step: the CPU's eager path (compiled graphs keep theirs whole)
        if seg.device.type == "cpu" and not self.method.compiler.enabled:
            self.hooks = install_safe_points(encoder, self._pause)
        self.thread = None
        if threaded:
            self.thread = threading.Thread(target=self._loop, name="mlmp-adapt", daemon=True)
            self.thread.start()

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
            except BaseException as exc:  # noqa: BLE001 - reported by the stream
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
        ctx = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with ctx:
            x, _ = self.seg.prepare(images)
            batch = self.method.prepare(x)
            status, losses = self.method.adapt_frame(batch)
            self.record.job(status, losses)
            if status == "skipped":
                return None
            params = [p.detach().clone() for _, p in self.method.named_params]
        if self.stream is not None:
            self.stream.synchronize()
        self.jobs += 1
        self.version += 1
        seconds = time.perf_counter() - t0
        return Published(self.version, index, params, self.control.generation, status, losses, seconds)


class _Observer:
    """The prediction side's control under ``async``: passes its predictions to the collapse check."""

    def __init__(self, stream: StreamSegmenter):
        self.stream = stream

    def observe(self, window_logits: torch.Tensor) -> None:
        self.stream.control.observe(window_logits, generation=self.stream.generation)

    def on_reset(self) -> None:
        pass


class StreamSegmenter:
    """A :class:`Segmenter` fed one frame at a time under ``adaptation.schedule``.

    ``priority``: the :class:`~mlmp_ros.core.priority.Priority` shared with other streams on the
    same model (a new one by default); ``self.priority`` is the one in use (the node's image
    callback calls its ``frame_arrived`` / ``frame_left``).
    """

    def __init__(self, segmenter: Segmenter, *, threaded: bool = True, priority: Priority | None = None):
        self.seg = segmenter
        self.priority = priority if priority is not None else Priority()
        self.record = JobRecord()
        self._wait_s = 0.0  # seconds stopped adaptation threads waited for predictions
        self._prediction_stream = PredictionStream(segmenter.device)
        self.threaded = threaded
        self.control = AdaptationControl(segmenter.config.adaptation)
        segmenter.method.control = self.control
        self.frames = 0
        self.adapted_on: int | None = None
        self.version = 0
        self.generation = 0
        self.lags: list[int] = []
        self._adapter: _Adapter | None = None
        self._threads_on = False  # this stream counts as a user of THREADS
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
        self._adapter = _Adapter(self.seg, self.control, self.priority, self.record, threaded=self.threaded)
        self._tally.switch(self._adapter.method)
        self.seg.method.mode = "off"  # the prediction side only predicts
        self.seg.method.control = _Observer(self)

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
        self.seg.method.control = self.control
        if self._threads_on:
            THREADS.stop()
            self._threads_on = False

    def update(self, **changes) -> None:
        """Run-time changes: the Segmenter's (classes, mode, steps, lr) and :data:`STREAM_SETTINGS`."""
        names = {k.replace("__", "."): v for k, v in changes.items()}
        unknown = [k for k in names if k not in RUNTIME_SETTINGS and k not in STREAM_SETTINGS]
        if unknown:
            allowed = ", ".join((*RUNTIME_SETTINGS, *STREAM_SETTINGS))
            raise ConfigError(f"{', '.join(unknown)} cannot change at run time (only {allowed})")
        new = self.seg.config.replace(**names)  # validates everything first
        old_schedule = self.schedule
        if self._adapter is not None and self._adapter.thread is not None:
            self._adapter.stop()  # no job runs while settings change
            restart = True
        else:
            restart = False
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
                if self._adapter is not None:
                    self._adapter.thread = None  # already stopped above
                self._stop_async()
        elif restart:
            self._adapter.thread = threading.Thread(target=self._adapter._loop, name="mlmp-adapt", daemon=True)
            self._adapter._stop = False
            self._adapter.thread.start()

    def reset(self) -> None:
        """Both sides back to the source weights."""
        adapter = self._adapter
        running = adapter is not None and adapter.thread is not None and adapter.thread.is_alive()
        if running:
            adapter.stop()  # the job in flight ends between two steps; nothing is half reset
        self.seg.method.reset()
        if adapter is not None:
            adapter.method.reset()
            adapter.take()  # weights adapted before the reset are not installed
            adapter._frame = None  # nor is a frame seen before it adapted on
            if running:
                adapter._stop = False
                adapter.thread = threading.Thread(target=adapter._loop, name="mlmp-adapt", daemon=True)
                adapter.thread.start()
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

    def segment(self, images: Sequence[np.ndarray] | np.ndarray, **kwargs) -> StreamResult:
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
        with self.priority.predicting(), self._prediction_stream:  # adaptation waits at its next safe point
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

    def predict_only(self, images: list[np.ndarray], index: int, **kwargs) -> StreamResult:
        """Unthreaded ``async``: the prediction of frame ``index`` with the installed weights."""
        result = self.seg.segment(images, **kwargs)
        return self._result(result, index)

    def adapt_only(self, images: list[np.ndarray], index: int) -> Published | None:
        """Unthreaded ``async``: one adaptation job (the caller installs the result when due)."""
        if self._adapter is None:
            raise RuntimeError("adapt_only needs the async schedule")
        return self._adapter.job(index, images)

    def _result(self, result: BatchResult, index: int) -> StreamResult:
        lag = None if self.adapted_on is None else index - self.adapted_on
        if lag is not None:
            self.lags.append(lag)
            del self.lags[:-100]
        self.record.predicted(self.control.steps_total)
        return StreamResult(result, index, self.adapted_on, lag, self.version, self.schedule)

    # ------------------------------------------------------------ reporting
    def counters(self) -> dict:
        """Resets (by reason, total) and adaptation failures since the stream started, across schedule switches."""
        reasons, failures, last = self._tally.totals()
        return {"resets": reasons, "resets_total": sum(reasons.values()), "failures": failures, "last_failure": last}

    def adapt_wait_s(self) -> float:
        """Seconds the adaptation side has waited for predictions since the stream started."""
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
