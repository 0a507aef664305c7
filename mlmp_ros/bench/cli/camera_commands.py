"""``stream`` (camera-rate replay, simulated clock) and ``replay-live`` (through the node over DDS).

The replays themselves (:mod:`mlmp_ros.bench.camera`) load torch and, for ``replay-live``,
rclpy; they are imported when a command runs, so ``mlmp-bench --help`` loads neither.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..argument_checks import UsageError, counted, positive_int, positive_number
from ..camera.chain import SEQUENCES
from ..data.corruptions import CORRUPTIONS
from ..suite.store import json_default
from .arguments import add_core_arguments, config_from_args, parse_sets


# ------------------------------------------------------------------ stream
def add_stream(sub: Any) -> None:
    p = sub.add_parser(
        "stream",
        help="replay bags as one camera stream at a rate; score every camera frame with the labels on the topic",
        description="Camera-rate replay: one or several bags chained (or one bag turned into a sequence of "
        "corruptions) arrive at --rate Hz; the segmenter runs for real on a simulated clock that advances by "
        "the measured (or --clock fixed) time of each prediction and adaptation, and every camera frame is "
        "scored against the newest labels published by the time it arrives (mIoU at camera rate), beside the "
        "processed frames scored with their own labels.",
    )
    p.add_argument("bags", nargs="+", help="bag folders written by make-bags, chained in this order")
    p.add_argument("--rate", type=positive_number, default=10.0, help="camera rate in Hz (default 10)")
    p.add_argument("--sequence", choices=SEQUENCES, default="chain", help="chain the bags (default), or turn the "
                   "first bag into the 15 corruptions in sequence, one corruption at severity 1->5->1, or mixed")  # fmt: skip
    p.add_argument("--corruption", default="fog", help="the corruption of --sequence severity (default fog)")
    p.add_argument("--frames-per-segment", type=positive_int, help="frames per bag / corruption (default: the bag's)")
    p.add_argument("--limit", type=positive_int, help="read only the first N frames of each bag")
    p.add_argument("--clock", default="measured", help="'measured' (default) or 'fixed:PREDICT_MS,STEP_MS'")
    add_core_arguments(p, methods="one", schedule=True)
    p.add_argument("--seed", type=int, default=0, help="seed of --sequence mixed")
    p.add_argument("--out", "-o", default="stream_results", help="folder for stream.json and stream.png (default: stream_results)")
    p.add_argument("--name", default="stream", help="file name stem (default: stream)")
    p.add_argument("--no-plot", action="store_true", help="write no <name>.png plot (default: written)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    p.set_defaults(handler=cmd_stream)


def _clock_ok(spec: str) -> bool:
    """'measured', or 'fixed:PREDICT_MS,STEP_MS' with a prediction > 0 ms and steps >= 0 ms (as the replay's Clock)."""
    kind, _, values = spec.partition(":")
    if spec == "measured":
        return True
    try:
        predict_ms, step_ms = (float(v) for v in values.split(","))
    except ValueError:
        return False
    return kind == "fixed" and math.isfinite(predict_ms + step_ms) and predict_ms > 0 and step_ms >= 0


def check_stream_arguments(args: argparse.Namespace) -> None:
    """--corruption and --clock, before any bag is read or model loaded."""
    if args.corruption not in CORRUPTIONS:
        raise UsageError(f"--corruption: unknown corruption '{args.corruption}'; choose from {', '.join(CORRUPTIONS)}")
    if not _clock_ok(args.clock):
        raise UsageError(f"--clock takes 'measured' or 'fixed:PREDICT_MS,STEP_MS' (e.g. fixed:80,120), not '{args.clock}'")


def cmd_stream(args: argparse.Namespace) -> int:
    check_stream_arguments(args)
    config = config_from_args(args, one_method=True)
    from ..camera.rate_replay import build_stream, plot_report, replay_stream  # torch

    stream = build_stream(args.bags, sequence=args.sequence, corruption=args.corruption,
                          frames_per_segment=args.frames_per_segment, limit=args.limit, seed=args.seed)  # fmt: skip
    report = replay_stream(stream, config, rate_hz=args.rate, clock=args.clock, progress=not args.no_progress)
    report["bags"] = [str(b) for b in args.bags]
    report["sequence"] = args.sequence
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=1, default=json_default))
    if not args.no_plot:
        plot_report(report, out / f"{args.name}.png")
    lat = report["latency_p50_s"]
    print(f"{report['method']} {report['schedule']} {report['mode']}: mIoU at camera rate {report['miou_camera']:.4f}, "
          f"processed frames {report['miou_processed']:.4f} ({report['frames_processed']}/{counted(report['frames'], 'frame')}), "
          f"latency p50 {lat:.3f} s, resets {report['resets']}")  # fmt: skip
    print(f"report: {out / (args.name + '.json')}")
    return 0


