#!/usr/bin/env python3
"""Throughput of the running node over DDS on the bundled sample stream; prints JSON.

For each configuration a fresh ``mlmp-segment`` process is started; the sample stream
(640x480 rgb8, looped and restamped) is played into it at 10 Hz over loopback DDS, and
the outputs are recorded.  Reported per configuration: input and output rate,
end-to-end latency (publish -> labels received) median and p95, frames dropped, the
node's RSS over time, the segmenter's time per frame and the node's own overhead per
frame (waking the worker, converting the image, publishing the outputs), from the
node's /diagnostics.  The budget for that overhead is 10 ms per 640x480 frame.

    python benchmarks/node_throughput.py                        # tiny random model, CPU
    python benchmarks/node_throughput.py --model ViT-B-16-quickgelu --weights openai --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import time
from pathlib import Path

from mlmp_ros.demo.sample_stream import sample_raw_messages
from mlmp_ros.resources import config_path
from mlmp_ros.ros.live import LiveSession, NodeProcess

REPO = Path(__file__).resolve().parents[1]

OVERHEAD_BUDGET_MS = 10.0
CONFIGS = ("noadapt:0", "mlmp:10", "mlmp:1")  # method:steps


def stream(frames: int) -> list[tuple[int, bytes]]:
    """``frames`` serialized 640x480 rgb8 images: the sample stream, looped."""
    return list(itertools.islice(itertools.cycle(list(sample_raw_messages())), frames))


def node_overhead(diagnostics: list, start: float) -> dict:
    """Per-frame means over the run, weighting each diagnostics period by its frames."""
    periods = [d for d in diagnostics if d.received >= start]
    weighted: dict[str, float] = {}
    frames = 0
    worst = 0.0
    previous = None
    for d in periods:
        done = int(d.values["frames_processed"])
        n = done - previous if previous is not None else 0
        previous = done
        if n <= 0 or not d.values["overhead_ms"]:
            continue
        frames += n
        for key in ("overhead_ms", "overhead_schedule_ms", "overhead_convert_ms", "overhead_publish_ms", "model_ms"):
            weighted[key] = weighted.get(key, 0.0) + n * float(d.values[key])
        worst = max(worst, float(d.values["overhead_max_ms"]))
    out = {k: round(v / frames, 3) for k, v in weighted.items()} if frames else {}
    out["overhead_max_ms"] = round(worst, 3)
    out["frames_in_diagnostics"] = frames
    return out


def run_config(args: argparse.Namespace, method: str, steps: int, frames: list) -> dict:
    params = {
        "model": args.model,
        "weights": args.weights,
        "device": args.device,
        "adaptation.method": method,
        "adaptation.steps": steps,
        "diagnostics.period": 0.5,
    }
    env = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}
    node = NodeProcess(args.params_file, params, namespace=f"mlmp_bench_{method}_{steps}", env=env)
    with LiveSession(node, record=("labels",), keep_arrays=False, rss_period=0.5) as live:
        warm = live.play(frames[: args.warmup], paced=True, restamp=True, timeout=300.0)
        start = time.monotonic()
        result = live.play(frames, rate_hz=args.rate, restamp=True, timeout=300.0)
        live.wait_for_diagnostics(
            lambda d: int(d.values["frames_processed"]) >= warm.processed + result.processed, timeout=30.0
        )
        overhead = node_overhead(live.diagnostics, start)
        last = live.diagnostics[-1].values
    summary = result.summary()
    rss = [mb for _, mb in summary["rss_mb"]]
    return {
        "name": f"{method}-{steps}",
        "method": method,
        "steps": steps,
        **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items() if k != "rss_mb"},
        "frames_dropped_by_node": int(last["frames_dropped"]),
        "model_ms_mean": overhead.pop("model_ms", None),
        "node_overhead_ms_mean": overhead.pop("overhead_ms", None),
        "node_overhead_ms_max": overhead.pop("overhead_max_ms"),
        "node_overhead_breakdown_ms": {k.replace("overhead_", "").replace("_ms", ""): v for k, v in overhead.items()
                                       if k.startswith("overhead_")},
        "rss_mb_over_time": summary["rss_mb"],
        "rss_mb_start_end_max": [rss[0], rss[-1], max(rss)] if rss else None,
        "device": last["device"],
        "weights": last["weights"],
        "node_exit_code": node.returncode,
    }


def _one_line(match: re.Match) -> str:
    """A list of numbers on one line (the RSS samples would take a line per number)."""
    return "[" + ", ".join(x.strip() for x in match.group(1).split(",")) + "]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlmp-tiny-test")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--params-file", type=Path, default=config_path("segment.yaml"))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), help="method:steps, e.g. mlmp:10")
    parser.add_argument("--rate", type=float, default=10.0, help="camera rate in Hz")
    parser.add_argument("--frames", type=int, default=80, help="frames played per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="paced frames before the timed run")
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the node (0: leave as is)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "node_throughput.json")
    args = parser.parse_args(argv)

    frames = stream(args.frames)
    report = {
        "benchmark": "node_throughput",
        "stream": "bundled sample stream, 640x480 rgb8, looped, restamped at sending",
        "rate_hz": args.rate,
        "frames": args.frames,
        "model": args.model,
        "weights": args.weights,
        "device": args.device,
        "node_threads": args.threads or os.environ.get("OMP_NUM_THREADS", "default"),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                 "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "overhead_budget_ms": OVERHEAD_BUDGET_MS,
        "configs": [],
    }
    for spec in args.configs:
        method, steps = spec.split(":")
        report["configs"].append(run_config(args, method, int(steps), frames))
    means = [c["node_overhead_ms_mean"] for c in report["configs"] if c["node_overhead_ms_mean"] is not None]
    report["node_overhead_within_budget"] = bool(means) and max(means) < OVERHEAD_BUDGET_MS
    text = re.sub(r"\[\s*([-\d.eE+,\s]+?)\s*\]", _one_line, json.dumps(report, indent=2))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
