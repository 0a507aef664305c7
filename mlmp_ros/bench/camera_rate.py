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

from collections.abc import Iterable, Mapping, Sequence
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
    shown, or None, and the pixel accuracy of what was shown).
    """
    n = len(truth)
    if len(arrival) != n:
        raise ValueError(f"{len(arrival)} arrival times for {n} frames")
    if segments is not None and len(segments) != n:
        raise ValueError(f"{len(segments)} segment names for {n} frames")
    seg_of = list(segments) if segments is not None else ["stream"] * n
    order = list(dict.fromkeys(seg_of))
    names = list(class_names) if class_names else None

    def metrics() -> SegmentationMetrics:
        return SegmentationMetrics(num_classes, ignore_index, names)

    camera, processed, first, last = metrics(), metrics(), metrics(), metrics()
    seg_camera = {s: metrics() for s in order}
    seg_processed = {s: metrics() for s in order}
    tenth = max(1, n // 10)
    by_time = sorted(published, key=lambda p: p[0])  # stable: equal times keep their order
    own: dict[int, np.ndarray] = {}
    for _, k, labels in by_time:
        own[int(k)] = labels
    timeline: list[dict[str, Any]] = []
    ages: list[int] = []
    j = -1
    no_labels = 0
    for i in range(n):
        gt = truth[i]
        while j + 1 < len(by_time) and by_time[j + 1][0] <= arrival[i] + EPSILON_S:
            j += 1
        if j < 0:
            pred = np.full(gt.shape, num_classes, np.int32)  # nothing on the topic yet: all wrong
            shown = None
            no_labels += 1
        else:
            shown = int(by_time[j][1])
            pred = _at(by_time[j][2], gt.shape)
            ages.append(i - shown)
        camera.update(pred, gt)
        if i < tenth:
            first.update(pred, gt)
        if i >= n - tenth:
            last.update(pred, gt)
        seg_camera[seg_of[i]].update(pred, gt)
        valid = gt != ignore_index
        acc = float((pred[valid] == gt[valid]).mean()) if valid.any() else None
        if i in own:
            mine = _at(own[i], gt.shape)
            processed.update(mine, gt)
            seg_processed[seg_of[i]].update(mine, gt)
        timeline.append({"frame": i, "segment": seg_of[i], "shown": shown, "pixel_acc": acc})
    scored_processed = processed.images
    return {
        "frames": n,
        "miou_camera": camera.compute()["mIoU"],
        "miou_processed": processed.compute()["mIoU"],
        # the first and last 10% of the stream (a collapse shows as the last far below the first
        # when both parts show the same conditions)
        "miou_camera_first10": first.compute()["mIoU"],
        "miou_camera_last10": last.compute()["mIoU"],
        "metrics_camera": camera.compute(),
        "metrics_processed": processed.compute() if scored_processed else None,
        "frames_scored_processed": scored_processed,
        "frames_without_labels": no_labels,
        "label_age_frames_median": float(np.median(ages)) if ages else None,
        "label_age_frames_max": max(ages) if ages else None,
        "segments": [
            {
                "segment": s,
                "miou_camera": seg_camera[s].compute()["mIoU"],
                "miou_processed": seg_processed[s].compute()["mIoU"] if seg_processed[s].images else None,
            }
            for s in order
        ],
        "timeline": timeline,
    }


def _at(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if labels.shape == shape:
        return labels
    from ..core.windows import resize_labels

    return resize_labels(labels, shape)


# ------------------------------------------------------------------ chains
def segment_name(info: Mapping[str, Any]) -> str:
    """A bag's name in a chained stream: ``dataset/corruption``."""
    return f"{info.get('dataset')}/{info.get('corruption')}"


def check_chain(bags: Sequence[tuple[Any, Mapping[str, Any]]]) -> None:
    """Refuse (``RunError``) a chain of ``(path, info)`` bags whose classes or window protocol differ.

    A stream is scored with one class list and run with one window protocol, so every
    bag must share the first one's; the message names both bags and what differs.
    """
    from .runner import RunError

    if not bags:
        raise RunError("a stream needs at least one bag")
    path0, info0 = bags[0]
    for path, info in bags[1:]:
        what = []
        if info.get("class_key") != info0.get("class_key"):
            what.append(f"classes '{info.get('class_key')}' vs '{info0.get('class_key')}'")
        if info.get("protocol") != info0.get("protocol"):
            what.append(f"window protocol {info.get('protocol')} vs {info0.get('protocol')}")
        if what:
            raise RunError(f"cannot chain bag {path} after bag {path0}: {'; '.join(what)}; chained bags must "
                           "share the class list and the window protocol (e.g. cityscapes, acdc and gta5 bags "
                           "chain; voc20 and cityscapes do not)")  # fmt: skip