# ------------------------------------------------------------------ replay-live
def add_replay_live(sub: Any) -> None:
    p = sub.add_parser(
        "replay-live",
        help="play a bag into the node over DDS, record its outputs, score them like run",
        description="Play bench bags into the running node (mlmp-segment, started here or already running) over "
        "DDS with the bag's classes and window protocol and the core settings given; record the node's labels "
        "and confidence into a bag and score them like run (the processed frames) and at camera rate (every "
        "frame sent, with the newest labels received by then). Resets and adaptation steps come from the "
        "node's /diagnostics.",
    )
    p.add_argument("bags", nargs="+", help="bag folder(s) written by make-bags; several are chained in this order")
    add_core_arguments(p, methods="one", schedule=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--speed", type=positive_number, default=1.0, help="x N the recorded rate (default 1)")
    group.add_argument("--rate", type=positive_number, help="fixed rate in Hz")
    group.add_argument("--paced", action="store_true", help="next frame only after the previous result, no drops (default: --speed 1)")
    p.add_argument("--limit", type=positive_int, help="only the first N frames of each bag")
    p.add_argument("--node-set", action="append", metavar="KEY=VALUE",
                   help="node parameter on top of the config's (e.g. diagnostics.period=0.5), repeatable")
    p.add_argument("--params", help="node parameter file (default: config/segment.yaml)")
    p.add_argument("--no-start-node", action="store_true", help="use a node that is already running (default: start one here)")
    p.add_argument("--namespace", help="the node's namespace")
    p.add_argument("--timeout", type=positive_number, default=120.0, help="seconds to wait for a result (default: 120)")
    p.add_argument("--out", "-o", default="replay_live", help="output folder (default: replay_live)")
    p.set_defaults(handler=cmd_replay_live)


def cmd_replay_live(args: argparse.Namespace) -> int:
    config = config_from_args(args, one_method=True)
    node_parameters = parse_sets(args.node_set)
    if args.params and not Path(args.params).expanduser().is_file():
        raise UsageError(f"--params: no node parameter file {args.params}")
    from ..camera.replay_live import replay_live  # torch; rclpy when the replay starts

    report = replay_live(
        args.bags, config, args.out, speed=args.speed, rate_hz=args.rate,
        paced=args.paced, limit=args.limit, params_file=args.params, start_node=not args.no_start_node,
        namespace=args.namespace, timeout=args.timeout, node_parameters=node_parameters,
    )  # fmt: skip
    m = report["metrics"]
    score = f"mIoU {m['mIoU']:.2f} mAcc {m['mAcc']:.2f} mDice {m['mDice']:.2f}" if m else "nothing scored"
    lat = report["latency_median_ms"]
    latency = f"latency median {lat:.0f} ms" if lat is not None else "no output received"
    print(
        f"{report['dataset']}/{report['corruption']} {report['method']} live: {score} on "
        f"{counted(report['frames_scored'], 'frame')}; published {report['frames_published']}, dropped {report['frames_dropped']}, {latency}"
    )
    print(f"at camera rate (labels on the topic when each frame was sent): mIoU {report['miou_camera']:.2f}, "
          f"{counted(report['frames_without_labels'], 'frame')} before any labels; resets {report['resets']}")  # fmt: skip
    print(f"report: {Path(args.out) / 'replay_live.json'}; outputs: {report['outputs_bag']}")
    return 0 if report["frames_scored"] else 1
