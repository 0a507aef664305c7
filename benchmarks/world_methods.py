"""The world-model method table on fresh held-out scenes, with bootstrap intervals over scenes.

    # score (resumable: cells already in the records are skipped; shards split the scenes)
    python benchmarks/world_methods.py measure --records benchmarks/results/world_methods_48.jsonl \
        --scenes 48 --methods noadapt,tent,tpt,mlmp [--shard 0/2]
    # the table with intervals, from the records alone (prints the JSON, writes --out)
    python benchmarks/world_methods.py summary --records benchmarks/results/world_methods_48.jsonl \
        --out benchmarks/results/world_methods_48.json

Episodic, batch 1, each method's paper settings (10 steps), lr 1e-3, 640x480 scenes (the
protocol's 320x240, windows of 160), conditions clean + the 15 ImageNet-C corruptions at
severity 5 + the 5 world stream shifts at full strength.  See mlmp_ros/bench/study/method_table.py.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

from mlmp_ros.bench.study.method_table import ALL_CONDITIONS, FRESH_SEED, Plan, RecordFile, measure, scene_seeds


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="world_methods.py", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "what",
        choices=("measure", "summary", "markdown"),
        help="score cells, summarise the records, or print a summary JSON (--records) as a Markdown table",
    )
    ap.add_argument(
        "--records", required=True, help="JSONL of cells (measure: appended; summary: a glob, several files pooled)"
    )
    ap.add_argument("--out", default="", help="summary JSON to write (default: print only)")
    ap.add_argument("--scenes", type=int, default=48, help="fresh held-out scenes (default 48)")
    ap.add_argument("--first-seed", type=int, default=FRESH_SEED, help=f"first scene seed (default {FRESH_SEED})")
    ap.add_argument(
        "--methods", default="noadapt,tent,mlmp", help="methods, comma-separated (default noadapt,tent,mlmp)"
    )
    ap.add_argument("--conditions", default=",".join(ALL_CONDITIONS), help="conditions (default: all 21)")
    ap.add_argument("--lr", type=float, default=1e-3, help="learning rate of every adapting method (default 1e-3)")
    ap.add_argument("--steps", type=int, default=10, help="adaptation steps (default 10)")
    ap.add_argument("--shard", default="0/1", help="i/n: score every n-th scene from the i-th (default 0/1)")
    ap.add_argument("--resamples", type=int, default=9999, help="summary: bootstrap resamples per interval (default 9999)")
    ap.add_argument("--wall", default="", help="summary: how long the measurement took, recorded as given (text)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--stop-at", type=float, default=0.0, help="unix time after which no new scene starts (0: none)")
    args = ap.parse_args(argv)
    try:
        i, n = (int(v) for v in args.shard.split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        ap.error(f"--shard must be i/n with 0 <= i < n, got {args.shard!r}")
    args.shard_index, args.shard_count = i, n
    if args.scenes < 1:
        ap.error("--scenes must be at least 1")
    if args.resamples < 99:
        ap.error("--resamples must be at least 99")
    unknown = [c for c in args.conditions.split(",") if c not in ALL_CONDITIONS]
    if unknown:
        ap.error(f"--conditions: unknown {', '.join(unknown)} (known: {', '.join(ALL_CONDITIONS)})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    methods = [m for m in args.methods.split(",") if m]
    conditions = [c for c in args.conditions.split(",") if c]
    if args.what == "markdown":
        from mlmp_ros.bench.study.table_summary import markdown

        try:
            print(markdown(json.loads(Path(args.records).read_text())), end="")
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: {args.records}: not a summary JSON ({exc})", file=sys.stderr)
            return 2
        return 0
    if args.what == "summary":
        from mlmp_ros.bench.study.table_summary import summarise_files

        files = sorted(glob.glob(args.records))
        if not files:
            print(f"error: --records {args.records}: no such file", file=sys.stderr)
            return 2
        from mlmp_ros.bench.study.why_summary import OPTIONS

        OPTIONS["resamples"] = args.resamples
        try:
            report = summarise_files(files, conditions, methods)
            report["resamples"] = args.resamples
            report["measurement_wall"] = args.wall or None
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        text = json.dumps(report, indent=1)
        if args.out:
            with open(args.out, "w") as fh:
                fh.write(text + "\n")
        print(text)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    seeds = scene_seeds(args.scenes, args.first_seed)[args.shard_index :: args.shard_count]
    plan = Plan(scenes=seeds, conditions=conditions, methods=methods, lr=args.lr, steps=args.steps)
    t0 = time.time()
    added = measure(plan, RecordFile(args.records), deadline=args.stop_at or None)
    print(json.dumps({"cells_added": added, "seconds": round(time.time() - t0, 1), "records": args.records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
