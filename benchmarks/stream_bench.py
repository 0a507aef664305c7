"""Schedules x modes x safeguards on a chained world stream, scored at camera rate (JSON).

Writes world stream bags (``mlmp-bench make-bags world --streams``) unless ``--bags`` has
them, chains them (fog -> night -> dirt by default: each shift sets in over its part),
and replays the chain at ``--rate`` Hz through ``mlmp_ros.bench.camera.rate_replay`` for every
configuration below, with the bundled world model on this CPU.  Times are measured
(the simulated clock advances by each prediction's and adaptation's measured time), so
they depend on the machine and on what else runs on it.

    python benchmarks/stream_bench.py --frames 150 --out benchmarks/results/stream_world.json
    # ViT-B-16 latency over 20 processed frames of a long stream (one configuration per call)
    python benchmarks/stream_bench.py --vitb --threads 1 --streams fog --frames 30 --seconds 4000 \
        --processed 20 --configs noadapt --out benchmarks/results/stream_vitb_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

SAFE = {
    "adaptation.safeguards.reliable_e0": 0.4,
    "adaptation.safeguards.ensemble_alpha": 0.99,
    "adaptation.safeguards.collapse": True,
    "adaptation.safeguards.drift": True,
}
SAFE_09 = {**SAFE, "adaptation.safeguards.ensemble_alpha": 0.9}  # a stronger pull toward the source


def _schedules(method: str) -> dict[str, dict]:
    """The same schedules, modes and safeguards for every adapting method."""
    m = {"adaptation.method": method}
    ac = {**m, "adaptation.schedule": "async", "adaptation.mode": "continual"}
    return {
        f"{method} sync episodic": m,
        f"{method} sync continual": {**m, "adaptation.mode": "continual"},
        f"{method} async episodic": {**m, "adaptation.schedule": "async"},
        f"{method} async continual": ac,
        f"{method} async continual + safeguards": {**ac, **SAFE},
        f"{method} async continual + safeguards, ensemble_alpha 0.9": {**ac, **SAFE_09},
    }


CONFIGS = {"noadapt": {"adaptation.method": "noadapt"}, **_schedules("tent"), **_schedules("mlmp")}
# one safeguard at a time (the ablation of the bundle above)
ASYNC_CONTINUAL = {"adaptation.method": "tent", "adaptation.schedule": "async", "adaptation.mode": "continual"}
CONFIGS.update(
    {
        "tent async continual + reliable_e0 0.4": {**ASYNC_CONTINUAL, "adaptation.safeguards.reliable_e0": 0.4},
        "tent async continual + ensemble_alpha 0.99": {**ASYNC_CONTINUAL, "adaptation.safeguards.ensemble_alpha": 0.99},
        "tent async continual + collapse": {**ASYNC_CONTINUAL, "adaptation.safeguards.collapse": True},
        "tent async continual + drift": {**ASYNC_CONTINUAL, "adaptation.safeguards.drift": True},
    }
)
KEPT = ("miou_camera", "miou_processed", "miou_camera_first10", "miou_camera_last10", "frames", "frames_processed", "frames_without_labels", "latency_p50_s",
        "latency_p95_s", "resets", "adaptation_steps", "lag_frames_median", "segments")  # fmt: skip


def host() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
        simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in flags]
    except (OSError, StopIteration):
        simd = []
    return {"cpu": cpu, "cores": os.cpu_count(), "simd": simd, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
            "note": "shared CPU (other jobs ran at the same time): times are noisy"}  # fmt: skip


def method_costs(stream, base, methods: list[str], frames: int = 6) -> dict[str, tuple[float, float]]:
    """Per method: (ms a prediction, ms an adaptation step), timed on this machine on the stream's first frames.

    A prediction is the method's own (MLMP reads several blocks under several templates);
    a step is the time of a 10-step frame less its prediction, over 10.  The medians of
    ``frames`` frames after one warm-up frame.
    """
    import numpy as np

    from mlmp_ros.bench.offline.options import segmenter_config
    from mlmp_ros.core import Segmenter

    costs = {}
    images = [f.image for f in stream.frames[: frames + 1]]
    for method in methods:
        times = {}
        for steps in (0, 10):
            cfg = segmenter_config(base.replace(**{"adaptation.method": method, "adaptation.steps": steps}), stream.info)
            seg = Segmenter(cfg)
            per = []
            for img in images:
                t0 = time.perf_counter()
                seg.segment([img])
                per.append(time.perf_counter() - t0)
            times[steps] = float(np.median(per[1:])) * 1000.0
        predict = times[0]
        step = 0.0 if method == "noadapt" else max(times[10] - predict, 0.0) / 10.0
        costs[method] = (round(predict, 1), round(step, 1))
        print(f"cost of {method}: prediction {predict:.1f} ms, step {step:.1f} ms", flush=True)
    return costs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=150, help="frames per world stream")
    ap.add_argument("--streams", default="fog,night,dirt")
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=0.0, help="camera seconds per stream: the bag's frames are "
                    "cycled to fill them (default: each bag once); a slow configuration needs a long stream to "
                    "process many frames")  # fmt: skip
    ap.add_argument("--bags", default="", help="folder with world_stream_<shift>/original bags (default: write them)")
    ap.add_argument("--processed", type=int, default=0, help="stop each configuration after this many processed "
                    "frames (default: the whole stream); with a long --seconds, a latency run of N frames")  # fmt: skip
    ap.add_argument("--configs", default="", help="names from CONFIGS, separated by '|' (default: all)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--out", default="benchmarks/results/stream_world.json")
    ap.add_argument("--clock", default="measured", help="'measured' (each prediction's and step's time as it runs), "
                    "'fixed:PREDICT_MS,STEP_MS' for every configuration, or 'per-method': each method's costs timed "
                    "once at the start, then a fixed clock per method (repeatable; the load while the runs go on "
                    "does not change the scores)")  # fmt: skip
    ap.add_argument("--frame-areas", action="store_true", help="keep every camera frame's per-class intersection "
                    "and union (frame_areas), from which intervals over frames are computed "
                    "(benchmarks/stream_intervals.py)")  # fmt: skip
    ap.add_argument("--vitb", action="store_true", help="latency only: ViT-B-16 with random weights, windows of "
                    "224 (stride 112) on frames resized to 448x336; configs noadapt and mlmp sync/async")  # fmt: skip
    args = ap.parse_args(argv)

    import torch

    from mlmp_ros.bench.camera.rate_replay import build_stream, replay_stream
    from mlmp_ros.bench.cli import main as bench
    from mlmp_ros.core import Config

    torch.set_num_threads(args.threads)
    bags = Path(args.bags or tempfile.mkdtemp(prefix="stream_bench_"))
    shifts = [s for s in args.streams.split(",") if s]
    paths = [bags / f"world_stream_{s}" / "original" for s in shifts]
    if not all(p.exists() for p in paths):
        code = bench(["make-bags", "world", "--streams", args.streams, "--count", str(args.frames),
                      "--corruptions", "original", "--out", str(bags), "--no-progress"])  # fmt: skip
        if code:
            return code
    per_segment = max(1, round(args.seconds * args.rate)) if args.seconds > 0 else None
    stream = build_stream([str(p) for p in paths], limit=args.frames, frames_per_segment=per_segment)
    base = Config(model="mlmp-world", weights="world", device="cpu")
    overrides = None
    default = list(CONFIGS)
    if args.vitb:
        base = Config(model="ViT-B-16-quickgelu", weights="random", device="cpu")
        overrides = {"resize": [448, 336], "window": [224], "stride": [112]}
        CONFIGS["mlmp async episodic"] = {"adaptation.method": "mlmp", "adaptation.schedule": "async"}
        default = ["noadapt", "mlmp sync episodic", "mlmp async episodic"]
    names = [n for n in args.configs.split("|") if n] or default
    clocks = {name: args.clock for name in names}
    if args.clock == "per-method":
        methods = sorted({CONFIGS[n]["adaptation.method"] for n in names})
        costs = method_costs(stream, base, methods)
        clocks = {n: "fixed:{},{}".format(*costs[CONFIGS[n]["adaptation.method"]]) for n in names}
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    runs = results.setdefault("runs", {})
    results.update(
        {
            "what": (
                "LATENCY ONLY (random weights): ViT-B-16-quickgelu, 448x336, windows 224/112; " if args.vitb else ""
            )
            + f"mlmp-bench stream: world streams {' -> '.join(shifts)} chained ({args.frames} frames each"
            + (", cycled to fill each run's camera_s" if args.vitb else "") + "), "
            f"{args.rate} Hz camera, {base.model} ({base.weights} weights), 10 steps, lr 1e-3, "
            + ("measured times on a simulated clock" if args.clock == "measured" else f"clock {args.clock}"),
            "host": host(),
            "safeguards": SAFE,
        }
    )
    for name in names:
        t0 = time.perf_counter()
        report = replay_stream(stream, base.replace(**CONFIGS[name]), rate_hz=args.rate, overrides=overrides,
                               stop_after=args.processed or None, clock=clocks[name])  # fmt: skip
        runs[name] = {k: report[k] for k in KEPT}
        runs[name]["settings"] = CONFIGS[name]
        if args.frame_areas:
            tl = report["timeline"]
            runs[name]["frame_areas"] = {"inter": [t["inter"] for t in tl], "union": [t["union"] for t in tl]}
        runs[name]["clock"] = clocks[name]
        runs[name]["camera_s"] = report["frames"] / args.rate  # the scored part (all of it without --processed)
        runs[name]["torch_threads"] = args.threads
        runs[name]["load_average_after"] = os.getloadavg()
        runs[name]["wall_s"] = time.perf_counter() - t0
        r = runs[name]
        print(f"{name}: mIoU camera {r['miou_camera']:.2f}, processed {r['miou_processed']:.2f} "
              f"({r['frames_processed']}/{r['frames']}), latency p50 {r['latency_p50_s']:.3f} s, "
              f"resets {r['resets']}", flush=True)  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
