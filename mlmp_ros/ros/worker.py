"""The node's worker thread: the one thread that runs the model, for every camera.

It takes work from the :class:`~mlmp_ros.ros.inbox.Inbox`: run-time changes (applied to every
camera's adaptation state, then ``label_info`` published on every camera before any label of
the new class list), resets and calls first; then the cameras' newest frames, round robin,
each checked, converted, segmented under its camera's adaptation state
(:class:`~mlmp_ros.core.multicamera.MultiCameraSegmenter`; same-size frames share one forward pass when
nothing adapts), passed through the class-change gate and published on its camera's topics.
``input.max_rate_hz`` holds it back between frames (frames replaced meanwhile count as
``rate_cap``).  An exception in a frame is counted on its camera and never ends the worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.methods.guards import AdaptationCancelled
from ..core.multicamera import MultiCameraSegmenter
from ..core.segmenter import FrameLimitError
from .conversions import BadFrame
from .diagnostics import stamp_age
from .gate import LABEL_SETTINGS, LabelGate
from .inbox import Inbox, ReceivedFrame, ResetRequest, Work
from .pipeline import WARN_THROTTLE, CameraPipeline


class Worker:
    """See the module docs.  ``settings``: a callable giving the node's settings now."""

    def __init__(self, multicamera: MultiCameraSegmenter, inbox: Inbox, pipelines: dict[str, CameraPipeline],
                 gate: LabelGate, *, settings: Callable[[], Any], logger: Any, stopping: threading.Event) -> None:
        self.multicamera = multicamera
        self.inbox = inbox
        self.pipelines = pipelines
        self.gate = gate
        self._settings = settings
        self._logger = logger
        self._stopping = stopping
        self._idle_since = time.perf_counter()
        self._last_start: float | None = None  # perf_counter when frames were last taken (input.max_rate_hz)
        self.thread = threading.Thread(target=self._run, name="mlmp_segment_worker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> bool:
        """Wait for the worker to end (after the inbox closed); False if it did not in time."""
        if self.thread.is_alive():
            self.thread.join(timeout=timeout)
        return not self.thread.is_alive()

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        while True:
            if not self._hold_to_rate():
                return
            work = self.inbox.get(len(self.pipelines) if self.multicamera.batchable() else 1)
            if work is None:
                return
            if work.frames:
                self._last_start = time.perf_counter()
            try:
                self._handle(work)
            except AdaptationCancelled:
                return  # the node is stopping
            except Exception as exc:  # noqa: BLE001 - a frame must never end the worker
                if self._stopping.is_set():
                    return  # e.g. publishing after the context was shut down: not an error
                self._failed(work, exc)
            finally:
                self._give_back(work)
            self._idle_since = time.perf_counter()

    def _give_back(self, work: Work) -> None:
        """The worker is done with ``work``: a frame not accounted for yet (the node stopped while it was
        in progress) is dropped as inactive; every frame stops holding adaptation back."""
        for name, frame in work.frames:
            counters = self.pipelines[name].counters
            if not frame.finished:
                frame.finished = True
                counters.drop("inactive")
            counters.busy(None)
            self.multicamera.priority.frame_left(name)

    def _failed(self, work: Work, exc: Exception) -> None:
        for name, frame in work.frames:
            if not frame.finished:
                frame.finished = True
                self.pipelines[name].counters.frame_error(f"{type(exc).__name__}: {exc}")
        self._logger.error(f"processing failed ({type(exc).__name__}: {exc}); waiting for the next frame",
                           throttle_duration_sec=WARN_THROTTLE)

    def _hold_to_rate(self) -> bool:
        """input.max_rate_hz: wait until frames may be taken again (frames arriving meanwhile replace the
        waiting ones: counted as rate_cap); False when the node stops meanwhile."""
        rate = self._settings().max_rate_hz
        if rate > 0 and self._last_start is not None:
            wait = self._last_start + 1.0 / rate - time.perf_counter()
            if wait > 0:
                self.inbox.holding = True
                try:
                    if self._stopping.wait(wait):
                        return False
                finally:
                    self.inbox.holding = False
        return True

    def _handle(self, work: Work) -> None:
        if work.changes:
            self._apply_changes(work.changes)
        for request in work.resets:
            self._reset(request)
        for call in work.calls:
            call()
        if work.frames:
            self._process(work.frames)

    # ------------------------------------------------------- changes, resets
    def _apply_changes(self, changes: dict[str, Any]) -> None:
        self.multicamera.update(**changes)
        self._logger.info("applied " + ", ".join(f"{k}={v}" for k, v in changes.items()))
        if any(name in changes for name in LABEL_SETTINGS):
            self.publish_label_info()  # before any label of the new meaning
            self.gate.applied(changes)

    def publish_label_info(self) -> None:
        for name, pipe in self.pipelines.items():
            view = self.multicamera.view(name)
            pipe.publish_label_info(view.class_names, view.status().synonyms)

    def _reset(self, request: ResetRequest) -> None:
        try:
            self.multicamera.reset(request.camera or None)
            if len(self.pipelines) == 1 and not request.camera:
                resets = self.multicamera.scheduled(next(iter(self.pipelines))).counters()["resets_total"]
                request.answer(True, f"adapted parameters are back to the source weights (reset {resets})")
                return
            which = "every camera" if not request.camera else f"camera {request.camera}"
            shared = " (adaptation is shared: every camera)" if self.multicamera.shared and request.camera else ""
            request.answer(True, f"{which} back to the source weights{shared}")
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            request.answer(False, f"reset failed: {type(exc).__name__}: {exc}")

    # ---------------------------------------------------------------- frames
    def _process(self, frames: list[tuple[str, ReceivedFrame]]) -> None:
        """Check and convert every frame taken, segment them (one pass for same-size frames when
        batchable), publish each through the gate."""
        taken = time.perf_counter()
        adaptation = self.multicamera.seg.config.adaptation  # a frame's time depends on it: the watchdog's regime
        regime = f"{adaptation.schedule}/{adaptation.mode}/{adaptation.steps}"
        ready = []
        for name, frame in frames:
            pipe = self.pipelines[name]
            pipe.counters.busy(time.monotonic(), regime)
            rgb = pipe.convert(frame.msg)
            if rgb is None:
                frame.finished = True  # counted as bad
            else:
                ready.append((pipe, frame, rgb))
        converted = time.perf_counter()
        for group in self._groups(ready):
            if self._stopping.is_set():
                return
            for (pipe, frame, rgb), run in zip(group, self._segment(group)):
                self._finish(pipe, frame, rgb, run, (taken, converted))

    def _groups(self, ready: list) -> list[list]:
        """Same-size frames together when they can share a forward pass, else one by one."""
        if len(ready) < 2 or not self.multicamera.batchable():
            return [[item] for item in ready]
        groups: dict[tuple, list] = {}
        for item in ready:
            groups.setdefault(item[2].shape, []).append(item)
        return list(groups.values())

    def _segment(self, group: list) -> list[tuple | None]:
        """(frame result, timings, (steps, last loss, status)) per frame of the group; None for the frames
        the core refuses (more windows than input.max_windows: counted as bad frames)."""
        try:
            if len(group) == 1:
                pipe, _, rgb = group[0]
                r = self.multicamera.segment(pipe.name, [rgb], output="input").result
            else:
                outs, timings = self.multicamera.segment_batch([rgb for _, _, rgb in group], output="input")
        except FrameLimitError as exc:  # the group's frames share one size: all are refused
            for pipe, frame, _ in group:
                pipe.bad_frame(BadFrame(f"{exc} (input.max_windows)", limit="input.max_windows"))
                frame.finished = True
            return [None] * len(group)
        if len(group) > 1:
            # Each frame waited for the whole pass: its model time is the pass's (model_ms, not a share of it).
            return [(out, timings, (0, None, f"batched x{len(group)}")) for out in outs]
        self._report_resets(pipe)
        if r.status.startswith("restored"):
            self._logger.warning(f"{pipe.label}adaptation failed on this frame ({r.status}); published the "
                                 "prediction of the last good weights", throttle_duration_sec=WARN_THROTTLE)
        return [(r.frames[0], r.timings, (len(r.losses), r.losses[-1] if r.losses else None, r.status))]

    def _finish(self, pipe: CameraPipeline, frame: ReceivedFrame, rgb: Any, run: tuple | None, marks: tuple) -> None:
        if run is None or self._stopping.is_set():
            return  # refused (counted), or stopping: the context may be gone
        out, timings, adaptation = run
        segmented = time.perf_counter()
        frame.finished = True
        if not self.gate.publish_if_current(lambda: pipe.publish(out, rgb, frame.msg.header)):
            pipe.counters.drop("class_change")
            return
        published = time.perf_counter()
        taken, converted = marks
        ready = max(frame.received, self._idle_since)
        # What the node adds to the segmenter: waking the worker, converting, publishing.
        overhead = {"wake": taken - ready, "convert": converted - taken, "publish": published - segmented,
                    "total": max(0.0, published - ready - timings["total"])}
        pipe.counters.frame_done(latency=published - frame.received, stamp_age=stamp_age(frame.msg.header),
                                 took=published - taken, model=timings["total"], overhead=overhead,
                                 adaptation=adaptation)

    def _report_resets(self, pipe: CameraPipeline) -> None:
        """Log the continual resets (by reason) since the camera's last frame."""
        reasons = self.multicamera.scheduled(pipe.name).counters()["resets"]
        new = {k: v - pipe.resets_seen.get(k, 0) for k, v in reasons.items() if v != pipe.resets_seen.get(k, 0)}
        pipe.resets_seen = reasons
        if any(k != "manual" for k in new):
            self._logger.warning(f"{pipe.label}adaptation reset to the source weights: " +
                                 ", ".join(f"{k} x{v}" for k, v in new.items()))  # fmt: skip
