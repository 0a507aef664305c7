"""``mlmp-bench replay-live``: play bench bags into the running node over DDS and score it.

The node (``mlmp-segment``, started here as its own process, or already running) gets
the bag's class list and window protocol as parameters, and the core settings given
(the streaming ones too: ``--schedule``, ``--set adaptation.every=..``,
``adaptation.budget_ms``, ``adaptation.safeguards.*``).  One bag, or several chained
(same classes and window protocol, as ``mlmp-bench stream``).  The camera frames are
published at the recorded rate (or x N, a fixed rate, or paced: the next frame only
after the previous result), the node's labels and confidence are recorded into a bag,
and scored two ways:

- the processed frames with their own labels, exactly as ``run`` scores (same
  resolution, same metrics: ``metrics``; frames the node dropped are left out);
- at camera rate: every frame sent is scored with the newest labels *received* by the
  time it was sent (stale labels count, a dropped frame gets what was on the topic, a
  frame before any labels counts as all wrong), with the scoring function of
  ``mlmp-bench stream`` (``miou_camera``, per segment of a chain).

Resets and adaptation steps come from the node's /diagnostics.

The node segments one frame at a time, so the offline equivalent is
``mlmp-bench run BAG --batch-size 1 --no-shuffle --seeds 0``; with a presized bag (the
default of make-bags) and no dropped frame, both give the same labels.
This module is the bench's only user of the node's side and rclpy (``mlmp_ros.ros.live``, imported
when a replay runs).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any

import numpy as np

from ...core.config import Config
from ...core.windows import resize_labels
from ...resources import config_path
from ...ros import stay_on_loopback
from ..argument_checks import UsageError, check_number
from ..data.bags import open_bag
from ..data.recorded import recorded, write_recorded_images
from ..offline.options import scoring_size, segmenter_config
from ..scoring.camera_rate import score_camera_rate
from ..suite.store import json_default
from .chain import check_chain, segment_name


def node_overrides(config: Config) -> dict[str, Any]:
    """The core config as ``-p`` overrides of the node (in the forms its parameters take)."""
    from ...ros.params import ros_value

    params = {key: ros_value(key, value) for key, value in config.flat().items()}
    if isinstance(params.get("templates"), str) and len(config.templates) > 1:
        raise ValueError("replay-live passes templates to the node by name or file; give templates as one entry")
    return params


def chain_frames(bags: Sequence[Any], limit: int | None = None) -> list[tuple[str, Any]]:
    """``(segment, frame)`` of chained bags in order, stamps moved so they keep increasing.

    Bags of one data set carry the same stamps; outputs are matched to frames by stamp,
    so each bag after the first is shifted to start one frame period (its predecessor's
    median) after the previous bag's last frame.
    """
    out: list[tuple[str, Any]] = []
    last: int | None = None
    period = 100_000_000
    for bag in bags:
        frames = [f for _, f in zip(range(limit or len(bag)), bag)]  # checksums verified before a node starts
        if not frames:
            continue
        shift = 0 if last is None else last + period - frames[0].stamp_ns
        stamps = [f.stamp_ns + shift for f in frames]
        out += [(segment_name(bag.info), dc_replace(f, stamp_ns=s)) for f, s in zip(frames, stamps)]
        if len(stamps) > 1:
            period = max(1, int(np.median(np.diff(stamps))))
        last = stamps[-1]
    return out


def replay_live(
    bag_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    config: Config,
    out_dir: str | os.PathLike[str],
    *,
    speed: float | None = 1.0,
    rate_hz: float | None = None,
    paced: bool = False,
    limit: int | None = None,
    params_file: str | os.PathLike[str] | None = None,
    start_node: bool = True,
    namespace: str | None = None,
    timeout: float = 120.0,
    node_parameters: Mapping[str, Any] | None = None,
    diagnostics_timeout: float = 5.0,
) -> dict[str, Any]:
    """Play, record, score; returns the JSON-ready report (also written to ``out_dir``).

    ``bag_path``: one bag or several, chained in order (same classes and window protocol).
    ``node_parameters``: node parameters set on top of the config's (e.g.
    ``diagnostics.period``).  After the play, waits up to ``diagnostics_timeout`` seconds
    for the node's /diagnostics to read its resets and adaptation steps.
    """
    pacing = _pacing(speed, rate_hz, paced)  # the numbers are checked before anything starts
    _check_numbers(limit=limit, timeout=timeout, diagnostics_timeout=diagnostics_timeout)
    paths = [bag_path] if isinstance(bag_path, (str, os.PathLike)) else list(bag_path)
    bags = [open_bag(p) for p in paths]
    check_chain([(b.path, b.info) for b in bags])
    info = bags[0].info
    cfg = segmenter_config(config, info)
    chained = chain_frames(bags, limit)
    frames = [f for _, f in chained]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    played = _play_through_node(frames, cfg, info, out, pacing, params_file=params_file, start_node=start_node,
                                namespace=namespace, timeout=timeout, node_parameters=node_parameters,
                                diagnostics_timeout=diagnostics_timeout)  # fmt: skip
    names = _checked_class_names(info, played.class_map)
    scores, processed = _score_live(frames, [s for s, _ in chained], played.result, info, cfg, names)

    outputs_bag = out / "outputs"
    if outputs_bag.exists():
        shutil.rmtree(outputs_bag)
    write_recorded_images(outputs_bag, recorded(played.outputs))
    report = _live_report(bags, cfg, pacing, scores, processed, played, out)
    (out / "replay_live.json").write_text(json.dumps(report, indent=2, default=json_default) + "\n")
    return report


def _pacing(speed: float | None, rate_hz: float | None, paced: bool) -> dict[str, Any]:
    """How the frames are played: ``paced``, else ``rate_hz`` when given, else ``speed`` (default 1)."""
    if paced:
        if rate_hz is not None:
            raise UsageError("give rate_hz or paced, not both")
        return {"paced": True}
    if rate_hz is not None:
        check_number("rate_hz", rate_hz, "positive_number")
        return {"rate_hz": rate_hz}
    speed = 1.0 if speed is None else speed
    check_number("speed", speed, "positive_number")
    return {"speed": speed}


def _check_numbers(*, limit: int | None, timeout: float, diagnostics_timeout: float) -> None:
    if limit is not None:
        check_number("limit", limit, "positive_int")
    check_number("timeout", timeout, "positive_number")
    check_number("diagnostics_timeout", diagnostics_timeout, "positive_number")


@dataclass
class _Played:
    """What a play through the node gave: its diagnostics before and after, the result, the outputs recorded."""

    before: Any
    after: Any
    result: Any
    outputs: dict[str, Any]
    class_map: Mapping[int, str]


def _play_through_node(
    frames: Sequence[Any],
    cfg: Config,
    info: Mapping[str, Any],
    out: Path,
    pacing: Mapping[str, Any],
    *,
    params_file: str | os.PathLike[str] | None,
    start_node: bool,
    namespace: str | None,
    timeout: float,
    node_parameters: Mapping[str, Any] | None,
    diagnostics_timeout: float,
) -> _Played:
    """Start the node (or set the running one's classes), play the frames, read its /diagnostics around it."""
    from ...ros.live import LiveSession, NodeProcess, SessionTimeout

    stay_on_loopback()
    node = None
    if start_node:
        node = NodeProcess(params_file or config_path("segment.yaml"), {**node_overrides(cfg), **(node_parameters or {})},
                           namespace=namespace, log_path=out / "node.log")  # fmt: skip
    with LiveSession(node, namespace=namespace, keep_serialized=True) as live:
        if node is None:
            live.set_parameters({"classes": [info["class_key"]], **(node_parameters or {})})
        before = live.diagnostics[-1] if live.diagnostics else None
        if before is None and node is None:  # a node that ran before: its counters before this run
            try:
                before = live.wait_for_diagnostics(timeout=diagnostics_timeout)
            except SessionTimeout:
                pass
        result = live.play(((f.stamp_ns, f.image) for f in frames), timeout=timeout, **pacing)
        try:  # a /diagnostics sent after the last output, for the node's counters
            after = live.wait_for_diagnostics(timeout=diagnostics_timeout, after=result.finished)
        except SessionTimeout:
            after = result.diagnostics
        outputs = {k: dict(v) for k, v in live.outputs.items()}
        class_map = live.class_map
    return _Played(before, after, result, outputs, class_map)


def _checked_class_names(info: Mapping[str, Any], class_map: Mapping[int, str]) -> list[str]:
    """The bag's class names, refused (``ValueError``) when the node's classes are not those."""
    names = list(info.get("class_names") or [])
    if names and [class_map.get(i) for i in range(len(names))] != names:
        raise ValueError(f"the node's classes {list(class_map.values())[:4]}... are not the bag's {names[:4]}...")
    return names


def _score_live(
    frames: Sequence[Any], segments: list[str], result: Any, info: Mapping[str, Any], cfg: Config, names: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Camera-rate scores of the frames sent (timeline with stamps and send times) and the processed frames."""

    truth = []
    for frame in frames:
        size = scoring_size(frame.image.shape[0], frame.image.shape[1], cfg)
        truth.append(resize_labels(frame.labels, size))
    t0 = result.started
    arrival = [rec.published - t0 for rec in result.frames]
    publications = [(rec.labels.received - t0, rec.index, rec.labels.array) for rec in result.frames
                    if rec.labels is not None and rec.labels.array is not None]  # fmt: skip
    scores = score_camera_rate(truth, arrival, publications, num_classes=int(info["num_classes"]),
                               ignore_index=int(info.get("ignore_index", 255)), class_names=names or None,
                               segments=segments)  # fmt: skip
    for entry, rec in zip(scores["timeline"], result.frames):
        entry.update(stamp_ns=rec.stamp_ns, sent_s=rec.published - t0)
    processed = [{"frame": rec.index, "stamp_ns": rec.stamp_ns, "received_s": rec.labels.received - t0,
                  "latency_s": rec.latency} for rec in result.frames if rec.labels is not None]  # fmt: skip
    return scores, processed


def _live_report(
    bags: Sequence[Any],
    cfg: Config,
    pacing: Mapping[str, Any],
    scores: Mapping[str, Any],
    processed: list[dict[str, Any]],
    played: _Played,
    out: Path,
) -> dict[str, Any]:
    """The JSON-ready report of a replay-live run."""
    info, result = bags[0].info, played.result
    latencies = [p["latency_s"] for p in processed]
    return {
        "bag": str(bags[0].path),
        "bags": [str(b.path) for b in bags],
        "dataset": info.get("dataset"),
        "corruption": info.get("corruption"),
        "method": cfg.adaptation.method,
        "mode": cfg.adaptation.mode,
        "adaptation_schedule": cfg.adaptation.schedule,
        "settings": {k: v for k, v in cfg.flat().items() if k.startswith("adaptation.")},
        "model": cfg.model,
        "schedule": pacing,  # the key of the recorded format: how the frames were played
        # the processed frames, each with its own labels (what ``run`` scores)
        "metrics": scores["metrics_processed"],
        "frames_scored": scores["frames_scored_processed"],
        # every camera frame with the labels received by the time it was sent
        **{k: scores[k] for k in CAMERA_KEYS},
        **result.summary(),
        "latency_p50_s": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_p95_s": float(np.percentile(latencies, 95)) if latencies else None,
        **node_counters(played.before, played.after),
        "latency_ms": [None if r.latency is None else r.latency * 1e3 for r in result.frames],
        "outputs_bag": str(out / "outputs"),
        "processed": processed,
        "timeline": scores["timeline"],
    }


CAMERA_KEYS = ("miou_camera", "miou_processed", "miou_camera_first10", "miou_camera_last10", "metrics_camera",
               "frames_without_labels", "label_age_frames_median", "label_age_frames_max", "segments")  # fmt: skip
NODE_KEYS = ("adaptation_schedule", "adaptation_steps_total", "adaptation_steps_per_s", "adaptation_lag_frames_median",
             "resets", "resets_by_reason", "frames_received", "frames_processed", "frames_dropped",
             "frames_lost_in_dds", "frame_errors", "adaptation_failures")  # fmt: skip


def node_counters(before: Any, after: Any) -> dict[str, Any]:
    """Resets and adaptation steps of this run from the node's /diagnostics (before/after the play).

    The node's counters run from its start, so a node that ran before is counted from
    ``before``.  Without diagnostics the values are None.
    """
    if after is None:
        return {"resets": None, "resets_by_reason": None, "adaptation_steps": None, "node_diagnostics": None}

    def count(diag: Any, key: str) -> int:
        try:
            return int(diag.values.get(key, 0)) if diag is not None else 0
        except ValueError:
            return 0

    def reasons(diag: Any) -> dict[str, int]:
        text = diag.values.get("resets_by_reason", "") if diag is not None else ""
        pairs = (item.strip().partition("=") for item in text.split(",") if item.strip())
        return {k: int(v) for k, _, v in pairs if v.strip().isdigit()}

    start, end = reasons(before), reasons(after)
    return {
        "resets": count(after, "resets") - count(before, "resets"),
        "resets_by_reason": {k: v - start.get(k, 0) for k, v in end.items() if v - start.get(k, 0)},
        "adaptation_steps": count(after, "adaptation_steps_total") - count(before, "adaptation_steps_total"),
        "node_diagnostics": {k: after.values[k] for k in NODE_KEYS if k in after.values},
    }
