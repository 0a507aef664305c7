#!/usr/bin/env python3
"""Per-frame latency of the adaptation methods per precision and compile setting; prints JSON.

One process, one run: every configuration (method x precision x compile) is built on the
same weights, then frames alternate between configurations round after round, so a
busy or throttling machine slows all of them alike and the ratios hold.  Reported per
configuration: median / min frame time, its ratio to this project's own fp32 eager path
(same method), the ratio to the reference implementation when ``--reference`` points at
a checkout of it (github.com/dosowiechi/MLMP, run on the same weights and input), the
fraction of the matrix-product floor reached (the frame's matrix FLOPs, counted, over the
machine's GEMM rate in that precision, measured in the same run between frames), label
agreement with fp32, compile time, and on CUDA the peak GPU memory of its frames.

Random weights (speed does not depend on weight values); no network needed.

    python benchmarks/latency.py                        # CPU: ViT-B/16; CUDA: ViT-B/16 + ViT-L/14
    python benchmarks/latency.py --reference ~/MLMP     # also time the reference code
    python benchmarks/latency.py --configs fp32 bf16 bf16+compile --out result.json
    python benchmarks/latency.py beside --rate 10      # both sides of async: prediction latency with and
                                                       # without an adapter beside it (benchmarks/adapt_beside.py;
                                                       # CUDA when present: high-priority prediction stream)

On a GPU the default run (two models, noadapt / tent / mlmp, fp32 / bf16 / fp16 eager
and bf16 compiled) is sized to finish in under 5 minutes (``--budget-s``: what is left
unstarted when the budget runs out is listed as skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings

import numpy as np

CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
PRECISIONS = ("fp32", "bf16", "fp16")


# --------------------------------------------------------------------- machine
def cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_int8", "fma")
    flags: set[str] = set()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    return [f for f in wanted if f in flags]


def machine() -> dict:
    import torch

    from mlmp_ros.core.methods.precision import cpu_has_native_bf16

    cpu = platform.processor() or "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    cuda = torch.cuda.is_available()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if cuda else None,
        "cuda_bf16": bool(cuda and torch.cuda.is_bf16_supported()),
    }


# ------------------------------------------------------------------------ GEMM
def gemm_rate(device, dtype, m: int, k: int, n: int, seconds: float = 0.25) -> float:
    """GFLOP/s of (m x k) @ (k x n) in ``dtype`` on ``device`` (best of short bursts)."""
    import torch

    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if a.is_cuda else (lambda: None)
    a @ b
    sync()
    best, spent = 0.0, 0.0
    while spent < seconds:
        reps = 1
        t0 = time.perf_counter()
        while True:
            a @ b
            sync()
            dt = time.perf_counter() - t0
            if dt > 0.02 or reps >= 64:
                break
            reps += 1
        spent += dt
        best = max(best, 2.0 * m * k * n * reps / dt / 1e9)
    return best


# --------------------------------------------------------------------- configs
def parse_config(text: str) -> dict:
    """'fp32', 'bf16+compile', 'auto' (precision auto, compile auto) -> settings."""
    parts = text.split("+")
    prec = parts[0]
    if prec not in (*PRECISIONS, "auto"):
        raise SystemExit(f"unknown configuration '{text}': use fp32, bf16, fp16 or auto, optionally +compile")
    extra = set(parts[1:])
    if extra - {"compile"}:
        raise SystemExit(f"unknown configuration '{text}': only '+compile' may follow the precision")
    comp = "on" if "compile" in extra else ("auto" if prec == "auto" else "off")
    return {"label": text, "precision": prec, "compile": comp}


def default_configs(device: str, native_bf16: bool) -> list[str]:
    if device == "cuda":
        return ["fp32", "bf16", "fp16", "bf16+compile"]
    return ["fp32", "bf16"] if native_bf16 else ["fp32"]


# ------------------------------------------------------------------- reference
def reference_methods(path: str, loaded, methods: list[str], layers: int, steps: int, lr: float, device):
    """The reference implementation's method objects on ``loaded``'s weights (same input)."""
    import torch

    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(os.path.join(path, "adapt", "mlmp.py")):
        raise SystemExit(f"--reference {path} is not a checkout of dosowiechi/MLMP (no adapt/mlmp.py)")
    sys.path.insert(0, path)
    import adapt.mlmp as ref_mlmp
    import adapt.tent as ref_tent
    import ovss.clip as ref_clip
    from ovss.clip.model import build_model

    state = {k: v.detach().float().cpu() for k, v in loaded.model.state_dict().items()}
    model = build_model(state).float().to(device).eval()
    model.visual.set_params("reduced", "naclip", 5.0)

    def load(*_a, **_k):
        return model, ref_clip.tokenize

    ref_mlmp.load_ovss = ref_tent.load_ovss = load
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):  # the reference prints its parameter tables
        dev = str(device)
        if "mlmp" in methods:
            out["mlmp"] = ref_mlmp.MLMP(
                "naclip", "random", lr, CLASSES, vision_outputs=tuple(-(i + 1) for i in range(layers)),
                alpha_cls=1.0, steps=steps, prompt_dir=os.path.join(path, "prompts.yaml"), device=dev,
            )
        if "tent" in methods or "noadapt" in methods:
            tent = ref_tent.TENT("naclip", "random", lr, CLASSES, steps=steps, device=dev)
            if "tent" in methods:
                out["tent"] = tent
            if "noadapt" in methods:
                out["noadapt"] = tent
    del torch
    return out


def reference_frame(method: str, ref, x) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        if method == "noadapt":
            ref.evaluate(x)
        else:
            ref.adapt(x)  # resets to the source weights first, as in the reference's loop
            ref.evaluate(x)


# ------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["beside"]:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from adapt_beside import main as beside

        return beside(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None, help="default: ViT-B-16-quickgelu on the CPU; also ViT-L-14-quickgelu on CUDA")
    p.add_argument("--weights", default="random")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--methods", nargs="+", default=["noadapt", "tent", "mlmp"])
    p.add_argument("--configs", nargs="+", default=None, help="fp32 | bf16 | fp16 | auto, each optionally +compile; fp32 (eager) is always run as the baseline")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=5, help="timed frames per configuration (rounds)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--reference", default="", help="path to a checkout of github.com/dosowiechi/MLMP: time it too")
    p.add_argument("--compile-methods", nargs="+", default=["mlmp"], help="methods timed in the +compile configurations (compilation takes a minute or more each)")
    p.add_argument("--budget-s", type=float, default=None, help="stop starting new work after this many seconds (default: 280 on CUDA, none on the CPU)")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)

    import torch

    from mlmp_ros.core import Config, Segmenter, load_clip
    from mlmp_ros.core.backbone import resolve_device

    warnings.simplefilter("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    device = resolve_device(args.device)
    budget = args.budget_s if args.budget_s is not None else (280.0 if device.type == "cuda" else 0.0)
    deadline = start + budget if budget > 0 else float("inf")
    info = machine()
    cuda = device.type == "cuda"
    labels = args.configs or default_configs(device.type, info["cpu_native_bf16"])
    configs = [parse_config("fp32")] + [parse_config(c) for c in labels if c != "fp32"]
    models = args.models or (["ViT-B-16-quickgelu", "ViT-L-14-quickgelu"] if cuda else ["ViT-B-16-quickgelu"])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(max(args.frames, 1) * args.batch)]
    settings = {k: getattr(args, k) for k in ("weights", "steps", "size", "batch", "frames", "warmup", "methods")}
    report = {"benchmark": "latency", "command": "python benchmarks/latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": info, "device": str(device), "settings": settings, "models": [], "skipped": []}

    def out_of_time(margin: float = 0.0) -> bool:
        return time.perf_counter() + margin > deadline

    for model_name in models:
        if out_of_time():
            report["skipped"].append({"model": model_name, "reason": "time budget"})
            continue
        torch.manual_seed(0)
        loaded = load_clip(model_name, args.weights, device=device)
        entry = {"model": model_name, "results": [], "gemm": {}, "flops": {}}
        # Build every configuration first: their source snapshots are the untouched weights.
        segs: dict[tuple[str, str], Segmenter] = {}
        for method in args.methods:
            for c in configs:
                if c["compile"] == "on" and method not in args.compile_methods:
                    continue
                cfg = Config(
                    model=model_name, weights=args.weights, device=str(device), precision=c["precision"], compile=c["compile"],
                    classes=CLASSES, resize=[args.size, args.size], window=[args.size], stride=[args.size // 2],
                ).replace(**{"adaptation.method": method, "adaptation.steps": args.steps})
                try:
                    segs[(method, c["label"])] = Segmenter(cfg, loaded=loaded)
                except Exception as exc:  # noqa: BLE001 - e.g. fp16 on the CPU: reported, not fatal
                    entry["results"].append({"method": method, "config": c["label"], "error": f"{type(exc).__name__}: {exc}"})

        def frame(seg: Segmenter, imgs):
            t0 = time.perf_counter()
            res = seg.segment(imgs, output="processing", probabilities=True)
            dt = time.perf_counter() - t0
            if seg.method.adapts:  # leave the shared weights at the source for the next configuration
                seg.method.restore_source()
            return dt, res

        # Matrix FLOPs of one frame per method (fp32 eager; the count does not depend on precision).
        from torch.utils.flop_counter import FlopCounterMode

        for method in args.methods:
            seg = segs.get((method, "fp32"))
            if seg is None:
                continue
            counter = FlopCounterMode(display=False)
            with counter:
                frame(seg, images[: args.batch])
            by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
            entry["flops"][method] = {"total": int(counter.get_total_flops()), "by_op": by_op}

        # Warm-up (compilation happens here and is reported).
        warm: dict[tuple[str, str], dict] = {}
        order = [k for k, v in segs.items() if not v.method.compiler.enabled] + [k for k, v in segs.items() if v.method.compiler.enabled]
        for key in order:
            seg = segs[key]
            if out_of_time(margin=90.0 if seg.method.compiler.enabled else 0.0):
                report["skipped"].append({"model": model_name, "method": key[0], "config": key[1], "reason": "time budget (warm-up)"})
                del segs[key]
                continue
            t0 = time.perf_counter()
            for _ in range(args.warmup + (1 if seg.method.compiler.enabled else 0)):
                frame(seg, images[: args.batch])
            warm[key] = {"warmup_s": time.perf_counter() - t0, "compile": seg.method.compiler.info(), "precision_used": seg.precision.name}

        refs = {}
        if args.reference:
            layers = max(1, round(0.75 * segs[next(iter(segs))].encoder.num_layers)) if segs else 9
            refs = reference_methods(args.reference, loaded, args.methods, layers, args.steps, 1e-3, device)
            for method, ref in refs.items():
                x, _ = segs[(method, "fp32")].prepare(images[: args.batch])
                reference_frame(method, ref, x)  # warm-up

        times = {key: [] for key in segs}
        ref_times = {m: [] for m in refs}
        outputs: dict[tuple[str, str], list] = {key: [] for key in segs}
        peak = {key: 0.0 for key in segs}
        gemm: dict[str, list[float]] = {}
        width = loaded.model.visual.transformer.width
        tokens = (args.size // loaded.model.visual.patch_size[0]) ** 2 + 1
        gemm_shapes = {"model": (tokens * args.batch, width, 4 * width), "large": (8192,) * 3 if cuda else (1024,) * 3}
        gemm_dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16} | ({"fp16": torch.float16} if cuda else {})
        rounds = 0
        for r in range(args.frames):
            if out_of_time() and r > 0:
                report["skipped"].append({"model": model_name, "reason": f"time budget: {r} of {args.frames} rounds"})
                break
            imgs = images[r * args.batch : (r + 1) * args.batch]
            for key, seg in segs.items():
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                dt, res = frame(seg, imgs)
                times[key].append(dt)
                outputs[key].append((res.frames[0].labels, res.frames[0].probabilities))
                if cuda:
                    peak[key] = max(peak[key], torch.cuda.max_memory_allocated() / 2**20)
                if key[0] in refs and key[1] == "fp32":
                    x, _ = seg.prepare(imgs)
                    if key[0] == "noadapt":  # the source weights (tent's object shares the model), untimed
                        with contextlib.redirect_stdout(io.StringIO()):
                            refs["noadapt"].reset()
                    t0 = time.perf_counter()
                    reference_frame(key[0], refs[key[0]], x)
                    if cuda:
                        torch.cuda.synchronize()
                    ref_times[key[0]].append(time.perf_counter() - t0)
            for name, dtype in gemm_dtypes.items():
                if name == "bf16" and not cuda and not info["cpu_native_bf16"]:
                    continue
                for shape_name, (m, k, n) in gemm_shapes.items():
                    gemm.setdefault(f"{name}/{shape_name}", []).append(gemm_rate(device, dtype, m, k, n))
            rounds += 1
        entry["rounds"] = rounds
        entry["gemm"] = {k: {"gflops_best": max(v), "gflops_median": statistics.median(v)} for k, v in gemm.items()}

        for key, seg in segs.items():
            method, label = key
            t = times[key]
            if not t:
                continue
            base = times.get((method, "fp32")) or []
            row = {
                "method": method,
                "config": label,
                "precision": warm[key]["precision_used"],
                "compile": seg.method.compiler.info(),
                "frames": len(t),
                "ms_median": 1000 * statistics.median(t),
                "ms_min": 1000 * min(t),
                "ms_all": [round(1000 * v, 1) for v in t],
                "warmup_s": round(warm[key]["warmup_s"], 2),
            }
            if base:
                row["speedup_vs_fp32_eager"] = statistics.median(base) / statistics.median(t)
            if ref_times.get(method):
                row["reference_ms_median"] = 1000 * statistics.median(ref_times[method])
                row["speedup_vs_reference"] = statistics.median(ref_times[method]) / statistics.median(t)
            flops = entry["flops"].get(method, {}).get("total")
            prec = row["precision"]
            rates = [v["gflops_best"] for k, v in entry["gemm"].items() if k.startswith(prec + "/")]
            if flops and rates:
                floor_s = flops / (max(rates) * 1e9)
                row["matrix_tflop"] = flops / 1e12
                row["floor_ms"] = 1000 * floor_s
                row["fraction_of_floor"] = floor_s / statistics.median(t)
            if cuda:
                row["peak_cuda_mb"] = peak[key]
            ref_out = outputs.get((method, "fp32"))
            if ref_out and label != "fp32":
                agree = [float((a[0] == b[0]).mean()) for a, b in zip(ref_out, outputs[key])]
                diff = [float(np.abs(a[1] - b[1]).max()) for a, b in zip(ref_out, outputs[key])]
                row["label_agreement_vs_fp32"] = statistics.mean(agree)
                row["label_agreement_min"] = min(agree)
                row["max_abs_probability_diff_vs_fp32"] = max(diff)
            entry["results"].append(row)
        for method, t in ref_times.items():
            if t:
                entry["results"].append({"method": method, "config": "reference fp32", "frames": len(t), "ms_median": 1000 * statistics.median(t),
                                         "ms_min": 1000 * min(t), "ms_all": [round(1000 * v, 1) for v in t]})
        report["models"].append(entry)
        del segs, refs, loaded
        if cuda:
            torch.cuda.empty_cache()

    report["wall_s"] = time.perf_counter() - start
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["loadavg_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print_table(report)
    emit(report, args.out)
    return 0


def emit(report: dict, out: str | None) -> None:
    """Print the report as JSON and, with ``out``, write it there too."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")


