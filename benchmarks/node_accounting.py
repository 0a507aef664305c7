#!/usr/bin/env python3
"""The node's frame accounting and lifecycle cycles, through a real mlmp-segment over loopback DDS
(world model, the node's defaults: the robot settings); prints JSON.

``accounting``: every camera a reliable publisher of depth 10 playing world frames (640x480) for
``--seconds``: 2 and 4 cameras at 10 Hz each, and 2 and 4 cameras at unequal rates (30 Hz and
2 Hz alternating).  Per camera: frames sent, and the node's /diagnostics once it settled: received,
lost before the node (publication sequence gaps), processed, dropped by reason.  The identities
sent = received + lost and received = processed + dropped are checked and reported.

``lifecycle``: ``--cycles`` configure / activate / deactivate / cleanup cycles of a managed node
(autostart false) while every camera streams at 10 Hz, for 1 and 4 cameras: the node's RSS and
thread count after each cleanup and each activate (a frame labelled in every cycle), and the RSS
unconfigured before the first cycle.

    python benchmarks/node_accounting.py > benchmarks/results/node_accounting.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from latency import machine

from mlmp_ros.ros import rss_bytes, stay_on_loopback, thread_count
from mlmp_ros.ros.live import LiveSession, NodeProcess
from mlmp_ros.world import render_scene
from mlmp_ros.world.model import world_settings

REASONS = ("frames_dropped_replaced", "frames_skipped_by_rate_cap", "frames_dropped_by_class_change",
           "frames_dropped_disabled", "frames_dropped_inactive", "bad_frames", "frame_errors")


MODEL: dict[str, Any] = dict(world_settings())  # --model tiny: the tests' random tiny model instead


def node_parameters(cameras: list[str], **extra: Any) -> dict[str, Any]:
    return {**MODEL, "device": "cpu", "diagnostics.period": 0.5, "cameras": cameras, **extra}


def open_cameras(node: NodeProcess | None, namespace: str, cameras: list[str]) -> list[LiveSession]:
    sessions = []
    for i, camera in enumerate(cameras):
        live = LiveSession(node if i == 0 else None, namespace=namespace, camera=camera, depth=10,
                           keep_arrays=False)
        sessions.append(live.start(timeout=300.0))
    return sessions


def stream(sessions: list[LiveSession], rates: list[float], images: list, stop: threading.Event,
           seconds: float) -> list[int]:
    """Publish into every camera at its rate until ``stop`` or ``seconds``; frames sent per camera."""
    sent = [0] * len(sessions)
    start = time.monotonic()
    due = [start] * len(sessions)
    while not stop.is_set() and time.monotonic() - start < seconds:
        i = min(range(len(sessions)), key=lambda k: due[k])
        time.sleep(max(0.0, due[i] - time.monotonic()))
        try:
            sessions[i].publish(images[sent[i] % len(images)])
        except Exception:  # noqa: BLE001 - the session closes under the streamer at the end
            return sent
        sent[i] += 1
        due[i] += 1.0 / rates[i]
    return sent


def settled_counts(live: LiveSession, sent: int, timeout: float = 120.0) -> dict[str, Any]:
    def done(d) -> bool:
        v = d.values
        return int(v["frames_received"]) + int(v["frames_lost_in_dds"]) >= sent and v["frames_waiting"] == "0"

    try:
        v = live.wait_for_diagnostics(done, timeout).values
    except TimeoutError:
        v = live.diagnostics[-1].values
    counts = {k: int(v[k]) for k in ("frames_received", "frames_lost_in_dds", "frames_processed",
                                     "frames_dropped", "frames_waiting", *REASONS)}
    counts["sent"] = sent
    counts["lost_counted_by"] = v["frames_lost_counted_by"]
    counts["sent_equals_received_plus_lost"] = sent == counts["frames_received"] + counts["frames_lost_in_dds"]
    counts["received_equals_processed_plus_dropped"] = (
        counts["frames_received"] == counts["frames_processed"] + counts["frames_dropped"])
    counts["drops_equal_reasons"] = counts["frames_dropped"] == sum(counts[k] for k in REASONS)
    return counts


def accounting_case(n: int, rates: list[float], images: list, seconds: float) -> dict[str, Any]:
    cameras = [f"cam{i}" for i in range(n)]
    namespace = f"/mlmp_bench_accounting_{n}_{int(rates[1])}"
    node = NodeProcess(None, node_parameters(cameras), namespace=namespace)
    sessions = open_cameras(node, namespace, cameras)
    try:
        sent = stream(sessions, rates, images, threading.Event(), seconds)
        per_camera = {c: {"rate_hz": r, **settled_counts(live, s)}
                      for c, r, live, s in zip(cameras, rates, sessions, sent)}
    finally:
        for live in reversed(sessions):
            live.close()
        node.cleanup()
    return {"cameras": n, "rates_hz": rates, "seconds": seconds, "per_camera": per_camera}


def lifecycle_case(n: int, cycles: int, images: list) -> dict[str, Any]:
    from test.ros.test_lifecycle import Manager  # a lifecycle manager's side over DDS

    cameras = [f"cam{i}" for i in range(n)] if n > 1 else []
    namespace = f"/mlmp_bench_lifecycle_{n}"
    node = NodeProcess(None, node_parameters(cameras, autostart=False), namespace=namespace).start()
    manager = Manager(f"{namespace}/mlmp_segment")
    samples: list[dict[str, Any]] = []
    stop, sessions, streamer = threading.Event(), [], None
    try:
        assert manager.state() == "unconfigured"  # the node is up (its lifecycle services answer)
        time.sleep(1.0)
        unconfigured = {"rss_mb": rss_bytes(node.pid) / 2**20, "threads": thread_count(node.pid)}
        for cycle in range(cycles):
            assert manager.transition("configure") and manager.transition("activate"), node.log_tail()
            if not sessions:
                sessions = open_cameras(None, namespace, cameras or [""])
                streamer = threading.Thread(target=stream, args=(sessions, [10.0] * len(sessions), images, stop,
                                                                 10**6), daemon=True)
                streamer.start()
            for live in sessions:  # a frame labelled in this cycle, on every camera
                live.wait_until(lambda live=live: len(live.outputs["labels"]) > 0 and max(
                    o.received for o in live.outputs["labels"].values()) > time.monotonic() - 1.0, 120.0, "labels")
            active = {"rss_mb": rss_bytes(node.pid) / 2**20, "threads": thread_count(node.pid)}
            assert manager.transition("deactivate") and manager.transition("cleanup")
            time.sleep(0.5)
            samples.append({"cycle": cycle, "active": active,
                            "cleaned_up": {"rss_mb": rss_bytes(node.pid) / 2**20, "threads": thread_count(node.pid)}})
    finally:
        stop.set()
        for live in sessions:
            live.close()
        manager.close()
        node.stop()
        node.cleanup()
    clean = [s["cleaned_up"] for s in samples]
    half = len(clean) // 2
    return {"cameras": n, "cycles": cycles, "unconfigured": unconfigured, "samples": samples,
            "rss_after_cleanup_mb_first_last": [clean[0]["rss_mb"], clean[-1]["rss_mb"]],
            "rss_after_cleanup_growth_second_half_mb": clean[-1]["rss_mb"] - clean[half]["rss_mb"],
            "threads_after_cleanup": sorted({c["threads"] for c in clean})}


PROBE = """
import gc, json, sys
from mlmp_ros.ros import rss_bytes
mb = lambda: rss_bytes() / 2**20
out = {}
import mlmp_ros.ros.lifecycle  # what mlmp-segment imports before the first configure
out["node_imported"] = mb()
import open_clip, torch  # what the first configure imports besides the model
from mlmp_ros.core import Segmenter
out["model_code_imported"] = mb()
from mlmp_ros.ros.node import release_heap
from mlmp_ros.world import render_scene
from mlmp_ros.world.model import world_config
seg = Segmenter(world_config(device="cpu", precision="auto"))
seg.segment([render_scene(1, 480, 640).image])
out["model_loaded_one_frame"] = mb()
del seg
gc.collect(); release_heap()
out["model_freed"] = mb()
print(json.dumps(out))
"""


def memory_probe() -> dict[str, float]:
    """Where the node's memory goes, in a fresh process: RSS (MB) after the node's imports, after the
    model code's imports, with the world model loaded and one frame segmented, and after freeing it as
    cleanup does (the imported code stays in a Python process)."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=12.0, help="seconds each accounting case streams (default 12)")
    ap.add_argument("--cycles", type=int, default=20, help="lifecycle cycles per case (default 20)")
    ap.add_argument("--model", choices=["world", "tiny"], default="world", help="the world model (default) or the "
                    "tests' random tiny model (for quick runs)")
    ap.add_argument("--lifecycle-cameras", type=lambda t: [int(x) for x in t.split(",")], default=[1, 4],
                    help="camera counts of the lifecycle cases (default 1,4)")
    ap.add_argument("--skip", choices=["accounting", "lifecycle"], action="append", default=[],
                    help="leave a part out")
    args = ap.parse_args(argv)
    stay_on_loopback()
    if args.model == "tiny":
        MODEL.clear()
        MODEL.update(model="mlmp-tiny-test", weights="random", classes=["cat", "sky", "road"])
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    images = [render_scene(9000 + i, 480, 640).image for i in range(8)]
    out: dict[str, Any] = {"machine": machine(), "node": f"{args.model} model, the node's defaults (robot settings), cpu"}
    started = time.time()
    if "accounting" not in args.skip:
        out["accounting"] = [accounting_case(n, rates, images, args.seconds)
                             for n in (2, 4) for rates in ([10.0] * n, [30.0 if i % 2 == 0 else 2.0 for i in range(n)])]
    if "lifecycle" not in args.skip:
        out["memory_probe"] = memory_probe()
        out["lifecycle"] = [lifecycle_case(n, args.cycles, images) for n in args.lifecycle_cameras]
    out["wall_s"] = time.time() - started
    out["loadavg_at_end"] = list(os.getloadavg())
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
