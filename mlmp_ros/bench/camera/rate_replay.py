"""``mlmp-bench stream``: camera-rate replay, a camera stream replayed against a camera rate, scored at that rate.

A stream is one or several bench bags chained (e.g. clean -> fog -> night), or one bag
turned into a sequence of ImageNet-C corruptions (``--sequence corruptions``: the 15 in
turn at one severity, as continual ImageNet-C; ``severity``: one corruption at severity
1 -> 5 -> 1; ``mixed``: a seeded random corruption and severity per frame).  Frames
arrive at ``--rate`` Hz.  The segmenter (core, through
:class:`~mlmp_ros.core.schedule.ScheduledSegmenter`) runs for real; a simulated clock
advances by the measured time of each prediction and adaptation (or by fixed costs,
``--clock fixed:PREDICT_MS,STEP_MS``, which makes a run exactly repeatable):

- ``sync``: when the segmenter is free it takes the newest frame that has arrived
  (older ones are dropped), adapts and predicts; its labels are published when done.
- ``async``: the prediction side takes the newest frame, predicts it with the newest
  adapted weights that were ready when the prediction started and publishes; the
  adaptation side takes the newest frame the prediction side has finished and adapts
  on it; both run side by side on the simulated clock (each with half the CPU threads,
  as in the node).

Every camera frame is scored against the newest labels published by the time it
arrives (stale labels count; a dropped frame is scored with what was on the topic;
before the first labels, every pixel counts as wrong): mIoU at camera rate.  Processed
frames are also scored with their own labels: mIoU of the processed frames.  Latency
is the publication time minus the arrival time of the processed frames.  The scoring is
:func:`~mlmp_ros.bench.scoring.camera_rate.score_camera_rate`, which ``replay-live`` uses too
with the times measured through the node.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.config import Config
from ...core.schedule import Published, ScheduledSegmenter
from ...core.segmenter import Segmenter
from ..data.corruptions import CORRUPTIONS, corrupt_image
from ..offline.frames import load_frames
from ..offline.options import RunError, segmenter_config
from ..scoring.camera_rate import score_camera_rate
from .chain import SEQUENCES, check_chain, segment_name


@dataclass
class StreamFrame:
    """One camera frame of a ``stream`` replay (:func:`build_stream`), at the scoring size, with its segment."""

    image: np.ndarray
    labels: np.ndarray
    segment: str


@dataclass
class StreamData:
    frames: list[StreamFrame]
    segments: list[str]
    info: dict[str, Any]


# ------------------------------------------------------------------ streams
def build_stream(
    bags: list[str],
    *,
    sequence: str = "chain",
    corruption: str = "fog",
    frames_per_segment: int | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> StreamData:
    """The frames of a stream (see module docs); images and labels at the scoring size."""
    if sequence not in SEQUENCES:
        raise RunError(f"--sequence must be one of {', '.join(SEQUENCES)}, not '{sequence}'")
    per_bag = [load_frames(b, limit=limit) for b in bags]
    info = per_bag[0].info
    check_chain([(f.bag_path, f.info) for f in per_bag])
    frames: list[StreamFrame] = []
    segments: list[str] = []
    if sequence == "chain":
        for f in per_bag:
            name = segment_name(f.info)
            n = frames_per_segment or len(f)
            segments.append(name)
            frames += [StreamFrame(f.images[i % len(f)], f.labels[i % len(f)], name) for i in range(n)]
        return StreamData(frames, segments, dict(info))
    base = per_bag[0]
    n = frames_per_segment or len(base)
    if sequence == "corruptions":
        plan = [(c, 5) for c in CORRUPTIONS]
    elif sequence == "severity":
        plan = [(corruption, s) for s in (1, 2, 3, 4, 5, 4, 3, 2, 1)]
    else:
        rng = np.random.default_rng(seed)
        plan = [(str(rng.choice(CORRUPTIONS)), int(rng.integers(1, 6))) for _ in range(len(CORRUPTIONS))]
    k = 0
    for c, s in plan:
        name = f"{c}-{s}"
        segments.append(name)
        for _ in range(n if sequence != "mixed" else max(1, n // 3)):
            i = k % len(base)
            frames.append(StreamFrame(corrupt_image(base.images[i], c, s, seed=k), base.labels[i], name))
            k += 1
    return StreamData(frames, segments, dict(info))


# ------------------------------------------------------------------ clock
class Clock:
    """Seconds a prediction or an adaptation job takes: measured, or fixed costs."""

    def __init__(self, spec: str = "measured"):
        self.spec = spec
        self.fixed: tuple[float, float] | None = None
        if spec != "measured":
            kind, _, values = spec.partition(":")
            try:
                predict_ms, step_ms = (float(v) for v in values.split(","))
            except ValueError:
                raise RunError(f"--clock takes 'measured' or 'fixed:PREDICT_MS,STEP_MS', not '{spec}'") from None
            if kind != "fixed" or predict_ms <= 0 or step_ms < 0:
                raise RunError(f"--clock takes 'measured' or 'fixed:PREDICT_MS,STEP_MS', not '{spec}'")
            self.fixed = (predict_ms / 1000.0, step_ms / 1000.0)

    def cost(self, measured: float, predictions: int, steps: int) -> float:
        if self.fixed is None:
            return measured
        return predictions * self.fixed[0] + steps * self.fixed[1]


# ------------------------------------------------------------------ replay
def replay_stream(
    stream: StreamData,
    config: Config,
    *,
    rate_hz: float = 10.0,
    clock: str = "measured",
    loaded=None,
    progress: bool = False,
    overrides: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Replay ``stream`` at ``rate_hz`` through a segmenter of ``config``; the JSON-ready report.

    ``overrides`` are applied after the bag's class list and window protocol (e.g. another
    window size for a timing run with another backbone).  ``stop_after``: end the replay
    once that many frames were processed (predicted) and score only the camera frames
    that arrived by the last publication (a latency run on a long stream).
    """
    if not (rate_hz > 0 and math.isfinite(rate_hz)):
        raise RunError(f"--rate must be a positive number of Hz, not {rate_hz}")
    cost = Clock(clock)
    config = segmenter_config(config, stream.info)
    if overrides:
        config = config.replace(**overrides)
    seg = Segmenter(config, loaded=loaded)
    torch.manual_seed(0)
    sched = ScheduledSegmenter(seg, threaded=False)
    try:
        return _replay(sched, stream, rate_hz, cost, progress, stop_after)
    finally:
        sched.close()


