#!/usr/bin/env python3
"""The single-camera node's figures before and after a change, in one run; prints JSON.

Runs ``benchmarks/node_throughput.py`` (the sample stream at 10 Hz into one node: latency,
output rate, model time, node overhead) and ``benchmarks/multi_camera.py --cameras 1,4`` (world
frames: one node for 1 and 4 cameras, against one node per camera) from two checkouts, each with
its own code first on ``PYTHONPATH``, rounds alternating which checkout goes first so load hits
both alike.  ``--base`` is the earlier checkout (e.g. ``git worktree add /tmp/base <commit>``).

    python benchmarks/before_after.py --base /tmp/base > benchmarks/results/node_before_after.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from latency import machine

HERE = Path(__file__).resolve().parents[1]
THROUGHPUT_KEYS = ("frames_published", "frames_processed", "output_rate_hz", "latency_median_ms", "latency_p95_ms",
                   "model_ms_mean", "node_overhead_ms_mean")


def _run(checkout: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout), str(checkout / "benchmarks")])}
    return subprocess.run([sys.executable, *args], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=timeout, check=True)


def throughput(checkout: Path, frames: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.json"
        _run(checkout, ["benchmarks/node_throughput.py", "--configs", "noadapt:0", "mlmp:1", "--frames", str(frames),
                        "--out", str(out)], 1800)
        report = json.loads(out.read_text())
    return {c["name"]: {k: c.get(k) for k in THROUGHPUT_KEYS} for c in report["configs"]}


def cameras(checkout: Path, seconds: float) -> dict[str, Any]:
    done = _run(checkout, ["benchmarks/multi_camera.py", "--cameras", "1,4", "--seconds", str(seconds),
                           "--batch-rounds", "1"], 3000)
    results = json.loads(done.stdout)["results"]
    out = {}
    for key in ("1_cameras", "4_cameras"):
        one = results[key]["one_node"]
        out[key] = {"aggregate_processed_fps": one["aggregate_processed_fps"], "rss_mb": one["rss_mb"],
                    "latency_p50_ms": [c["latency_p50_ms"] for c in one["per_camera"]],
                    "latency_p95_ms": [c["latency_p95_ms"] for c in one["per_camera"]]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the earlier checkout (its repository root)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, each running both checkouts (default 2)")
    ap.add_argument("--frames", type=int, default=80, help="node_throughput frames per configuration (default 80)")
    ap.add_argument("--seconds", type=float, default=8.0, help="multi_camera seconds per case (default 8)")
    args = ap.parse_args(argv)
    sides = {"before": args.base.resolve(), "after": HERE}
    rounds = []
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        result: dict[str, Any] = {"order": order}
        for side in order:
            result[side] = {"loadavg": list(os.getloadavg()), "throughput": throughput(sides[side], args.frames),
                            "cameras": cameras(sides[side], args.seconds)}
        rounds.append(result)
    print(json.dumps({"machine": machine(), "checkouts": {k: str(v) for k, v in sides.items()},
                      "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "rounds": rounds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
