#!/usr/bin/env python3
"""Both sides of ``async``: prediction latency with and without an adapter beside it; prints JSON.

In one process, frames are fed to a :class:`~mlmp_ros.core.schedule.ScheduledSegmenter` at a fixed
rate, in blocks that alternate between variants round after round (a busy machine slows all of
them alike):

- ``noadapt``: the predictions alone (the NoAdapt method, sync);
- ``robot/<split>``: the robot configuration (mlmp_ros/robot.py: MLMP, async, continual,
  safeguards) with prediction first (core/priority.py) and the CPU thread split ``<split>``
  (``adapt_half``: prediction keeps every thread, adaptation half; ``share``: both every thread;
  ``halves``: both half);
- ``robot/nopause/halves``: the robot configuration as it ran before prediction first (no pause,
  both sides on half of the threads).

Reported per variant: prediction p50 / p95 (ms) and their ratio to ``noadapt``, adaptation steps
per predicted frame, seconds the adapter waited for predictions per frame.  Runs on CUDA when
present (there the thread split does not apply; predictions run on a high-priority CUDA stream),
else on the CPU.  Frames come from a bench bag (``--bag``) or are random (timing only).

    python benchmarks/adapt_beside.py --model mlmp-world --weights world --rate 10
    python benchmarks/adapt_beside.py --model ViT-B-16-quickgelu --weights random --rate 2 --size 224
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

VARIANTS = ("noadapt", "robot/adapt_half", "robot/share", "robot/nopause/halves")


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def frames_from(bag: str | None, size: int, count: int) -> tuple[list[np.ndarray], dict | None]:
    """Images of ``bag`` (and its info) or ``count`` random ``size`` x ``size`` images."""
    if bag:
        from mlmp_ros.bench.data.bags import open_bag

        opened = open_bag(bag)
        return [f.image for _, f in zip(range(count), opened)], opened.info
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)], None


def make_config(args, info: dict | None):
    from mlmp_ros.core import Config

    cfg = Config(model=args.model, weights=args.weights, device=args.device)
    if info is not None:
        from mlmp_ros.bench.offline.options import segmenter_config

        return segmenter_config(cfg, info)
    return cfg.replace(classes=["road", "car", "person", "tree", "sky", "building"], resize=[args.size, args.size],
                       window=[args.size], stride=[args.size // 2])  # fmt: skip


def block(scheduled, images: list[np.ndarray], rate: float) -> dict:
    """Feed ``images`` at ``rate`` Hz; each frame's prediction time and the adaptation side's steps and waits."""
    before = scheduled.stats()
    latencies = []
    start = time.perf_counter()
    for i, img in enumerate(images):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        scheduled.segment(img)
        latencies.append(time.perf_counter() - t0)
    time.sleep(1.0 / rate)  # the last frame's period: adaptation may use it
    after = scheduled.stats()
    n = len(images)
    return {"latencies": latencies, "steps": after["steps"] - before["steps"],
            "wait_s": after["adapt_wait_s"] - before["adapt_wait_s"], "frames": n}  # fmt: skip


def open_variant(name: str, cfg, loaded):
    """A ScheduledSegmenter for variant ``name`` (the thread split set first: it applies at start)."""
    from mlmp_ros.core import Segmenter
    from mlmp_ros.core.priority import THREADS, Priority
    from mlmp_ros.core.schedule import ScheduledSegmenter
    from mlmp_ros.robot import ROBOT_ADAPTATION

    if name == "noadapt":
        return ScheduledSegmenter(Segmenter(cfg.replace(**{"adaptation.method": "noadapt"}), loaded=loaded))
    parts = name.split("/")
    THREADS.split = parts[-1]
    seg = Segmenter(cfg.replace(**ROBOT_ADAPTATION), loaded=loaded)
    return ScheduledSegmenter(seg, priority=Priority(pause="nopause" not in parts))


def summarise(runs: dict[str, list[dict]]) -> dict:
    out = {}
    for name, blocks in runs.items():
        lat = [v for b in blocks for v in b["latencies"]]
        frames = sum(b["frames"] for b in blocks)
        out[name] = {"frames": frames, "p50_ms": 1e3 * percentile(lat, 50), "p95_ms": 1e3 * percentile(lat, 95),
                     "steps_per_frame": sum(b["steps"] for b in blocks) / max(1, frames),
                     "adapt_wait_s_per_frame": sum(b["wait_s"] for b in blocks) / max(1, frames)}  # fmt: skip
    base = out.get("noadapt")
    for row in out.values():
        if base:
            row["p50_ratio"] = row["p50_ms"] / base["p50_ms"]
            row["p95_ratio"] = row["p95_ms"] / base["p95_ms"]
    return out


def measure(args) -> dict:
    import torch

    from mlmp_ros.core import load_clip
    from mlmp_ros.core.backbone import resolve_device

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from latency import machine

    warnings.simplefilter("ignore")
    args.device = str(resolve_device(args.device))
    images, info = frames_from(args.bag, args.size, args.frames * args.rounds)
    cfg = make_config(args, info)
    torch.manual_seed(0)
    loaded = load_clip(cfg.model, cfg.weights, device=cfg.device)
    report = {"benchmark": "adapt_beside", "machine": machine(), "device": args.device, "model": cfg.model,
              "weights": cfg.weights, "rate_hz": args.rate, "frames_per_block": args.frames, "rounds": args.rounds,
              "omp": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}}  # fmt: skip
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    for r in range(args.rounds):
        imgs = images[r * args.frames : (r + 1) * args.frames] or images[: args.frames]
        for name in args.variants:
            scheduled = open_variant(name, cfg, loaded)
            scheduled.segment(imgs[0])  # warm-up, untimed
            runs[name].append(block(scheduled, imgs, args.rate))
            scheduled.close()
    report["variants"] = summarise(runs)
    report["loadavg_at_end"] = list(os.getloadavg())
    report["torch_threads_at_end"] = torch.get_num_threads()
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mlmp-world")
    p.add_argument("--weights", default="world")
    p.add_argument("--device", default="auto")
    p.add_argument("--bag", default=None, help="bench bag whose frames (and window protocol) are used")
    p.add_argument("--size", type=int, default=224, help="random frames' size (without --bag)")
    p.add_argument("--rate", type=float, default=10.0, help="frames per second fed")
    p.add_argument("--frames", type=int, default=25, help="frames per block")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--out", help="also write the JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    report = measure(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
