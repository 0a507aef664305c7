#!/usr/bin/env python3
"""Several cameras: one multi-camera node against one node per camera, and best-effort
frame delivery over loopback; prints JSON.

``--cameras 1,2,4`` (default): every camera plays world frames at ``--rate`` Hz (10) for
``--seconds`` into (a) one node with ``cameras: [cam0, ...]`` (one camera: the plain
single-camera node), (b) one single-camera node per camera, all at once on this machine, with torch's default threads
(one per core in every node) and (c) with the cores shared out (``OMP_NUM_THREADS`` = cores / N per
node: several PyTorch processes with a thread per core each oversubscribe the CPU, docs/node/cameras.md).
Reported per case: the nodes' peak RSS (summed over the separate nodes), aggregate processed
frames/s, and per camera the frames published and processed and the latency (publish ->
labels received) p50 / p95, and the CPU time the nodes used while the cameras played (in cores:
CPU seconds over the play's seconds; 2 cores here) and what the players used.  Ratios: RSS of the
N-camera node / one-camera node, aggregate frames/s of the N-camera node / N separate nodes, and
the spread of the per-camera counts.

``batching`` (in this process, before the nodes): the model's time per frame when N cameras'
frames go through one forward pass, against one frame a pass, rounds alternating so load hits
every batch size alike.  When the model's compute fills the machine (every CPU core busy), one
node for N cameras can be faster than N nodes only by what batching saves per frame: that ratio
is the ceiling on ``fps_vs_separate_nodes`` there.  On a GPU one frame leaves most of the device
idle, which is where one batched pass is expected to beat N processes taking turns.

``--delivery``: what a best-effort camera gets through to the node over loopback: raw and
compressed (jpeg) 640x480 and 1280x720 frames at 10 Hz from a best-effort publisher (depth 1),
against a reliable publisher, and with two Fast DDS settings for both sides: the ``LARGE_DATA``
builtin transports (``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``) and a profile with a 32 MB
shared-memory segment (``mlmp_ros/config/fastdds_large_shm.xml``, shipped); counted by the node (``frames_received``,
``frames_lost_in_dds`` of its /diagnostics).

    python benchmarks/multi_camera.py --seconds 8 > benchmarks/results/multi_camera.json
    python benchmarks/multi_camera.py --model ViT-B-16 --seconds 30 --batch-rounds 4 \
        > benchmarks/results/multi_camera_vitb16.json
    python benchmarks/multi_camera.py --device cuda --model ViT-B-16   # where a GPU is lent
    python benchmarks/multi_camera.py --delivery > benchmarks/results/best_effort_delivery.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
from latency import machine

from mlmp_ros.resources import config_path, package_data_path
from mlmp_ros.ros.live import LiveSession, NodeProcess
from mlmp_ros.world import render_scene
from mlmp_ros.world.model import world_settings

SEED = 4242


def node_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The node's parameters: the world model (NoAdapt, as the demo runs it) unless --model."""
    if args.model == "world":
        base = {**world_settings(), "adaptation.method": "noadapt"}
    else:  # time only: random weights
        base = {"model": args.model, "weights": "random", "adaptation.method": "noadapt"}
    return {**base, "device": args.device, "output.confidence": False}


def frames(count: int, height: int, width: int) -> list[np.ndarray]:
    return [render_scene(SEED + i, height, width).image for i in range(count)]


def _play_all(sessions: list[LiveSession], images: list[np.ndarray], args: argparse.Namespace) -> list:
    """Every session plays its camera at once (one thread each); their PlayResults."""
    n = int(args.seconds * args.rate)
    results: list = [None] * len(sessions)

    def play(i: int, live: LiveSession) -> None:
        items = [(0, images[(i * 7 + k) % len(images)]) for k in range(n)]
        results[i] = live.play(items, rate_hz=args.rate, restamp=True, timeout=10.0)

    threads = [threading.Thread(target=play, args=(i, live)) for i, live in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _camera_summary(result: Any) -> dict[str, Any]:
    latencies = sorted(f.latency for f in result.frames if f.latency is not None)
    pct = (lambda q: round(float(np.percentile(latencies, q)) * 1e3, 1)) if latencies else (lambda q: None)
    return {"published": result.published, "processed": result.processed,
            "latency_p50_ms": pct(50), "latency_p95_ms": pct(95)}


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), None when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(session: LiveSession) -> float | None:
    values = [b for _, b in session.rss]
    return round(max(values) / 2**20, 1) if values else None


