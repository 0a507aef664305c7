"""Several cameras (a robot's) served by one model in memory.

Each camera's stream of frames meets its own shift, so by default each camera has its own
adaptation state: its own method (optimiser, counters, resets, safeguards) and its own adapted
values of the parameters that adapt (LayerNorms: kilobytes), swapped into the one model before
its frame and saved after it.  The frozen weights, the text bank's encoder and every activation
buffer are shared.  ``share=True`` runs every camera through one state (one
:class:`ScheduledSegmenter`), as one camera would.

Frames of several cameras go through one forward pass (:meth:`MultiCameraSegmenter.segment_batch`)
when nothing adapts (mode off, 0 steps or a method that does not adapt) and every camera's
weights are the same (shared, or none adapted yet): the prediction is then the same as one
frame at a time.

Under ``async`` every state's adaptation thread shares one
:class:`~mlmp_ros.core.priority.Priority` (:attr:`MultiCameraSegmenter.priority`): a prediction of any
camera pauses all of them, and one of them steps at a time, in turn.  The node calls
``priority.frame_arrived(camera)`` / ``priority.frame_left(camera)`` around its queue.
Imports no ROS.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .priority import Priority
from .schedule import ScheduledResult, ScheduledSegmenter
from .segmenter import FrameResult, Segmenter


@dataclass
class AdaptationState:
    """One adaptation state: the segmenter view it runs, its schedule, its adapted values."""

    view: Segmenter
    scheduled: ScheduledSegmenter
    values: list[torch.Tensor]
    adapted: bool = False  # adaptation steps ran since the source (or the last reset)


def segmenter_view(seg: Segmenter) -> Segmenter:
    """``seg`` with a method of its own on the same model (shared encoder, text bank, layers);
    its source is ``seg``'s source, whatever the model's adaptable values are now."""
    view = copy.copy(seg)
    method = seg.method_cls(seg.encoder, seg.text, seg.config, seg.layers, seg.precision)
    method.take_source_from(seg.method)
    method.step_hook = seg.method.step_hook
    view.method = method
    return view


class MultiCameraSegmenter:
    """See the module docs; ``names`` are the cameras, in order."""

    def __init__(self, seg: Segmenter, names: Sequence[str], *, share: bool = False, threaded: bool = True):
        if not names:
            raise ValueError("MultiCameraSegmenter needs at least one camera name")
        self.seg = seg
        self.names = tuple(names)
        self.shared = share
        self.priority = Priority()  # one for every state's adaptation thread (they share the model)
        source = seg.method.source_weights()
        self._load_values(seg, source)  # every state starts at the source
        if share:
            one = AdaptationState(seg, ScheduledSegmenter(seg, threaded=threaded, priority=self.priority),
                                  [t.clone() for t in source])
            self.states = dict.fromkeys(self.names, one)
        else:
            self.states = {}
            for name in self.names:
                view = segmenter_view(seg)
                scheduled = ScheduledSegmenter(view, threaded=threaded, priority=self.priority)
                self.states[name] = AdaptationState(view, scheduled, [t.clone() for t in source])
        self._in_model: AdaptationState | None = None

    # ------------------------------------------------------------- weights
    @staticmethod
    def _load_values(seg: Segmenter, values: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for (_, p), v in zip(seg.method.named_params, values):
                p.copy_(v)

    def _enter(self, state: AdaptationState) -> None:
        """Put ``state``'s adapted values into the model (unless they are there already)."""
        if self._in_model is not state:
            self._load_values(state.view, state.values)
            self._in_model = state

    def _leave(self, state: AdaptationState) -> None:
        state.values = [p.detach().clone() for _, p in state.view.method.named_params]

    def distinct(self) -> list[AdaptationState]:
        """Each state once (one when shared)."""
        return list({id(s): s for s in self.states.values()}.values())

    # -------------------------------------------------------------- frames
    def scheduled(self, name: str) -> ScheduledSegmenter:
        """Camera ``name``'s segmenter under its schedule (one for every camera when shared)."""
        return self.states[name].scheduled

    def view(self, name: str) -> Segmenter:
        return self.states[name].view

    def segment(self, name: str, images: list[np.ndarray], **kwargs: Any) -> ScheduledResult:
        """Camera ``name``'s frame under its own state and schedule."""
        state = self.states[name]
        self._enter(state)
        try:
            result = state.scheduled.segment(images, **kwargs)
        finally:
            self._leave(state)
        state.adapted = state.adapted or bool(result.result.losses)
        return result

    def batchable(self) -> bool:
        """Whether :meth:`segment_batch` gives what one frame at a time would."""
        adaptation = self.seg.config.adaptation
        adapts = adaptation.mode != "off" and adaptation.steps > 0 and self.seg.method_cls.adapts
        return not adapts and (self.shared or not any(s.adapted for s in self.distinct()))

    def segment_batch(self, images: list[np.ndarray], **kwargs: Any) -> tuple[list[FrameResult], dict[str, float]]:
        """Several cameras' frames in one forward pass (only when :meth:`batchable`); their results
        in order and the batch's timings."""
        if not self.batchable():
            raise RuntimeError("frames can be batched only when nothing adapts")
        state = self.states[self.names[0]]
        self._enter(state)
        result = state.view.segment(images, **kwargs)
        return result.frames, result.timings

    # ------------------------------------------------------------- control
    def reset(self, name: str | None = None) -> None:
        """Camera ``name``'s state (None: every state) back to the source weights."""
        for state in self.distinct() if name is None else [self.states[name]]:
            self._enter(state)
            state.scheduled.reset()
            self._leave(state)
            state.adapted = False

    def update(self, **changes: Any) -> None:
        """Run-time changes (ScheduledSegmenter.update's), applied to every state."""
        for state in self.distinct():
            self._enter(state)
            state.scheduled.update(**changes)
            self._leave(state)
        self.seg.config = self.distinct()[0].view.config

    def weight_shift(self, name: str) -> float:
        """L2 distance of camera ``name``'s adapted values from the source (0: not adapted)."""
        state = self.states[name]
        source = state.view.method.source_weights()
        total = sum(float(((v.float() - s.float()) ** 2).sum()) for v, s in zip(state.values, source))
        return math.sqrt(total)

    def close(self) -> None:
        for state in self.distinct():
            state.scheduled.close()
