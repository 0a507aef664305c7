"""Replay a bench bag offline through the core and score it (no middleware).

One trial: the bag's frames in an order set by the trial's seed (``numpy``
``Generator(seed).permutation``, or bag order with ``shuffle=False``), cut into batches
of ``batch_size`` frames; each batch is one :meth:`Segmenter.segment` call at the
protocol resolution, scored against the ground truth resized (nearest neighbour) to
the same size and accumulated over the whole split with :class:`SegmentationMetrics`.
Episodic methods reset before every batch (the core does that); a trial starts from
the source weights, so continual adaptation carries over batches but never trials.

The frames are decoded and resized once (:func:`load_frames`) and shared by every
method and trial of a scenario, so the bench measures the model, not the bag reader.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ...core.segmenter import Segmenter
from .frames import BenchFrames, progress_bar
from .options import RunError
from .tally import TrialTally


@dataclass
class TrialResult:
    """Scores and diagnostics of one trial; ``examples`` holds arrays kept out of the JSON."""

    seed: int
    shuffle: bool
    batch_size: int
    frames: int
    batches: int
    metrics: dict[str, Any]
    metrics_state: dict[str, Any]
    timing: dict[str, Any]
    loss_per_step: list[float | None]
    layer_weights: dict[str, list] | None
    adaptation_status: dict[str, int]
    notes: dict[str, Any]
    trainable_parameters: int
    unit_areas: dict[str, list] | None = None  # per-frame per-class intersection and union (bag order)
    examples: dict[str, np.ndarray] = field(default_factory=dict)

    def record_fields(self) -> dict[str, Any]:
        """The fields a trial record takes from it: every field but the example arrays (kept out of the JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "examples"}


_KEPT_SCORES = (
    "mIoU", "mAcc", "mDice", "aAcc", "raw", "IoU", "Acc", "Dice", "valid_classes", "pixels", "out_of_range_pixels",
    "images",
)  # fmt: skip


def trial_order(count: int, seed: int, shuffle: bool) -> np.ndarray:
    """The frame order of a trial: a seeded permutation, or bag order."""
    return np.random.default_rng(seed).permutation(count) if shuffle else np.arange(count)


def check_classes(segmenter: Segmenter, info: Mapping[str, Any]) -> None:
    """Refuse a segmenter whose class list is not the bag's (the scores would be nonsense)."""
    names = list(segmenter.class_names)
    expected = list(info.get("class_names") or [])
    if len(names) != int(info["num_classes"]) or (expected and names != expected):
        raise RunError(
            f"the segmenter's {len(names)} classes ({', '.join(names[:4])}, ...) are not the bag's "
            f"{info['num_classes']} classes of '{info['class_key']}'; the bag and this installation's class lists differ"
        )


def run_trial(
    segmenter: Segmenter,
    frames: BenchFrames,
    *,
    seed: int,
    batch_size: int,
    shuffle: bool = True,
    examples: int = 0,
    progress: bool = False,
    desc: str = "",
) -> TrialResult:
    """One trial of ``segmenter`` over ``frames`` (see module docs)."""
    check_classes(segmenter, frames.info)
    count = len(frames)
    order = trial_order(count, seed, shuffle)
    segmenter.reset()  # every trial starts from the source weights (continual mode too)
    torch.manual_seed(seed)
    tally = TrialTally(frames, min(examples, count))
    bar = progress_bar(count, desc or f"seed {seed}", progress, unit="img")
    started = time.perf_counter()
    try:
        for start in range(0, count, batch_size):
            idx = order[start : start + batch_size]
            result = segmenter.segment([frames.images[i] for i in idx], output="processing")
            tally.add(frames, idx, result)
            bar.update(len(idx))
    finally:
        bar.close()
    wall = time.perf_counter() - started
    tally.keep_inputs(frames)
    scores = tally.metrics.compute()
    return TrialResult(
        seed=int(seed),
        shuffle=bool(shuffle),
        batch_size=int(batch_size),
        frames=count,
        batches=tally.batches,
        metrics={k: scores[k] for k in _KEPT_SCORES},
        metrics_state=tally.metrics.state(),
        timing=tally.timing(frames, wall),
        loss_per_step=tally.losses.means(),
        layer_weights=tally.weights.summary(getattr(segmenter, "layers", ())),
        adaptation_status=dict(tally.statuses),
        notes=dict(segmenter.method.describe()),
        trainable_parameters=int(segmenter.method.parameter_count()),
        unit_areas=tally.unit_areas(),
        examples=tally.kept,
    )
