"""``mlmp-bench replay-live``: play a bench bag into the running node over DDS and score it.

The node (``mlmp-segment``, started here as its own process, or already running) gets
the bag's class list and window protocol as parameters.  The bag's camera frames are
published at the recorded rate (or x N, a fixed rate, or paced: the next frame only
after the previous result), the node's labels and confidence are recorded into a bag,
and the labels are scored exactly as ``run`` scores (same resolution, same metrics).
Frames the node dropped (latest frame wins) are left out of the scores and counted.

The node segments one frame at a time, so the offline equivalent is
``mlmp-bench run BAG --batch-size 1 --no-shuffle --seeds 0``; with a presized bag (the
default of make-bags) and no dropped frame, both give the same labels.
This module imports rclpy; the rest of the bench does not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..resources import config_path
from ..ros import stay_on_loopback
from .bags import open_bag, recorded, write_recorded_images
from .metrics import SegmentationMetrics

if TYPE_CHECKING:
    from ..core.config import Config


def node_overrides(config: Config) -> dict[str, Any]:
    """The core config as ``-p`` overrides of the node (in the forms its parameters take)."""
    from ..ros.params import ros_value

    params = {key: ros_value(key, value) for key, value in config.flat().items()}
    if isinstance(params.get("templates"), str) and len(config.templates) > 1:
        raise ValueError("replay-live passes templates to the node by name or file; give templates as one entry")
    return params


def replay_live(
    bag_path: str | os.PathLike[str],
    config: Config,
    out_dir: str | os.PathLike[str],
    *,
    speed: float | None = 1.0,
    rate_hz: float | None = None,
    paced: bool = False,
    limit: int | None = None,
    params_file: str | os.PathLike[str] | None = None,
    start_node: bool = True,
    namespace: str | None = None,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Play, record, score; returns the JSON-ready report (also written to ``out_dir``)."""
    # Here, not at the top: ``mlmp-bench --help`` imports this module and must not load torch.
    from ..core.windows import resize_labels
    from ..ros.live import LiveSession, NodeProcess
    from .runner import scoring_size, segmenter_config
    from .suite import json_default

    bag = open_bag(bag_path)
    info = bag.info
    cfg = segmenter_config(config, info)
    frames = [f for _, f in zip(range(limit or len(bag)), bag)]  # checksums verified before a node starts
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stay_on_loopback()
    node = None
    if start_node:
        node = NodeProcess(params_file or config_path("segment.yaml"), node_overrides(cfg), namespace=namespace,
                           log_path=out / "node.log")  # fmt: skip
    schedule: dict[str, Any] = {"paced": True} if paced else ({"rate_hz": rate_hz} if rate_hz else {"speed": speed or 1.0})
    with LiveSession(node, namespace=namespace, keep_serialized=True) as live:
        if node is None:
            live.set_parameters({"classes": [info["class_key"]]})
        result = live.play(((f.stamp_ns, f.image) for f in frames), timeout=timeout, **schedule)
        outputs = {k: dict(v) for k, v in live.outputs.items()}
        class_map = live.class_map

    names = list(info.get("class_names") or [])
    if names and [class_map.get(i) for i in range(len(names))] != names:
        raise ValueError(f"the node's classes {list(class_map.values())[:4]}... are not the bag's {names[:4]}...")
    metrics = SegmentationMetrics(int(info["num_classes"]), int(info.get("ignore_index", 255)), names or None)
    scored = []
    for frame, rec in zip(frames, result.frames):
        if rec.labels is None or rec.labels.array is None:
            continue
        pred = rec.labels.array
        size = scoring_size(frame.image.shape[0], frame.image.shape[1], cfg)
        if pred.shape != size:
            pred = resize_labels(pred, size)
        metrics.update(pred, resize_labels(frame.labels, size))
        scored.append(frame.index)

    outputs_bag = out / "outputs"
    if outputs_bag.exists():
        shutil.rmtree(outputs_bag)
    write_recorded_images(outputs_bag, recorded(outputs))
    report = {
        "bag": str(bag.path),
        "dataset": info.get("dataset"),
        "corruption": info.get("corruption"),
        "method": cfg.adaptation.method,
        "mode": cfg.adaptation.mode,
        "model": cfg.model,
        "schedule": schedule,
        "metrics": metrics.compute() if scored else None,
        "frames_scored": len(scored),
        **result.summary(),
        "latency_ms": [None if r.latency is None else r.latency * 1e3 for r in result.frames],
        "outputs_bag": str(out / "outputs"),
    }
    (out / "replay_live.json").write_text(json.dumps(report, indent=2, default=json_default) + "\n")
    return report


# ------------------------------------------------------------------- command line
def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay-live",
        help="play a bag into the node over DDS, record its outputs, score them like run",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("bag", help="bag folder written by make-bags")
    p.add_argument("--method", "-m", help="adaptation method (default: the config's)")
    p.add_argument("--config", help="core config YAML (plain mapping or a ROS parameter file)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="core setting, repeatable")
    p.add_argument("--mode", choices=("episodic", "continual", "off"))
    group = p.add_mutually_exclusive_group()
    group.add_argument("--speed", type=float, default=1.0, help="x N the recorded rate (default 1)")
    group.add_argument("--rate", type=float, help="fixed rate in Hz")
    group.add_argument("--paced", action="store_true", help="next frame only after the previous result (no drops)")
    p.add_argument("--limit", type=int, help="only the first N frames")
    p.add_argument("--params", help="node parameter file (default: config/segment.yaml)")
    p.add_argument("--no-start-node", action="store_true", help="use a node that is already running")
    p.add_argument("--namespace", help="the node's namespace")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a result")
    p.add_argument("--out", "-o", default="replay_live", help="output folder (default: replay_live)")
    p.set_defaults(handler=cmd_replay_live)


def cmd_replay_live(args: argparse.Namespace) -> int:
    from .cli import config_from_args

    config = config_from_args(args)
    if args.method:
        config = config.replace(**{"adaptation.method": args.method})
    report = replay_live(
        args.bag, config, args.out, speed=None if (args.rate or args.paced) else args.speed, rate_hz=args.rate,
        paced=args.paced, limit=args.limit, params_file=args.params, start_node=not args.no_start_node,
        namespace=args.namespace, timeout=args.timeout,
    )  # fmt: skip
    m = report["metrics"]
    score = f"mIoU {m['mIoU']:.2f} mAcc {m['mAcc']:.2f} mDice {m['mDice']:.2f}" if m else "nothing scored"
    lat = report["latency_median_ms"]
    latency = f"latency median {lat:.0f} ms" if lat is not None else "no output received"
    print(
        f"{report['dataset']}/{report['corruption']} {report['method']} live: {score} on {report['frames_scored']} "
        f"frames; published {report['frames_published']}, dropped {report['frames_dropped']}, {latency}"
    )
    print(f"report: {Path(args.out) / 'replay_live.json'}; outputs: {report['outputs_bag']}")
    return 0 if report["frames_scored"] else 1
