"""mlmp-demo on the world model: NoAdapt and the adapted configuration side by side, scored live.

Used by :mod:`mlmp_ros.demo.main` when no real CLIP weights can be had (or ``--world``).  The
same world stream is played at the camera rate into two segmentation nodes at once: one
that never adapts and one with the adapted configuration recommended for robots
(:data:`mlmp_ros.robot.ROBOT_ADAPTATION`; docs/configuration.md).  Each frame's labels are scored against the
stream's ground truth as they arrive; every overlay shows camera | NoAdapt | adapted |
ground truth with each run's mIoU on that frame and over its run so far at that frame.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..bench.argument_checks import counted
from .common import node_diagnostics, prepare_out

WORLD_PERIOD_NS = 100_000_000  # the stream's stamps: 10 Hz


class WorldStreamRun:
    """The world stream the demo plays and its ground truth."""

    def __init__(self, frames: int, shift: str, seed: int | None):
        from ..world.camera_stream import WorldStream
        from ..world.dataset import STREAM_SEED
        from ..world.shifts import SHIFTS

        if shift not in SHIFTS:
            raise SystemExit(f"mlmp-demo: unknown shift '{shift}' (choose from {', '.join(SHIFTS)})")
        if frames < 1:
            raise SystemExit("mlmp-demo: --frames must be at least 1")
        self.seed = STREAM_SEED + 900 if seed is None else int(seed)
        self.stream = WorldStream(self.seed, frames, shift=shift)
        self.frames = list(self.stream)
        self.shift = shift

    def items(self, loops: int) -> list[tuple[int, np.ndarray]]:
        return [(i * WORLD_PERIOD_NS, self.frames[i % len(self.frames)].image) for i in range(loops * len(self.frames))]

    def frame(self, index: int):
        return self.frames[index % len(self.frames)]


def frame_miou(labels: np.ndarray, truth: np.ndarray, metrics=None) -> float:
    """mIoU (%) of one frame over the classes present in it or predicted; adds to ``metrics``."""
    from ..bench.scoring.metrics import SegmentationMetrics
    from ..world import CLASSES

    one = SegmentationMetrics(len(CLASSES))
    one.update(labels, truth)
    if metrics is not None:
        metrics.update(labels, truth)
    return float(one.compute()["mIoU"])


class RunScore:
    """One segmentation run's live score: each frame's mIoU and the run's so far, as labels arrive."""

    def __init__(self, tag: str, title: str, world: WorldStreamRun):
        from ..bench.scoring.metrics import SegmentationMetrics
        from ..world import CLASSES

        self.tag, self.title, self.world = tag, title, world
        self.metrics = SegmentationMetrics(len(CLASSES), class_names=list(CLASSES))
        self.per_frame: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def score(self, index: int, labels: np.ndarray) -> dict[str, Any]:
        """Score frame ``index`` once; the record keeps the run's mIoU so far at that frame."""
        with self._lock:
            if index in self.per_frame:
                return self.per_frame[index]
            frame = self.world.frame(index)
            miou = frame_miou(labels, frame.labels, self.metrics)
            rec = {"frame": index, "severity": round(frame.severity, 2), "miou": round(miou, 1),
                   "run": round(float(self.metrics.compute()["mIoU"]), 1)}  # fmt: skip
            self.per_frame[index] = rec
            return rec

    def print_new(self, live) -> None:
        """Score and print the frames whose labels arrived since the last call (publish order gives the index)."""
        published, received = live.published_and_received("labels")
        arrived = {s: o for s, o in received.items() if o.array is not None}
        for stamp, out in sorted(arrived.items()):
            if stamp not in published or published.index(stamp) in self.per_frame:
                continue
            rec = self.score(published.index(stamp), out.array)
            print(f"  {self.tag:8s} frame {rec['frame']:3d}  {self.world.shift} {rec['severity']:.2f}  "
                  f"mIoU {rec['miou']:5.1f}  (run so far {rec['run']:5.1f})", flush=True)  # fmt: skip

    def watch(self, live, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            self.print_new(live)

    def finish(self, result) -> dict[str, Any]:
        """Score frames whose labels came after the watcher stopped; the run's part of the summary."""
        for rec in result.frames:
            if rec.labels is not None and rec.labels.array is not None:
                self.score(rec.index, rec.labels.array)
        run = self.metrics.compute()
        return {
            "run_miou": round(float(run["mIoU"]), 2),
            "run_pixel_accuracy": round(float(run["aAcc"]), 2),
            "per_frame": [self.per_frame[i] for i in sorted(self.per_frame)],
        }


def describe(params: dict[str, Any]) -> str:
    """A short title for a run's adaptation settings."""
    method = params.get("adaptation.method", "mlmp")
    if method == "noadapt" or params.get("adaptation.mode") == "off":
        return "NoAdapt"
    guards = [k.split(".")[-1] for k in params if k.startswith("adaptation.safeguards.")]
    return (f"{method.upper()} {params.get('adaptation.schedule', 'sync')} {params.get('adaptation.mode', 'episodic')}"
            + (" + safeguards" if guards else ""))  # fmt: skip


def world_runs(user_params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(tag, node parameters) of the two runs: NoAdapt, and the robot configuration with the user's overrides."""
    from ..robot import ROBOT_ADAPTATION
    from ..world.model import world_settings

    base = world_settings()
    noadapt = {**base, **{k: v for k, v in user_params.items() if not k.startswith("adaptation.")},
               "adaptation.method": "noadapt"}  # fmt: skip
    adapted = {**base, **ROBOT_ADAPTATION, **user_params}
    if adapted.get("adaptation.method") == "noadapt":
        return [("noadapt", noadapt)]
    return [("noadapt", noadapt), ("adapted", adapted)]


# ---------------------------------------------------------------- overlays
def _paint(labels: np.ndarray) -> np.ndarray:
    from ..world import PALETTE

    return PALETTE[np.minimum(labels, len(PALETTE) - 1)]


def _title(panel: np.ndarray, x: int, text: str) -> None:
    """White text on a dark box in a panel's top-left corner."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.7, 2)
    box = panel[4 : 14 + h + base, x + 4 : x + 16 + w]
    box[:] = (box * 0.35).astype(panel.dtype)
    cv2.putText(panel, text, (x + 10, 10 + h), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)


def world_overlay(image: np.ndarray, runs: list[tuple[str, np.ndarray | None, str]], truth: np.ndarray,
                  header: str) -> np.ndarray:  # fmt: skip
    """camera | one panel per run | ground truth, titled; below: the header, each run's score, a legend.

    ``runs``: (title, labels or None when that run dropped the frame, score text).
    """
    from ..world import CLASSES, PALETTE

    h, w = image.shape[:2]
    panels = [image]
    for _, labels, _ in runs:
        if labels is None:
            grey = np.full_like(image, 90)
            cv2.putText(grey, "frame dropped", (w // 2 - 110, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
            panels.append(grey)
        else:
            panels.append(_paint(labels))
    panels.append(_paint(truth))
    strip = np.concatenate(panels, axis=1)
    for col, title in enumerate(["camera", *(r[0] for r in runs), "ground truth"]):
        _title(strip, col * w, title)
    legend = np.full((40 + 28 * len(runs) + 36, strip.shape[1], 3), 255, np.uint8)
    cv2.putText(legend, header, (8, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (0, 0, 0), 1, cv2.LINE_AA)
    for row, (title, _, text) in enumerate(runs):
        cv2.putText(legend, f"{title}: {text}", (8, 56 + 28 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (0, 0, 0), 1, cv2.LINE_AA)
    present = set(np.unique(truth).tolist())
    for _, labels, _ in runs:
        if labels is not None:
            present |= set(np.unique(labels).tolist())
    x, y = 8, legend.shape[0] - 30
    for cls in sorted(c for c in present if c < len(CLASSES)):
        legend[y : y + 20, x : x + 20] = PALETTE[cls]
        cv2.putText(legend, CLASSES[cls], (x + 26, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        x += 40 + 11 * len(CLASSES[cls])
    return np.concatenate([strip, legend], axis=0)


def _labels_by_index(result) -> dict[int, np.ndarray]:
    return {rec.index: rec.labels.array for rec in result.frames if rec.labels is not None and rec.labels.array is not None}


def write_world_overlays(world: WorldStreamRun, played: dict[str, Any], scores: dict[str, RunScore],
                         titles: dict[str, str], out: Path) -> list[Path]:  # fmt: skip
    """One overlay per frame that any run processed, in stream order; their paths."""
    by_run = {tag: _labels_by_index(p["result"]) for tag, p in played.items()}
    indices = sorted(set().union(*(set(v) for v in by_run.values())))
    paths = []
    for index in indices:
        frame = world.frame(index)
        panels = []
        for tag in played:
            labels = by_run[tag].get(index)
            if labels is None:
                panels.append((titles[tag], None, "dropped this frame (the node was busy)"))
                continue
            rec = scores[tag].score(index, labels)
            panels.append((titles[tag], labels, f"mIoU {rec['miou']:.1f} on this frame, {rec['run']:.1f} over its run so far"))
        header = f"frame {index}   {world.shift} {frame.severity:.2f}"
        picture = world_overlay(frame.image, panels, frame.labels, header)
        path = out / f"overlay_{len(paths):02d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


# ---------------------------------------------------------------- running
def _start_sessions(params_file: Path, runs: list[tuple[str, dict[str, Any]]], out: Path) -> dict[str, Any]:
    """One node per run, each in its own namespace, started in parallel; their live sessions."""
    from ..ros.live import LiveSession, NodeProcess

    # The nodes share the machine's cores instead of each taking all of them (unless the user chose).
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // len(runs)))
    sessions = {}
    for tag, params in runs:
        node = NodeProcess(params_file, params, name=f"mlmp_{tag}", namespace=tag, log_path=out / f"node_{tag}.log",
                           env={"OMP_NUM_THREADS": threads})  # fmt: skip
        sessions[tag] = LiveSession(node, keep_serialized=True)
    with ThreadPoolExecutor(len(sessions)) as pool:
        futures = {tag: pool.submit(s.start) for tag, s in sessions.items()}
        errors = [f.exception() for f in futures.values()]
    failed = next((e for e in errors if e is not None), None)
    if failed is not None:
        for s in sessions.values():
            s.close()
        raise failed
    return sessions


def _play_all(sessions: dict[str, Any], scores: dict[str, RunScore], stream: list, args: argparse.Namespace) -> dict[str, Any]:
    """Play the same stream into every node at once, printing each frame's mIoU as its labels arrive."""
    pacing = {"paced": True} if args.paced else {"rate_hz": args.rate}
    stop = threading.Event()
    watchers = [threading.Thread(target=scores[t].watch, args=(s, stop), daemon=True) for t, s in sessions.items()]
    for w in watchers:
        w.start()
    try:
        with ThreadPoolExecutor(len(sessions)) as pool:
            futures = {t: pool.submit(s.play, stream, restamp=True, timeout=args.timeout, **pacing) for t, s in sessions.items()}
            results = {t: f.result() for t, f in futures.items()}
    finally:
        stop.set()
        for w in watchers:
            w.join(timeout=5.0)
    played = {}
    for tag, live in sessions.items():
        scores[tag].print_new(live)
        played[tag] = {"result": results[tag], "diagnostics": node_diagnostics(live, results[tag]), "outputs": live.outputs}
    return played


def run(args: argparse.Namespace, params_file: Path, world: WorldStreamRun, user_params: dict[str, Any]) -> int:
    """The world demo: both runs, overlays, bags of the outputs, summary.json and the printed summary."""
    from ..bench.data.recorded import recorded, write_recorded_images

    runs = world_runs(user_params)
    titles = {tag: describe(params) for tag, params in runs}
    for tag, title in titles.items():
        print(f"mlmp-demo: run '{tag}': {title}", flush=True)
    out = args.out
    prepare_out(out)
    stream = world.items(max(1, args.loops))
    scores = {tag: RunScore(tag, titles[tag], world) for tag, _ in runs}
    print("mlmp-demo: starting the nodes (model load and text embeddings take a while on a CPU) ...", flush=True)
    t0 = time.monotonic()
    sessions = _start_sessions(params_file, runs, out)
    ready = time.monotonic() - t0
    try:
        print(f"mlmp-demo: nodes ready after {ready:.1f} s; playing {counted(len(stream), 'frame')} into each", flush=True)
        played = _play_all(sessions, scores, stream, args)
    finally:
        for s in sessions.values():
            s.close()
    overlays = write_world_overlays(world, played, scores, titles, out)
    summary: dict[str, Any] = {
        "weights": "world",
        "random_weights": False,
        "node_ready_s": round(ready, 1),
        "world": {"stream_seed": world.seed, "shift": world.shift, "frames": len(world.frames)},
        "runs": {},
        "overlays": [str(p) for p in overlays],
    }
    for tag, params in runs:
        p = played[tag]
        bag = out / f"outputs_{tag}"
        n_msgs = write_recorded_images(bag, recorded(p["outputs"]))
        summary["runs"][tag] = {
            "title": titles[tag],
            "node_parameters": params,
            **p["result"].summary(),
            **scores[tag].finish(p["result"]),
            "node_diagnostics": p["diagnostics"].values if p["diagnostics"] else {},
            "outputs_bag": str(bag),
            "output_messages": n_msgs,
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_world_summary(summary)
    return 0 if all(r["frames_processed"] for r in summary["runs"].values()) else 1


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f} ms"


SUMMARY_COLUMNS = ("run", "mIoU", "first", "last", "processed", "dropped", "latency p50/p95")


def summary_rows(s: dict[str, Any]) -> list[str]:
    """The summary table, header first: every column as wide as its widest entry, numbers right-aligned."""
    table = [SUMMARY_COLUMNS]
    for r in s["runs"].values():
        pf = r["per_frame"]
        first = f"{pf[0]['miou']:.1f}" if pf else "-"
        last = f"{pf[-1]['miou']:.1f}" if pf else "-"
        lat = f"{_ms(r['latency_median_ms'])} / {_ms(r['latency_p95_ms'])}"
        table.append((r["title"], f"{r['run_miou']:.1f}", first, last, f"{r['frames_processed']}/{r['frames_published']}",
                      str(r["frames_dropped"]), lat))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(SUMMARY_COLUMNS))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in table]  # fmt: skip


def print_world_summary(s: dict[str, Any]) -> None:
    line = "=" * 88
    w = s["world"]
    print(line)
    print(f"mlmp-demo summary: world model (mlmp-world) on world stream seed {w['stream_seed']}, "
          f"{counted(w['frames'], 'frame')}, '{w['shift']}' setting in")  # fmt: skip
    print(line)
    for row in summary_rows(s):
        print(row)
    d = next(iter(s["runs"].values()))["node_diagnostics"]
    if d:
        print(f"model / device    {d.get('model', '?')} on {d.get('device', '?')}; node memory {d.get('rss_mb', '-')} MB RSS each")
    print("mIoU: over each run's processed frames, against the ground truth; a dropped frame is not scored")
    print(f"outputs           {counted(len(s['overlays']), 'overlay')} (camera | runs | ground truth) and one outputs "
          "bag per run")  # fmt: skip
    print(line)