def _measure(nodes: list[NodeProcess], sessions: list[LiveSession], owners: list[LiveSession],
             images: list[np.ndarray], args: argparse.Namespace) -> dict[str, Any]:
    cpu_before = [_cpu_seconds(node.pid) for node in nodes]
    player_before = time.process_time()
    results = _play_all(sessions, images, args)
    player_cpu = time.process_time() - player_before
    cpu_used = [None if b is None else (_cpu_seconds(node.pid) or b) - b for node, b in zip(nodes, cpu_before)]
    duration = max(r.finished for r in results) - min(r.started for r in results)
    cameras = [_camera_summary(r) for r in results]
    counts = [c["processed"] for c in cameras]
    rss = [_peak_rss_mb(s) for s in owners]
    return {
        "nodes": len(nodes),
        "rss_mb": round(sum(v for v in rss if v is not None), 1),
        "rss_mb_per_node": rss,
        "aggregate_processed_fps": round(sum(counts) / duration, 2),
        "node_cpu_cores": round(sum(c for c in cpu_used if c is not None) / duration, 2),
        "player_cpu_cores": round(player_cpu / duration, 2),
        "per_camera": cameras,
        "processed_spread": round((max(counts) - min(counts)) / max(max(counts), 1), 3),
    }


def run_multi(n: int, params: dict, images: list[np.ndarray], args: argparse.Namespace) -> dict[str, Any]:
    """One node for ``n`` cameras (n == 1: the single-camera node)."""
    names = [f"cam{i}" for i in range(n)] if n > 1 else []
    node = NodeProcess(config_path("segment.yaml"), {**params, **({"cameras": names} if names else {})},
                       namespace=f"/mlmp_bench_multi_{n}")
    first = LiveSession(node, camera=names[0] if names else "", record=("labels",), keep_arrays=False)
    sessions = [first]
    try:
        first.start()
        for name in names[1:]:
            sessions.append(LiveSession(namespace=node.namespace, camera=name, record=("labels",),
                                        keep_arrays=False).start())
        return _measure([node], sessions, [first], images, args)
    finally:
        for s in reversed(sessions):
            s.close()
        node.cleanup()


def run_separate(n: int, params: dict, images: list[np.ndarray], args: argparse.Namespace,
                 threads: int | None = None) -> dict[str, Any]:
    """``n`` single-camera nodes at once (``threads``: each node's OMP_NUM_THREADS; None: torch's default,
    one thread per core in every node)."""
    env = {} if threads is None else {"OMP_NUM_THREADS": str(threads)}
    nodes = [NodeProcess(config_path("segment.yaml"), params, namespace=f"/mlmp_bench_sep_{n}_{i}", env=env)
             for i in range(n)]
    sessions = [LiveSession(node, record=("labels",), keep_arrays=False) for node in nodes]
    try:
        for s in sessions:
            s.start()
        return _measure(nodes, sessions, sessions, images, args)
    finally:
        for s in reversed(sessions):
            s.close()
        for node in nodes:
            node.cleanup()


def batching(params: dict, images: list[np.ndarray], sizes: list[int], rounds: int) -> dict[str, Any]:
    """The model's wall and CPU time per frame at each batch size (one pass for ``n`` frames)."""
    import torch

    from mlmp_ros.core import Segmenter
    from mlmp_ros.core.config import Config

    # the core settings the node runs: its parameter file, then the parameters given to it
    core = {k: v for k, v in params.items() if not k.startswith("output.")}
    seg = Segmenter(Config.from_yaml(config_path("segment.yaml")).replace(**core))
    sync = torch.cuda.synchronize if seg.device.type == "cuda" else (lambda: None)
    wall: dict[int, list[float]] = {n: [] for n in sizes}
    cpu: dict[int, list[float]] = {n: [] for n in sizes}
    for n in sizes:  # warm-up
        seg.segment(images[:n], output="input")
    for _ in range(rounds):
        for n in sizes:
            sync()
            w, c = time.perf_counter(), time.process_time()
            seg.segment(images[:n], output="input")
            sync()
            wall[n].append((time.perf_counter() - w) / n)
            cpu[n].append((time.process_time() - c) / n)
    ms = lambda values: round(float(np.median(values)) * 1e3, 2)  # noqa: E731
    out: dict[str, Any] = {"device": str(seg.device), "precision": seg.precision.name, "rounds": rounds,
                           "torch_threads": torch.get_num_threads()}
    for n in sizes:
        out[f"batch_{n}"] = {"wall_ms_per_frame": ms(wall[n]), "cpu_ms_per_frame": ms(cpu[n]),
                             "frames_per_s": round(1e3 / max(ms(wall[n]), 1e-9), 2),
                             "speedup_per_frame_vs_batch_1": round(ms(wall[1]) / max(ms(wall[n]), 1e-9), 3)}
    return out


