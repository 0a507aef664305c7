#!/usr/bin/env python3
"""Per-frame latency and peak memory of the adaptation methods; prints JSON.

Every (method, device, precision) runs in a fresh process, so peak memory is its own.
Defaults follow the issue: ViT-B-16-quickgelu with random weights, one 224x224 image
per frame (batch 1), 10 steps, median of 5 frames after one warm-up frame; CPU fp32,
CPU bf16, and CUDA when present.  The JSON also reports how far bf16 moves the
probabilities and labels from fp32 on the same input, and each baseline's time as a
multiple of MLMP's beside the paper's ratios (V100, ViT-L/14).

    python benchmarks/latency.py --out benchmarks/results/latency_cpu.json
    python benchmarks/latency.py --model ViT-L-14-quickgelu --devices cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

# Paper, one V100, ViT-L/14, per image: seconds.
PAPER_SECONDS = {"mlmp": 0.541, "tpt": 0.445, "clipartt": 3.494, "watt": 5.197}
CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip


def run_one(spec: dict) -> dict:
    """Time one configuration in this process."""
    import torch

    from mlmp_ros.core import Config, Segmenter

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    cfg = Config(
        model=spec["model"],
        weights=spec["weights"],
        device=spec["device"],
        precision=spec["precision"],
        classes=CLASSES,
        resize=[spec["size"], spec["size"]],
        window=[spec["size"]],
        stride=[spec["size"] // 2],
    ).replace(**{"adaptation.method": spec["method"], "adaptation.steps": spec["steps"]})
    seg = Segmenter(cfg)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (spec["size"], spec["size"], 3), dtype=np.uint8) for _ in range(spec["batch"])]
    cuda = seg.device.type == "cuda"
    for _ in range(spec["warmup"]):
        seg.segment(images, output="processing")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, model_times = [], []
    result = None
    for _ in range(spec["frames"]):
        t0 = time.perf_counter()
        result = seg.segment(images, output="processing", probabilities=bool(spec.get("keep_probs")))
        times.append(time.perf_counter() - t0)
        model_times.append(result.timings["model"])
    out = {
        **{k: spec[k] for k in ("method", "device", "precision", "model", "steps", "batch", "size")},
        "device_name": torch.cuda.get_device_name(seg.device) if cuda else platform.processor() or "cpu",
        "frames": len(times),
        "ms_median": 1000 * statistics.median(times),
        "ms_min": 1000 * min(times),
        "ms_max": 1000 * max(times),
        "model_ms_median": 1000 * statistics.median(model_times),
        "trainable_parameters": seg.method.parameter_count(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }
    if hasattr(seg.method, "describe"):
        out["notes"] = seg.method.describe()
    if cuda:
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if spec.get("keep_probs"):
        np.save(spec["keep_probs"], result.frames[0].probabilities)  # the last timed frame
    return out


def _spawn(spec: dict) -> dict:
    cmd = [sys.executable, __file__, "--one", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {**spec, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import torch

    try:
        bf16 = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:  # noqa: BLE001
        bf16 = False
    cpu = "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": bf16,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--model", default="ViT-B-16-quickgelu")
    p.add_argument("--weights", default="random")
    p.add_argument("--methods", nargs="+", default=["noadapt", "tent", "mlmp", "tpt", "clipartt", "watt"])
    p.add_argument("--devices", nargs="+", default=None, help="cpu, cpu-bf16, cuda, cuda-bf16 (default: cpu, cpu-bf16, and cuda if present)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--bf16-methods", nargs="+", default=["noadapt", "tent", "mlmp"], help="methods also timed in bf16")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0

    import tempfile

    import torch

    devices = args.devices or (["cpu", "cpu-bf16"] + (["cuda"] if torch.cuda.is_available() else []))
    base = {"model": args.model, "weights": args.weights, "steps": args.steps, "size": args.size, "batch": args.batch, "frames": args.frames, "warmup": args.warmup}
    info = machine()
    results = []
    probs_dir = tempfile.mkdtemp(prefix="mlmp_latency_")
    for dev in devices:
        device, _, prec = dev.partition("-")
        for method in args.methods:
            if prec == "bf16" and method not in args.bf16_methods:
                continue
            spec = {**base, "method": method, "device": device, "precision": prec or "fp32"}
            if method == "mlmp":  # keep MLMP's probabilities: bf16 is compared with fp32 on them
                spec["keep_probs"] = os.path.join(probs_dir, f"{device}-{spec['precision']}.npy")
            if device == "cpu" and prec == "bf16" and not info["cpu_native_bf16"] and method != "noadapt":
                # Without native bf16 a backward matmul takes ~20x its fp32 time (minutes per
                # frame); one frame is measured and the JSON says so.
                spec.update(frames=1, warmup=0, note="one frame: this CPU has no native bf16 (emulated, very slow)")
            res = _spawn(spec)
            if "note" in spec:
                res["note"] = spec["note"]
            results.append(res)
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)

    report = {"benchmark": "latency", "machine": info, "settings": base, "results": results}
    report["bf16_vs_fp32"] = _precision_drift(probs_dir, devices)
    report["baseline_ratios"] = _ratios(results)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


def _precision_drift(probs_dir: str, devices: list[str]) -> dict | None:
    """MLMP's probabilities and labels in bf16 against fp32: same weights, same input, same runs as timed."""
    for device in ("cuda", "cpu"):
        fp32, bf16 = (os.path.join(probs_dir, f"{device}-{p}.npy") for p in ("fp32", "bf16"))
        if os.path.exists(fp32) and os.path.exists(bf16):
            a, b = np.load(fp32), np.load(bf16)
            return {
                "device": device,
                "method": "mlmp",
                "max_abs_probability_diff": float(np.abs(a - b).max()),
                "mean_abs_probability_diff": float(np.abs(a - b).mean()),
                "label_agreement": float((a.argmax(0) == b.argmax(0)).mean()),
            }
    return None


def _ratios(results: list[dict]) -> list[dict]:
    out = []
    for dev in sorted({(r["device"], r["precision"]) for r in results if "error" not in r}):
        rows = {r["method"]: r for r in results if (r["device"], r["precision"]) == dev and "error" not in r}
        if "mlmp" not in rows:
            continue
        for method, paper in PAPER_SECONDS.items():
            if method == "mlmp" or method not in rows:
                continue
            ours = rows[method]["ms_median"] / rows["mlmp"]["ms_median"]
            ref = paper / PAPER_SECONDS["mlmp"]
            out.append({"device": dev[0], "precision": dev[1], "method": method, "ours_vs_mlmp": round(ours, 3), "paper_vs_mlmp": round(ref, 3), "within_paper_ratio": ours <= ref})
    return out


if __name__ == "__main__":
    raise SystemExit(main())
