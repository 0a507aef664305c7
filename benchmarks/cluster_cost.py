#!/usr/bin/env python3
"""What the paper87 suite costs per method and backbone: per-frame times x frames; prints JSON.

    python benchmarks/cluster_cost.py --out benchmarks/results/cluster_cost.json

Frames come from the suite file (config/suites/paper87.yaml: which method runs on which
scenario, 3 trials) and the validation split sizes below.  Per-frame CPU times are the
ones measured by benchmarks/latency.py (one 224x224 window, batch 1, 10 steps):
``latency_cpu.json`` for ViT-B-16 and ``latency_cpu_vitl.json`` for ViT-L-14.  A method
missing from the ViT-L file is scaled from ViT-B by the ViT-L/ViT-B ratio of the methods
measured on both (marked "scaled").  A Cityscapes, ACDC or GTA-V frame is 36 windows of
224 and is counted as 36 one-window frames (not measured: an estimate, likely high on a
GPU, which batches the windows).  GPU figures use the paper's own per-image seconds
(one V100, ViT-L/14) and are labelled as the paper's.  Parameter counts (fp32 weight
memory) come from building each backbone with random weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# Validation split sizes (the data sets' documented splits, as in docs/benchmark/index.md; ACDC val per condition; GTA-V: see note).
FRAMES = {
    "voc20": 1449, "voc21": 1449, "context59": 5105, "context60": 5105, "coco_object": 5000, "coco_stuff": 5000,
    "cityscapes": 500, "acdc_fog": 100, "acdc_night": 106, "acdc_rain": 100, "acdc_snow": 100, "gta5": 6382,
}  # fmt: skip
WINDOWS = {"cityscapes": 36, "acdc_fog": 36, "acdc_night": 36, "acdc_rain": 36, "acdc_snow": 36, "gta5": 36}
# The paper (one V100, ViT-L/14, per image): adaptation seconds, plus 0.041 s prediction.
PAPER_ADAPT_S = {"noadapt": 0.0, "mlmp": 0.541, "tpt": 0.445, "clipartt": 3.494, "watt": 5.197}
PAPER_PREDICT_S = 0.041
PAPER_MLMP_GPU_GB = 2.09  # peak GPU memory, MLMP, ViT-L/14, one image (the paper)
BACKBONES = {"ViT-B-16-quickgelu": "latency_cpu.json", "ViT-L-14-quickgelu": "latency_cpu_vitl.json"}


def cpu_seconds(path: Path) -> dict[str, float]:
    """Per-frame seconds per method (CPU fp32) from a latency.py result: the fastest timed
    frame over all runs in the file (the host is shared, so slower frames measure the others)."""
    data = json.loads(path.read_text())
    runs = data.get("runs") or [{"results": data.get("results", [])}]
    out: dict[str, float] = {}
    for run in runs:
        for r in run.get("results", []):
            if r.get("device") == "cpu" and r.get("precision") == "fp32":
                s = r["ms_min"] / 1000
                out[r["method"]] = min(out.get(r["method"], s), s)
    return out


def parameters(model: str) -> int:
    import open_clip
    import torch

    torch.manual_seed(0)
    return sum(p.numel() for p in open_clip.create_model(model, pretrained=None).parameters())


def main(argv: list[str] | None = None) -> int:
    from mlmp_ros.bench.suite.file import load_suite
    from mlmp_ros.resources import config_path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default=str(config_path("suites", "paper87.yaml")))
    p.add_argument("--results", default=str(HERE / "results"), help="folder with the latency JSON files")
    p.add_argument("--no-parameters", action="store_true", help="skip building the backbones to count parameters")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)

    suite = load_suite(args.suite)
    trials = len(suite.seeds)
    per_method: dict[str, dict[str, float]] = {}
    for scenario in suite.scenarios:
        for method in scenario.methods:
            if suite.skip_reason(scenario, method):
                continue
            row = per_method.setdefault(method, {"scenarios": 0, "frames": 0, "windows": 0})
            frames = FRAMES[scenario.dataset] * trials
            row["scenarios"] += 1
            row["frames"] += frames
            row["windows"] += frames * WINDOWS.get(scenario.dataset, 1)

    cpu = {b: cpu_seconds(Path(args.results) / f) for b, f in BACKBONES.items() if (Path(args.results) / f).is_file()}
    base, large = cpu.get("ViT-B-16-quickgelu", {}), cpu.get("ViT-L-14-quickgelu", {})
    both = [m for m in large if m in base]
    ratio = sum(large[m] / base[m] for m in both) / len(both) if both else None
    out: dict = {
        "benchmark": "cluster_cost",
        "suite": suite.name,
        "trials": trials,
        "frames_per_split": FRAMES,
        "windows_per_frame": WINDOWS,
        "notes": [
            "CPU: per-frame seconds (fastest timed frame) measured by benchmarks/latency.py on this project's 2-core AMD EPYC (AVX2), "
            "fp32, one 224x224 window, batch 1, 10 steps; a 36-window frame is counted as 36 windows (estimate).",
            "GPU: the paper's per-image seconds on one V100 with ViT-L/14 (adaptation + 0.041 s prediction), "
            "times windows; not measured here (no GPU was available).",
            "GTA-V: 6,382 frames assumed (its common val split); the suite file and the paper text here give none.",
        ],
        "vit_l_over_vit_b_cpu": ratio,
        "methods": {},
    }
    for method, row in sorted(per_method.items()):
        entry: dict = {**row}
        for backbone, seconds in (("ViT-B-16-quickgelu", base), ("ViT-L-14-quickgelu", large)):
            s, how = seconds.get(method), "measured"
            if s is None and backbone.startswith("ViT-L") and ratio and method in base:
                s, how = base[method] * ratio, f"scaled from ViT-B x {ratio:.2f}"
            if s is not None:
                entry[backbone] = {"cpu_s_per_window": s, "cpu_hours": s * row["windows"] / 3600, "how": how}
        if method in PAPER_ADAPT_S:
            s = PAPER_ADAPT_S[method] + PAPER_PREDICT_S
            entry["paper_v100_vit_l14"] = {"gpu_s_per_window": s, "gpu_hours": s * row["windows"] / 3600}
        out["methods"][method] = entry
    if not args.no_parameters:
        out["parameters"] = {b: parameters(b) for b in BACKBONES}
        out["fp32_weights_gb"] = {b: n * 4 / 1e9 for b, n in out["parameters"].items()}
    out["paper_peak_gpu_gb"] = {"mlmp ViT-L/14, one image (V100)": PAPER_MLMP_GPU_GB}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
