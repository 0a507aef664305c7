"""Camera-rate mIoU of stream runs with 95% bootstrap intervals over frames (JSON).

Reads a ``benchmarks/stream_bench.py --frame-areas`` result (every camera frame's
per-class intersection and union of what was on the topic) and gives, per configuration,
the pooled camera-rate mIoU and its difference to NoAdapt (the same frames, paired), each
with its interval, twice: with frames as the resampled units, and with blocks of
consecutive frames (``--block``, default 10 = one second at 10 Hz) as units, since
neighbouring frames of a stream are alike and an interval over single frames is too
narrow for that.  Uses mlmp_ros.bench.scoring.intervals (scipy.stats.bootstrap).

    python benchmarks/stream_intervals.py benchmarks/results/stream_world_frames.json --equal-segments \
        --out benchmarks/results/stream_world_intervals.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mlmp_ros.bench.scoring.intervals import paired_pooled_difference, pooled_miou_interval


def blocks(areas: np.ndarray, size: int) -> np.ndarray:
    """Areas ``[frames, classes]`` summed over consecutive blocks of ``size`` frames (the last may be shorter)."""
    return np.stack([areas[i : i + size].sum(0) for i in range(0, len(areas), size)])


def intervals(runs: dict, block: int, base: str = "noadapt", segments: bool = False) -> dict:
    have = {k: v for k, v in runs.items() if "frame_areas" in v}
    if base not in have:
        raise ValueError(f"no '{base}' run with frame_areas (run stream_bench.py with --frame-areas)")
    area = {k: (np.asarray(v["frame_areas"]["inter"], float), np.asarray(v["frame_areas"]["union"], float))
            for k, v in have.items()}  # fmt: skip
    out = {}
    for name, (i, u) in area.items():
        entry = {"frames": len(i), "miou_camera": runs[name]["miou_camera"]}
        for unit, size in (("frames", 1), (f"blocks_of_{block}", block)):
            ii, uu = (i, u) if size == 1 else (blocks(i, size), blocks(u, size))
            bi, bu = area[base] if size == 1 else (blocks(area[base][0], size), blocks(area[base][1], size))
            iv = pooled_miou_interval(ii, uu)
            entry[unit] = {"miou": iv.as_dict(), "text": iv.text(2)}
            if name != base:
                d = paired_pooled_difference((ii, uu), (bi, bu))
                entry[unit]["vs_noadapt"] = {**d.as_dict(), "text": d.text(2, signed=True), "verdict": d.verdict()}
        if segments:
            entry["segments"] = _segments(runs[name], (i, u), area[base], block, name != base)
        out[name] = entry
    return out


def _segments(run: dict, areas, base_areas, block: int, paired: bool) -> dict:
    """Per segment of the chain (equal consecutive parts, one per entry of the run's ``segments``)."""
    names = [s["segment"] for s in run["segments"]]
    n = len(areas[0]) // len(names)
    out = {}
    for k, name in enumerate(names):
        part = slice(k * n, (k + 1) * n)
        ii, uu = blocks(areas[0][part], block), blocks(areas[1][part], block)
        iv = pooled_miou_interval(ii, uu)
        out[name] = {"frames": [k * n, (k + 1) * n - 1], "miou": iv.as_dict(), "text": iv.text(2)}
        if paired:
            bi, bu = blocks(base_areas[0][part], block), blocks(base_areas[1][part], block)
            d = paired_pooled_difference((ii, uu), (bi, bu))
            out[name]["vs_noadapt"] = {**d.as_dict(), "text": d.text(2, signed=True), "verdict": d.verdict()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("result", help="a stream_bench.py --frame-areas JSON")
    ap.add_argument("--block", type=int, default=10, help="frames per block for the block interval (default 10)")
    ap.add_argument("--equal-segments", action="store_true", help="also per segment of the chain, each taken as an "
                    "equal consecutive part of the frames (as stream_bench.py chains its bags, --frames each), "
                    "over blocks of frames")  # fmt: skip
    ap.add_argument("--out", default="", help="JSON to write (default: print only)")
    args = ap.parse_args(argv)
    if args.block < 1:
        ap.error("--block must be at least 1")
    try:
        data = json.loads(Path(args.result).read_text())
        report = {"source": args.result, "what": data.get("what"), "host": data.get("host"),
                  "note": "95% BCa bootstrap over frames / blocks of frames (scipy.stats.bootstrap); paired: "
                          "the same frames for both runs", "runs": intervals(data["runs"], args.block, segments=args.equal_segments)}  # fmt: skip
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {args.result}: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
