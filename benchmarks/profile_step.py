#!/usr/bin/env python3
"""Where an MLMP frame's time goes: torch.profiler's top operators per precision; prints JSON.

ViT-B-16-quickgelu with random weights, one 224x224 image, ``--steps`` adaptation steps
and the prediction, after one warm-up frame.  Operators are grouped into matrix
products, attention, element-wise, LayerNorm, copies / casts and the rest.

    python benchmarks/profile_step.py --precisions fp32 bf16 --out benchmarks/results/profile_cpu.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

GROUPS = {
    "matrix products": ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear", "aten::mkldnn_convolution"),
    "attention (SDPA kernels)": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_flash_attention_for_cpu_backward"),
    "softmax / log-softmax": ("aten::_softmax", "aten::_log_softmax", "aten::_softmax_backward_data", "aten::_log_softmax_backward_data"),
    "layernorm": ("aten::native_layer_norm", "aten::native_layer_norm_backward"),
    "copies and casts": ("aten::copy_", "aten::_to_copy", "aten::cat", "aten::clone", "aten::contiguous"),
    "element-wise": ("aten::mul", "aten::add", "aten::add_", "aten::sigmoid", "aten::sigmoid_backward", "aten::div", "aten::sub",
                     "aten::neg", "aten::sum", "aten::fill_", "aten::mul_", "aten::div_", "aten::exp", "aten::masked_fill_"),
}  # fmt: skip


def profile(precision: str, steps: int, model: str, threads: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from mlmp_ros.core import Config, Segmenter

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = Config(model=model, weights="random", device="cpu", precision=precision, classes=[f"class {i}" for i in range(20)],
                 resize=[224, 224], window=[224], stride=[112]).replace(**{"adaptation.method": "mlmp", "adaptation.steps": steps})
    seg = Segmenter(cfg)
    img = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    seg.segment([img])
    t0 = time.perf_counter()
    seg.segment([img])
    unprofiled = time.perf_counter() - t0
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        seg.segment([img])
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    groups = {name: 0.0 for name in GROUPS}
    other = 0.0
    for e in events:
        for name, ops in GROUPS.items():
            if e.key in ops:
                groups[name] += e.self_cpu_time_total
                break
        else:
            other += e.self_cpu_time_total
    groups["other"] = other
    return {
        "precision": seg.precision.name,
        "steps": steps,
        "frame_s_unprofiled": unprofiled,
        "self_cpu_total_ms": total / 1000,
        "groups_percent": {k: round(100 * v / total, 1) for k, v in groups.items()},
        "top_operators": [
            {"op": e.key, "self_ms": round(e.self_cpu_time_total / 1000, 1), "percent": round(100 * e.self_cpu_time_total / total, 1), "calls": e.count}
            for e in top
        ],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--model", default="ViT-B-16-quickgelu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
    from latency import emit, machine  # same machine block and output as the latency benchmark

    report = {"benchmark": "profile_step", "machine": machine(), "model": args.model, "runs": []}
    for prec in args.precisions:
        run = profile(prec, args.steps, args.model, args.threads)
        report["runs"].append(run)
        print(f"# {prec}: {run['frame_s_unprofiled']:.2f} s/frame ({args.steps} steps); " + ", ".join(f"{k} {v}%" for k, v in run["groups_percent"].items()), file=sys.stderr)
    report["loadavg_at_end"] = list(os.getloadavg())
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
