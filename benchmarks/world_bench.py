"""NoAdapt / TENT / MLMP on world bags, through ``mlmp-bench make-bags`` and ``mlmp-bench run`` unchanged.

Writes world bags (held-out scenes, clean and under ImageNet-C corruptions at severity
5, plus world streams whose shift sets in over time), runs the three methods with the
bundled world model (one trial, batch 1, episodic, 10 steps, lr 1e-3: the paper's
settings), and summarises the store: mIoU per bag and method, and the mean loss at the
first and last adaptation step (the entropy the methods minimise), so a method that
lowers its loss while losing accuracy shows it.

    python benchmarks/world_bench.py --frames 12 --out benchmarks/results/world_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

CORRUPTIONS = "original,gaussian_noise,defocus_blur,fog,brightness,contrast,jpeg_compression"
STREAMS = "fog,night,dirt"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=12, help="scenes per bag and frames per stream")
    ap.add_argument("--corruptions", default=CORRUPTIONS)
    ap.add_argument("--streams", default=STREAMS)
    ap.add_argument("--methods", default="noadapt,tent,mlmp")
    ap.add_argument("--work", default="", help="bags and results folder (default: a temporary one)")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)

    import torch

    from mlmp_ros.bench.cli import main as bench

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    work = Path(args.work or tempfile.mkdtemp(prefix="world_bench_"))
    bags = work / "bags"
    code = bench(["make-bags", "world", "--corruptions", args.corruptions, "--streams", args.streams,
                  "--count", str(args.frames), "--out", str(bags), "--no-progress"])  # fmt: skip
    if code:
        return code
    paths = [str(bags / "world" / c) for c in args.corruptions.split(",")]
    paths += [str(bags / f"world_stream_{s}" / "original") for s in args.streams.split(",") if s]
    results = work / "results"
    # streams in their order (no shuffle), so a shift sets in as it does on a robot
    code = bench(["run", *paths, "--method", args.methods, "--set", "model=mlmp-world", "--set", "weights=world",
                  "--set", "device=cpu", "--batch-size", "1", "--seeds", "0", "--no-shuffle",
                  "--out", str(results), "--no-progress"])  # fmt: skip
    records = [json.loads(line) for line in (results / "results.jsonl").read_text().splitlines() if line.strip()]
    table: dict[str, dict[str, dict]] = {}
    for r in records:
        if r.get("status") != "done":
            continue
        losses = r.get("loss_per_step") or []
        cell = {"miou": r["metrics"]["mIoU"], "aacc": r["metrics"]["aAcc"],
                "model_s_per_frame": round(r["timing"]["model_s_per_frame"], 3)}  # fmt: skip
        if losses:
            cell["loss_first_step"] = round(float(losses[0]), 4)
            cell["loss_last_step"] = round(float(losses[-1]), 4)
        table.setdefault(f"{r['dataset']}/{r['corruption']}", {})[r["method"]] = cell
    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    report = {
        "what": "mlmp-bench run on world bags: bundled mlmp-world model, 1 trial (seed 0), batch 1, episodic, "
                "10 steps, lr 1e-3, severity 5; streams in order, their shift setting in from 20% to 90% of the stream",
        "frames_per_bag": args.frames,
        "host": {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                 "note": "shared CPU, timings noisy"},
        "miou": table,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
