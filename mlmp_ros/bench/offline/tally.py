"""What one trial accumulates batch by batch: scores, losses, layer weights, statuses, time, kept examples."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..scoring.metrics import SegmentationMetrics
from ..scoring.unit_areas import encode_unit_areas
from .frames import BenchFrames


class StepMeans:
    """Per-index means of lists of varying length, ignoring non-finite values."""

    def __init__(self) -> None:
        self.sums: list[float] = []
        self.counts: list[int] = []

    def add(self, values: Sequence[float]) -> None:
        for i, v in enumerate(values):
            if i == len(self.sums):
                self.sums.append(0.0)
                self.counts.append(0)
            if math.isfinite(v):
                self.sums[i] += float(v)
                self.counts[i] += 1

    def means(self) -> list[float | None]:
        return [s / c if c else None for s, c in zip(self.sums, self.counts)]


class LayerWeightStats:
    """Mean and standard deviation per layer of the (S, windows) entropy weights."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.squares: np.ndarray | None = None
        self.count = 0

    def add(self, weights: np.ndarray | None) -> None:
        if weights is None:
            return
        w = np.asarray(weights, dtype=np.float64).reshape(weights.shape[0], -1)
        if self.total is None:
            self.total, self.squares = np.zeros(w.shape[0]), np.zeros(w.shape[0])
        self.total += w.sum(1)
        self.squares += (w * w).sum(1)
        self.count += w.shape[1]

    def summary(self, layers: Sequence[int]) -> dict[str, list] | None:
        if self.total is None or not self.count:
            return None
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.squares / self.count - mean * mean, 0.0))
        return {"layers": [int(v) for v in layers], "mean": mean.tolist(), "std": std.tolist()}


class TrialTally:
    """What one trial accumulates batch by batch: scores, losses, layer weights, statuses, time, kept examples."""

    def __init__(self, frames: BenchFrames, keep: int) -> None:
        self.metrics = SegmentationMetrics(frames.num_classes, frames.ignore_index, frames.info.get("class_names"))
        # Each frame's per-class intersection and union, in bag order: the units of the report's intervals.
        self.unit_intersection = np.zeros((len(frames), frames.num_classes), dtype=np.int64)
        self.unit_union = np.zeros((len(frames), frames.num_classes), dtype=np.int64)
        self.losses = StepMeans()
        self.weights = LayerWeightStats()
        self.statuses: Counter[str] = Counter()
        self.stages = {"prepare": 0.0, "model": 0.0, "post": 0.0, "total": 0.0}
        self.score_s = 0.0
        self.keep = keep
        self.kept: dict[str, np.ndarray] = {}
        self.batches = 0

    def add(self, frames: BenchFrames, idx: np.ndarray, result: Any) -> None:
        """Score one batch's frames (timing the scoring) and take in the segmenter's report on it."""
        t0 = time.perf_counter()
        for i, frame in zip(idx, result.frames):
            one = SegmentationMetrics(self.metrics.num_classes, self.metrics.ignore_index)
            one.update(frame.labels, frames.labels[i])
            self.metrics.merge(one)
            self.unit_intersection[i], self.unit_union[i] = one.intersection, one.union
            if i < self.keep:
                self.kept[f"prediction_{i}"] = frame.labels
        self.score_s += time.perf_counter() - t0
        for key in self.stages:
            self.stages[key] += float(result.timings.get(key, 0.0))
        self.losses.add(result.losses)
        self.weights.add(result.layer_weights)
        self.statuses[result.status] += 1
        self.batches += 1

    def unit_areas(self) -> dict[str, Any]:
        """Per-frame per-class intersection and union (pixels, bag order), for bootstrap intervals over frames."""
        return encode_unit_areas(self.unit_intersection, self.unit_union)

    def keep_inputs(self, frames: BenchFrames) -> None:
        """The kept examples' images and ground truth beside their predictions."""
        for i in range(self.keep):
            self.kept[f"image_{i}"] = frames.images[i]
            self.kept[f"labels_{i}"] = frames.labels[i]

    def timing(self, frames: BenchFrames, wall: float) -> dict[str, Any]:
        """Per-frame time of the segmenter's stages and of the harness around it."""
        stages, score_s = self.stages, self.score_s
        per = 1.0 / len(frames)
        decode, resize = frames.decode_s * per, frames.resize_s * per
        loop = max(wall - stages["total"] - score_s, 0.0) * per
        harness = decode + resize + score_s * per + loop
        spent = stages["total"] * per + harness
        return {
            "trial_wall_s": wall,
            "model_s_per_frame": stages["model"] * per,
            "segmenter_s_per_frame": {k: v * per for k, v in stages.items()},
            # decode and resize are paid once per bag and shared by every method and trial
            "harness_s_per_frame": {
                "decode": decode,
                "resize": resize,
                "score": score_s * per,
                "loop": loop,
                "total": harness,
            },
            "model_fraction": stages["model"] * per / spent if spent > 0 else None,
        }