def print_table(report: dict) -> None:
    m = report["machine"]
    print(f"# {m['cpu']} ({m['cores']} cores, flags: {' '.join(m['cpu_flags']) or 'none'}; native bf16: {m['cpu_native_bf16']}); "
          f"CUDA: {m['cuda']}; torch {m['torch']}, {m['torch_threads']} threads", file=sys.stderr)
    for entry in report["models"]:
        gem = ", ".join(f"{k} {v['gflops_best']:.0f}" for k, v in entry["gemm"].items())
        print(f"# {entry['model']} on {report['device']}, {entry.get('rounds', 0)} rounds; GEMM GFLOP/s: {gem}", file=sys.stderr)
        print(f"{'method':9} {'config':16} {'ms median':>10} {'x fp32':>7} {'x ref':>7} {'floor%':>7} {'labels=':>8} {'compile s':>9} {'peak MB':>8}", file=sys.stderr)
        for r in entry["results"]:
            if "error" in r:
                print(f"{r['method']:9} {r['config']:16} error: {r['error']}", file=sys.stderr)
                continue
            comp = r.get("compile", {})
            print(
                f"{r['method']:9} {r['config']:16} {r['ms_median']:10.1f} {r.get('speedup_vs_fp32_eager', float('nan')):7.2f} "
                f"{r.get('speedup_vs_reference', float('nan')):7.2f} {100 * r.get('fraction_of_floor', float('nan')):7.1f} "
                f"{100 * r.get('label_agreement_vs_fp32', float('nan')):8.2f} {comp.get('seconds', 0.0) if comp.get('enabled') else float('nan'):9.1f} "
                f"{r.get('peak_cuda_mb', float('nan')):8.0f}",
                file=sys.stderr,
            )
    if report["skipped"]:
        print(f"# skipped: {report['skipped']}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
