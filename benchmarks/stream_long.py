"""A long world stream (10,000 frames by default) for the continual-collapse target (JSON).

The stream is ``--cycles`` repetitions of one sequence of world streams (fog, night,
dirt, none by default, each shift setting in over its part as world streams do): a
recurring stream, as in the recurring TTA protocol of PeTTA (Hoang et al., NeurIPS
2024), where the same shifts come back again and again.  The first and the last 10%
are then the same frames (cycle 0 and the last cycle), so the difference between their
mIoU at camera rate is what the adaptation state after 9,000 frames did, not the scenes
(each world stream is one panorama, so different scenes alone move a 1,000-frame mIoU by
several points).  ``--new-scenes`` gives every cycle its own seeds instead.

Costs come from a fixed clock (``--clock fixed:PREDICT_MS,STEP_MS``, default 40 ms a
prediction and 70 ms an adaptation step, the world model's times measured on this
machine's CPU by benchmarks/stream_bench.py), so a run is repeatable and does not depend
on what else runs on the machine; the segmenter itself runs for real on every frame.

    python benchmarks/stream_long.py --out benchmarks/results/stream_world_10k.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_bench import SAFE, SAFE_09, host, method_costs


def _long_configs(method: str) -> dict[str, dict]:
    ac = {"adaptation.method": method, "adaptation.schedule": "async", "adaptation.mode": "continual"}
    return {
        f"{method} async continual": ac,
        f"{method} async continual + safeguards": {**ac, **SAFE},
        # the bundle with a stronger pull toward the source weights (ROID's 0.99 -> 0.9)
        f"{method} async continual + safeguards, ensemble_alpha 0.9": {**ac, **SAFE_09},
    }


CONFIGS = {"noadapt": {"adaptation.method": "noadapt"}, **_long_configs("tent"), **_long_configs("mlmp")}
KEPT = ("miou_camera", "miou_processed", "miou_camera_first10", "miou_camera_last10", "frames", "frames_processed",
        "frames_without_labels", "latency_p50_s", "latency_p95_s", "resets", "adaptation_steps", "lag_frames_median")  # fmt: skip


def write_cycles(bags: Path, cycles: int, frames: int, shifts: list[str], size: str) -> list[list[Path]]:
    """Bags of ``cycles`` cycles, each with its own seeds (cycle 0 only when cycles == 1)."""
    from mlmp_ros.bench.cli import main as bench

    out = []
    for c in range(cycles):
        folder = bags / f"cycle{c:02d}"
        paths = [folder / f"world_stream_{s}" / "original" for s in shifts]
        if not all(p.exists() for p in paths):
            code = bench(["make-bags", "world", "--streams", ",".join(shifts), "--count", str(frames), "--size", size,
                          "--seed", str(1000 + 10 * c), "--corruptions", "original", "--out", str(folder),
                          "--no-progress"])  # fmt: skip
            if code:
                raise SystemExit(code)
        out.append(paths)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--frames", type=int, default=250, help="frames per shift in a cycle")
    ap.add_argument("--streams", default="fog,night,dirt,none")
    ap.add_argument("--size", default="256x192")
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--clock", default="per-method", help="'fixed:PREDICT_MS,STEP_MS' for every configuration, or "
                    "'per-method' (default): each method's costs timed once on this machine, then fixed")  # fmt: skip
    ap.add_argument("--bags", default="/tmp/stream_long_bags")
    ap.add_argument("--configs", default="", help="names from CONFIGS, separated by '|' (default: all)")
    ap.add_argument("--new-scenes", action="store_true", help="new scenes (seeds) every cycle instead of the "
                    "same frames recurring")  # fmt: skip
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--out", default="benchmarks/results/stream_world_10k.json")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from mlmp_ros.bench.camera.rate_replay import StreamData, StreamFrame, build_stream, replay_stream
    from mlmp_ros.core import Config

    torch.set_num_threads(args.threads)
    shifts = [s for s in args.streams.split(",") if s]
    cycles = write_cycles(Path(args.bags), args.cycles if args.new_scenes else 1, args.frames, shifts, args.size)
    frames, segments, info = [], [], None
    parts = [build_stream([str(p) for p in paths], limit=args.frames) for paths in cycles]
    for c in range(args.cycles):
        part = parts[c % len(parts)]
        name = [f"c{c}/{s.split('/')[0].removeprefix('world_stream_')}" for s in part.segments]
        index = {s: n for s, n in zip(part.segments, name)}
        frames += [StreamFrame(f.image, f.labels, index[f.segment]) for f in part.frames]
        segments += name
        info = info or part.info
    stream = StreamData(frames, segments, info)
    base = Config(model="mlmp-world", weights="world", device="cpu")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    runs = results.setdefault("runs", {})
    results.update({
        "what": f"long world stream: {args.cycles} cycles of {' -> '.join(shifts)} ({args.frames} frames each, "
                f"{'new scenes every cycle' if args.new_scenes else 'the same frames every cycle: recurring'}), {len(frames)} frames at {args.rate} Hz, {args.size}, bundled mlmp-world "
                f"model, 10 steps, lr 1e-3, clock {args.clock} (per configuration: its 'clock'); first/last 10% = cycle 0 / cycle {args.cycles - 1}",
        "host": host(),
        "safeguards": SAFE,
    })  # fmt: skip
    names = [n for n in args.configs.split("|") if n] or list(CONFIGS)
    clocks = {n: args.clock for n in names}
    if args.clock == "per-method":
        costs = results.get("method_costs_ms") or {}
        todo = sorted({CONFIGS[n]["adaptation.method"] for n in names} - set(costs))
        if todo:  # timed once and kept, so a resumed run uses the same clock
            costs.update({m: list(c) for m, c in method_costs(stream, base, todo).items()})
            results["method_costs_ms"] = costs
        clocks = {n: "fixed:{},{}".format(*costs[CONFIGS[n]["adaptation.method"]]) for n in names}
    for name in names:
        if name in runs and runs[name].get("frames") == len(frames):
            print(f"{name}: done before, kept", flush=True)
            continue
        t0 = time.perf_counter()
        report = replay_stream(stream, base.replace(**CONFIGS[name]), rate_hz=args.rate, clock=clocks[name])
        r = {k: report[k] for k in KEPT}
        r["settings"] = CONFIGS[name]
        r["clock"] = clocks[name]
        r["wall_s"] = time.perf_counter() - t0
        # mIoU at camera rate per cycle (mean over its segments' camera-rate mIoU), to see a trend
        per_cycle: dict[str, list[float]] = {}
        for s in report["segments"]:
            per_cycle.setdefault(s["segment"].split("/")[0], []).append(s["miou_camera"])
        r["miou_camera_per_cycle_mean_of_segments"] = {c: float(np.mean(v)) for c, v in per_cycle.items()}
        runs[name] = r
        print(f"{name}: mIoU camera {r['miou_camera']:.2f}, first 10% {r['miou_camera_first10']:.2f}, last 10% "
              f"{r['miou_camera_last10']:.2f}, resets {r['resets']}, wall {r['wall_s']:.0f} s", flush=True)  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
