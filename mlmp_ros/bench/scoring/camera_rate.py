"""Scoring at camera rate: every camera frame against the labels on the topic when it arrived.

One function serves the simulated stream (``mlmp-bench stream``, times on a simulated
clock) and the live run through the node (``mlmp-bench replay-live``, send and receive
times measured on the harness's monotonic clock), so both report the same thing:

- a camera frame is scored with the newest labels *published* (simulated) or *received*
  (live) at or before the time the frame *arrived* (simulated) or *was sent* (live);
  stale labels count as they are, a frame the system dropped is scored with what was on
  the topic, and a frame that came before any labels counts as all wrong (every pixel
  predicted as a class that does not exist);
- a processed frame is also scored with its own labels (mIoU of the processed frames);
- the first and last 10% of the stream and each segment (a bag of a chain, a corruption
  of a sequence) get their own camera-rate mIoU.

Labels of another size than the ground truth are resized to it (nearest neighbour), as
the offline runner does.  Times are plain floats in seconds on one clock; the labels of
a publication are integer class indices.

It also holds the check that bags may be chained into one stream (same classes, same
window protocol), shared by both commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .metrics import SegmentationMetrics

Publication = tuple[float, int, np.ndarray]
"""(time the labels were published / received, index of the frame they were predicted on, labels)."""

EPSILON_S = 1e-9  # labels published at the very time a frame arrives are on the topic for it


def score_camera_rate(
    truth: Sequence[np.ndarray],
    arrival: Sequence[float],
    published: Iterable[Publication],
    *,
    num_classes: int,
    ignore_index: int = 255,
    class_names: Sequence[str] | None = None,
    segments: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Camera-rate and processed-frame scores of one stream (JSON-ready, see the module docs).

    ``truth[i]`` and ``arrival[i]`` are frame ``i``'s ground truth and arrival (send) time;
    ``segments[i]`` names its segment (default: one segment, ``"stream"``).  Returns
    ``miou_camera``, ``miou_processed``, ``miou_camera_first10``, ``miou_camera_last10``,
    ``metrics_camera`` / ``metrics_processed`` (the full :class:`SegmentationMetrics`
    results; ``metrics_processed`` is None when no frame was processed),
    ``frames``, ``frames_scored_processed``, ``frames_without_labels``,
    ``label_age_frames_median`` / ``_max`` (frame index minus the index the shown labels
    were predicted on), ``segments`` (camera-rate and processed mIoU per segment, in order
    of first appearance) and ``timeline`` (per camera frame: the frame whose labels were
    shown, or None, the pixel accuracy of what was shown, and the per-class intersection
    and union of what was shown, ``inter`` / ``union``, from which a pooled camera-rate
    mIoU and its interval over frames are computed).
    """
    n = len(truth)
    seg_of = _segment_of_frames(n, arrival, segments)
    scores = _CameraRateScores(n, seg_of, num_classes, ignore_index, class_names)
    by_time = sorted(published, key=lambda p: p[0])  # stable: equal times keep their order
    own: dict[int, np.ndarray] = {}
    for _, k, labels in by_time:
        own[int(k)] = labels
    j = -1
    for i in range(n):
        while j + 1 < len(by_time) and by_time[j + 1][0] <= arrival[i] + EPSILON_S:
            j += 1
        scores.add(i, truth[i], by_time[j] if j >= 0 else None, own.get(i))
    return scores.result()


def _segment_of_frames(n: int, arrival: Sequence[float], segments: Sequence[str] | None) -> list[str]:
    """Each frame's segment name, after checking the per-frame sequences match ``n`` frames."""
    if len(arrival) != n:
        raise ValueError(f"{len(arrival)} arrival times for {n} frames")
    if segments is not None and len(segments) != n:
        raise ValueError(f"{len(segments)} segment names for {n} frames")
    return list(segments) if segments is not None else ["stream"] * n


class _CameraRateScores:
    """The running camera-rate and processed-frame scores of one stream, frame by frame."""

    def __init__(
        self,
        n: int,
        seg_of: list[str],
        num_classes: int,
        ignore_index: int,
        class_names: Sequence[str] | None,
    ) -> None:
        self.n = n
        self.seg_of = seg_of
        self.order = list(dict.fromkeys(seg_of))
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        names = list(class_names) if class_names else None

        def metrics() -> SegmentationMetrics:
            return SegmentationMetrics(num_classes, ignore_index, names)

        self.camera, self.processed, self.first, self.last = metrics(), metrics(), metrics(), metrics()
        self.seg_camera = {s: metrics() for s in self.order}
        self.seg_processed = {s: metrics() for s in self.order}
        self.tenth = max(1, n // 10)
        self.timeline: list[dict[str, Any]] = []
        self.ages: list[int] = []
        self.no_labels = 0

    def add(self, i: int, gt: np.ndarray, on_topic: Publication | None, own: np.ndarray | None) -> None:
        """Score frame ``i`` with the publication on the topic (None: none yet) and its own labels."""
        if on_topic is None:
            pred = np.full(gt.shape, self.num_classes, np.int32)  # nothing on the topic yet: all wrong
            shown = None
            self.no_labels += 1
        else:
            shown = int(on_topic[1])
            pred = _at(on_topic[2], gt.shape)
            self.ages.append(i - shown)
        segment = self.seg_of[i]
        self.camera.update(pred, gt)
        if i < self.tenth:
            self.first.update(pred, gt)
        if i >= self.n - self.tenth:
            self.last.update(pred, gt)
        self.seg_camera[segment].update(pred, gt)
        valid = gt != self.ignore_index
        acc = float((pred[valid] == gt[valid]).mean()) if valid.any() else None
        if own is not None:
            mine = _at(own, gt.shape)
            self.processed.update(mine, gt)
            self.seg_processed[segment].update(mine, gt)
        frame = SegmentationMetrics(self.num_classes, self.ignore_index)
        frame.update(pred, gt)  # this frame's areas: intervals over frames are computed from them
        self.timeline.append({"frame": i, "segment": segment, "shown": shown, "pixel_acc": acc,
                              "inter": frame.intersection.tolist(), "union": frame.union.tolist()})  # fmt: skip

    def result(self) -> dict[str, Any]:
        """The JSON-ready scores (keys in :func:`score_camera_rate`)."""
        camera, processed, ages = self.camera.compute(), self.processed.compute(), self.ages
        scored_processed = self.processed.images
        return {
            "frames": self.n,
            "miou_camera": camera["mIoU"],
            "miou_processed": processed["mIoU"],
            # the first and last 10% of the stream (a collapse shows as the last far below the first
            # when both parts show the same conditions)
            "miou_camera_first10": self.first.compute()["mIoU"],
            "miou_camera_last10": self.last.compute()["mIoU"],
            "metrics_camera": camera,
            "metrics_processed": processed if scored_processed else None,
            "frames_scored_processed": scored_processed,
            "frames_without_labels": self.no_labels,
            "label_age_frames_median": float(np.median(ages)) if ages else None,
            "label_age_frames_max": max(ages) if ages else None,
            "segments": [
                {
                    "segment": s,
                    "miou_camera": self.seg_camera[s].compute()["mIoU"],
                    "miou_processed": (
                        self.seg_processed[s].compute()["mIoU"] if self.seg_processed[s].images else None
                    ),
                }
                for s in self.order
            ],
            "timeline": self.timeline,
        }


def _at(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if labels.shape == shape:
        return labels
    from ...core.windows import resize_labels

    return resize_labels(labels, shape)