def _replay(sched: ScheduledSegmenter, stream: StreamData, rate: float, cost: Clock, progress: bool,
            stop_after: int | None = None) -> dict[str, Any]:  # fmt: skip
    budget = stop_after or math.inf
    info = stream.info
    nc, ignore = int(info["num_classes"]), int(info.get("ignore_index", 255))
    replay = _Replay(sched, stream, rate, cost)
    next_pred = _run_async(replay, budget) if replay.asynchronous else _run_sync(replay, budget)
    arrival, published = replay.arrival, replay.published
    if next_pred < replay.n and published:  # stopped early: the camera frames up to the last publication
        stream, arrival = _until_last_publication(stream, arrival, published)
    return _score(sched, stream, arrival, published, replay.per_frame, nc, ignore, rate, cost)


class _Replay:
    """One replay's state on the simulated clock: the camera's arrival times, what was published, each job."""

    def __init__(self, sched: ScheduledSegmenter, stream: StreamData, rate: float, cost: Clock) -> None:
        self.sched, self.stream, self.rate, self.cost = sched, stream, rate, cost
        self.n = len(stream.frames)
        self.arrival = [i / rate for i in range(self.n)]
        self.published: list[tuple[float, int, np.ndarray]] = []  # (time, frame predicted, labels)
        self.per_frame: list[dict[str, Any]] = []
        self.jobs: list[dict[str, Any]] = []  # adaptation jobs (async)
        self.asynchronous = sched.schedule == "async"
        self.steps_before = 0

    def newest_arrived(self, t: float, first: int) -> int:
        """The newest camera frame arrived by ``t``, and not before ``first``."""
        k = min(self.n - 1, math.floor(t * self.rate + 1e-9))
        return max(k, first)

    def predict(self, k: int, start: float) -> float:
        """Process frame ``k`` from ``start``: publish its labels, record it; its simulated duration."""
        sched, asynchronous = self.sched, self.asynchronous
        t0 = time.perf_counter()
        out = sched.predict_only([self.stream.frames[k].image], k, output="processing") if asynchronous else \
            sched.segment([self.stream.frames[k].image], output="processing")  # fmt: skip
        measured = time.perf_counter() - t0
        steps = sched.control.steps_total - self.steps_before
        self.steps_before = sched.control.steps_total
        d = self.cost.cost(measured, 1, 0 if asynchronous else steps)
        labels = out.result.frames[0].labels
        self.published.append((start + d, k, labels))
        self.per_frame.append({
            "frame": k, "start": start, "done": start + d, "latency": start + d - self.arrival[k],
            "lag": out.lag, "loss": out.result.losses[-1] if out.result.losses else None,
            "resets": sum(sched.method.reset_reasons.values()), "steps": steps,
        })  # fmt: skip
        return d

    def adapt(self, j: int, start: float) -> tuple[float, Published | None]:
        """Run an adaptation job on frame ``j`` from ``start``, record it; its simulated duration and weights."""
        sched = self.sched
        steps0 = sched.control.steps_total
        t0 = time.perf_counter()
        pub = sched.adapt_only([self.stream.frames[j].image], j)
        d = self.cost.cost(time.perf_counter() - t0, 0, sched.control.steps_total - steps0)
        self.steps_before = sched.control.steps_total
        self.jobs.append({"frame": j, "start": start, "seconds": d, "loss": pub.losses[-1] if pub and pub.losses
                          else None, "resets": sum(sched.method.reset_reasons.values())})  # fmt: skip
        return d, pub