def cameras_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    params = node_parameters(args)
    images = frames(6, args.height, args.width)
    cases: dict[str, Any] = {}
    if args.batch_rounds > 0:
        sizes = sorted({1, *args.cameras})
        cases["batching"] = batching(params, frames(max(sizes), args.height, args.width), sizes, args.batch_rounds)
    for n in args.cameras:
        cases[f"{n}_cameras"] = {"one_node": run_multi(n, params, images, args)}
        if n > 1:
            cases[f"{n}_cameras"]["separate_nodes"] = run_separate(n, params, images, args)
            # as a careful user runs several PyTorch processes on one machine: the cores shared out
            shared = max(1, (os.cpu_count() or 1) // n)
            cases[f"{n}_cameras"]["separate_nodes_shared_cores"] = {
                "omp_num_threads": shared, **run_separate(n, params, images, args, threads=shared)}
    base_rss = cases.get("1_cameras", {}).get("one_node", {}).get("rss_mb")
    for n in args.cameras:
        case = cases[f"{n}_cameras"]
        one = case["one_node"]
        if base_rss:
            case["rss_vs_one_camera_node"] = round(one["rss_mb"] / base_rss, 3)
        if "separate_nodes" in case:
            sep = case["separate_nodes"]
            case["fps_vs_separate_nodes"] = round(one["aggregate_processed_fps"] / max(sep["aggregate_processed_fps"],
                                                                                       1e-9), 3)
            case["rss_vs_separate_nodes"] = round(one["rss_mb"] / max(sep["rss_mb"], 1e-9), 3)
        if "separate_nodes_shared_cores" in case:
            fps = case["separate_nodes_shared_cores"]["aggregate_processed_fps"]
            case["fps_vs_separate_nodes_shared_cores"] = round(one["aggregate_processed_fps"] / max(fps, 1e-9), 3)
    return cases


# ------------------------------------------------------------------ delivery
def _delivery_case(node: NodeProcess, live: LiveSession, image: np.ndarray, count: int,
                   rate: float) -> dict[str, Any]:
    """Publish ``count`` frames at ``rate``; what the node received, from its diagnostics."""
    before = live.wait_for_diagnostics(timeout=30.0).values
    live.play([(0, image)] * count, rate_hz=rate, restamp=True, drain=False)
    time.sleep(1.5)  # the last frames arrive; a diagnostics period passes
    after = live.wait_for_diagnostics(timeout=30.0).values
    return {k: int(after[k]) - int(before[k]) for k in ("frames_received", "frames_lost_in_dds")}


TRANSPORT_ENV = ("FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def transports() -> dict[str, dict[str, str]]:
    """The DDS settings compared: Fast DDS's defaults, LARGE_DATA, the shipped 32 MB shared-memory profile."""
    profile = str(package_data_path("config", "fastdds_large_shm.xml"))
    return {"default": {}, "LARGE_DATA": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
            "shm_32MB": {"FASTDDS_DEFAULT_PROFILES_FILE": profile, "FASTRTPS_DEFAULT_PROFILES_FILE": profile}}


def delivery_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Each DDS setting in a process of its own: Fast DDS reads its profile file once per process."""
    if len(args.transports) == 1:
        return _delivery_one(args)
    out: dict[str, Any] = {}
    for transport in args.transports:
        command = [sys.executable, __file__, "--delivery", "--transports", transport, "--frames", str(args.frames),
                   "--rate", str(args.rate), "--model", args.model, "--device", args.device]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        out.update(json.loads(done.stdout)["results"])
    return out


def _delivery_one(args: argparse.Namespace) -> dict[str, Any]:
    params = {**node_parameters(args), "adaptation.method": "noadapt", "diagnostics.period": 0.5}
    out: dict[str, Any] = {}
    for transport, env in transports().items():
        if transport not in args.transports:
            continue
        for key in TRANSPORT_ENV:  # this process's participant reads them when the session starts
            os.environ.pop(key, None)
        os.environ.update(env)
        for compressed in (False, True):
            for reliability in ("best_effort", "reliable"):
                if transport != "default" and reliability == "reliable":
                    continue
                key = f"{'compressed' if compressed else 'raw'}/{reliability}/{transport}"
                out[key] = _delivery_node(params, compressed, reliability, args)
    for key in TRANSPORT_ENV:
        os.environ.pop(key, None)
    return out


def _delivery_node(params: dict, compressed: bool, reliability: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {k: os.environ[k] for k in TRANSPORT_ENV if k in os.environ}
    node = NodeProcess(config_path("segment.yaml"), {**params, "input.compressed": compressed},
                       namespace="/mlmp_bench_delivery", env=env)
    live = LiveSession(node, compressed=compressed, reliability=reliability, depth=1, record=("labels",),
                       keep_arrays=False)
    try:
        live.start()
        return {f"{w}x{h}": {"published": args.frames, **_delivery_case(node, live, render_scene(SEED, h, w).image,
                                                                          args.frames, args.rate)}
                for h, w in ((480, 640), (720, 1280))}
    finally:
        live.close()
        node.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--model", default="world", help="world (the bundled world model) or an open_clip name "
                    "(random weights: time only)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-rounds", type=int, default=8, help="rounds of the in-process batching "
                    "measurement (0: skip it)")
    ap.add_argument("--delivery", action="store_true", help="measure best-effort delivery instead")
    ap.add_argument("--frames", type=int, default=20, help="--delivery: frames per case")
    ap.add_argument("--transports", type=lambda s: s.split(","), default=["default", "LARGE_DATA", "shm_32MB"],
                    help="--delivery: DDS settings to compare")
    args = ap.parse_args(argv)
    from mlmp_ros.ros import stay_on_loopback

    stay_on_loopback()
    report = {"machine": machine(),
              "settings": {k: v for k, v in vars(args).items()}}
    report["results"] = delivery_benchmark(args) if args.delivery else cameras_benchmark(args)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
