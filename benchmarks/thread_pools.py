#!/usr/bin/env python3
"""Where the model is loaded and where it runs, and what that costs on the CPU; prints JSON.

Each layout runs in a fresh process (OpenMP's thread pools live as long as their threads):

- ``main``: load and run on the main thread (a script, the benchmark);
- ``load_main_run_worker``: load on the main thread, run on a worker thread (the node before
  ``core/threads.py``: two OpenMP pools);
- ``one_thread``: load and run on one worker thread;
- ``passing_load_run_worker``: load on a thread that ends, run on a worker thread (the node now,
  :func:`mlmp_ros.core.threads.in_passing_thread`).

Per layout: the median wall time of a pass (``--frames`` frames of 640x480 through the world
model, NoAdapt, the node's precision ``auto``), over ``--passes`` passes, in ``--repeats``
processes per layout, layouts interleaved so load on the machine hits them alike.

    python benchmarks/thread_pools.py > benchmarks/results/thread_pools.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time

from latency import machine

LAYOUTS = ("main", "load_main_run_worker", "one_thread", "passing_load_run_worker")


def _one(layout: str, frames: int, passes: int, model: str) -> float:
    """Median seconds per pass for ``layout`` in this process."""
    from mlmp_ros.core import Segmenter
    from mlmp_ros.core.config import Config
    from mlmp_ros.core.threads import in_passing_thread
    from mlmp_ros.world import render_scene
    from mlmp_ros.world.model import world_config

    images = [render_scene(4242 + i, 480, 640).image for i in range(frames)]
    if model == "world":
        cfg = world_config(**{"adaptation.method": "noadapt", "precision": "auto"})
    else:  # time only
        cfg = Config().replace(model=model, weights="random", device="cpu", precision="auto", resize=[224],
                               **{"adaptation.method": "noadapt"})

    def load() -> Segmenter:
        seg = Segmenter(cfg)
        seg.segment(images, output="input")  # warm-up where it loads
        return seg

    def run(seg: Segmenter, out: list[float]) -> None:
        seg.segment(images, output="input")
        for _ in range(passes):
            start = time.perf_counter()
            seg.segment(images, output="input")
            out.append(time.perf_counter() - start)

    times: list[float] = []
    if layout == "main":
        run(load(), times)
    elif layout == "one_thread":
        _join(lambda: run(load(), times))
    else:
        seg = load() if layout == "load_main_run_worker" else in_passing_thread(load)
        _join(lambda: run(seg, times))
    return statistics.median(times)


def _join(fn) -> None:
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--passes", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="world", help="world, or an open_clip name (random weights: time only)")
    ap.add_argument("--layout", choices=LAYOUTS, help=argparse.SUPPRESS)  # one measurement, in a child process
    args = ap.parse_args(argv)
    if args.layout:
        print(json.dumps(_one(args.layout, args.frames, args.passes, args.model)))
        return 0
    runs: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    for _ in range(args.repeats):
        for layout in LAYOUTS:
            command = [sys.executable, __file__, "--layout", layout, "--frames", str(args.frames),
                       "--passes", str(args.passes), "--model", args.model]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[layout].append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = statistics.median(runs["main"])
    report = {
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "layout"},
        "results": {layout: {"pass_ms_median": round(statistics.median(v) * 1e3, 1),
                             "pass_ms_per_process": [round(x * 1e3, 1) for x in v],
                             "vs_main": round(statistics.median(v) / base, 3)}
                    for layout, v in runs.items()},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