def _run_sync(r: _Replay, budget: float) -> int:
    """Adapt-and-predict each newest frame when the last one is done; the next frame not processed."""
    t_pred, next_pred = 0.0, 0
    while next_pred < r.n and len(r.per_frame) < budget:
        start = max(t_pred, r.arrival[next_pred])
        k = r.newest_arrived(start, next_pred)
        t_pred = start + r.predict(k, start)
        next_pred = k + 1
    return next_pred


def _run_async(r: _Replay, budget: float) -> int:
    """Predict every newest frame while adaptation jobs run beside; the next frame not processed."""
    t_pred, next_pred = 0.0, 0
    t_adapt, last_adapted = 0.0, -1
    pending: list[tuple[float, Published]] = []
    while next_pred < r.n and len(r.per_frame) < budget:
        p_start = max(t_pred, r.arrival[next_pred])
        done = [(t, k) for t, k, _ in r.published if k > last_adapted]
        a_start = max(t_adapt, done[0][0]) if done else math.inf
        if a_start <= p_start:
            j = max(k for t, k in done if t <= a_start)
            d, pub = r.adapt(j, a_start)
            if pub is not None:
                pending.append((a_start + d, pub))
            t_adapt, last_adapted = a_start + d, j
            continue
        ready = [p for p in pending if p[0] <= p_start]
        if ready:
            r.sched.install(ready[-1][1])
            pending = [p for p in pending if p[0] > p_start]
        k = r.newest_arrived(p_start, next_pred)
        t_pred = p_start + r.predict(k, p_start)
        next_pred = k + 1
    for rec in r.per_frame:  # adaptation losses and resets on the prediction timeline
        rec["loss"] = next((j["loss"] for j in reversed(r.jobs) if j["start"] + j["seconds"] <= rec["start"]), None)
    return next_pred


def _until_last_publication(
    stream: StreamData, arrival: list[float], published: list[tuple[float, int, np.ndarray]]
) -> tuple[StreamData, list[float]]:
    """The stream and arrival times cut to the camera frames that arrived by the last publication."""
    end = max(t for t, _, _ in published)
    kept = max(1, sum(1 for a in arrival if a <= end + 1e-9))
    stream = StreamData(stream.frames[:kept], stream.segments, stream.info)
    stream.segments = [s for s in stream.segments if any(f.segment == s for f in stream.frames)]
    return stream, arrival[:kept]


def _score(sched, stream, arrival, published, per_frame, nc, ignore, rate, cost) -> dict[str, Any]:
    scores = score_camera_rate([f.labels for f in stream.frames], arrival, published, num_classes=nc,
                               ignore_index=ignore, class_names=stream.info.get("class_names"),
                               segments=[f.segment for f in stream.frames])  # fmt: skip
    lat = np.array([r["latency"] for r in per_frame])
    stats = sched.stats()
    return {
        "frames": len(stream.frames),
        "rate_hz": rate,
        "clock": cost.spec,
        "schedule": sched.schedule,
        "mode": sched.config.adaptation.mode,
        "method": sched.config.adaptation.method,
        "settings": {k: v for k, v in sched.config.flat().items() if k.startswith("adaptation.")},
        **{k: scores[k] for k in ("miou_camera", "miou_processed", "miou_camera_first10", "miou_camera_last10")},
        "frames_processed": len(per_frame),
        "frames_without_labels": scores["frames_without_labels"],
        "label_age_frames_median": scores["label_age_frames_median"],
        "latency_p50_s": float(np.percentile(lat, 50)) if len(lat) else None,
        "latency_p95_s": float(np.percentile(lat, 95)) if len(lat) else None,
        "resets": stats["resets"],
        "adaptation_steps": stats["steps"],
        "lag_frames_median": _median([r["lag"] for r in per_frame if r["lag"] is not None]),
        "segments": scores["segments"],
        "processed": per_frame,
        "timeline": scores["timeline"],
    }


def _median(values: list) -> float | None:
    return float(np.median(values)) if values else None


# ------------------------------------------------------------------ plots
def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """mIoU per segment, pixel accuracy at camera rate, loss and resets over the stream (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), constrained_layout=True)
    tl = report["timeline"]
    x = [r["frame"] for r in tl]
    acc = [np.nan if r["pixel_acc"] is None else r["pixel_acc"] for r in tl]
    ax = axes[0]
    ax.plot(x, acc, lw=0.8, label="pixel accuracy of the labels on the topic")
    bounds = [i for i in range(1, len(tl)) if tl[i]["segment"] != tl[i - 1]["segment"]]
    for i, b in enumerate(bounds):
        ax.axvline(b, color="grey", lw=0.5, label="next segment" if i == 0 else None)
    ax.set_ylabel("pixel accuracy")
    ax.legend(fontsize=7)
    ax.set_title(f"{report['method']} {report['schedule']} {report['mode']} at {report['rate_hz']} Hz: "
                 f"mIoU at camera rate {report['miou_camera']:.3f}")  # fmt: skip
    segs = report["segments"]
    axes[1].bar(range(len(segs)), [s["miou_camera"] or 0 for s in segs], label="camera rate")
    axes[1].plot(range(len(segs)), [s["miou_processed"] or np.nan for s in segs], "k.", label="processed frames")
    axes[1].set_xticks(range(len(segs)), [s["segment"] for s in segs], rotation=30, ha="right", fontsize=7)
    axes[1].set_ylabel("mIoU per segment")
    axes[1].legend(fontsize=7)
    pf = report["processed"]
    axes[2].plot([r["frame"] for r in pf], [np.nan if r["loss"] is None else r["loss"] for r in pf], lw=0.8,
                 label="adaptation loss of each processed frame")  # fmt: skip
    resets = [pf[i]["frame"] for i in range(1, len(pf)) if pf[i]["resets"] > pf[i - 1]["resets"]]
    for i, r in enumerate(resets):
        axes[2].axvline(r, color="red", lw=0.6, label="reset to the source weights" if i == 0 else None)
    axes[2].set_xlabel("camera frame")
    axes[2].set_ylabel("loss")
    axes[2].legend(fontsize=7)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
