"""mlmp-demo (and ``python -m mlmp_ros.demo``): the segmentation node on a camera stream (the
bundled sample stream with real weights, else a generated world stream), over real DDS on loopback.

Starts ``mlmp-segment`` with ``config/segment.yaml`` as a separate process, plays the
bundled camera stream into it at the recorded 10 Hz (a camera does not wait), records
what comes back and writes:

* ``<out>/outputs`` — a rosbag2 bag (MCAP) of ``segmentation/labels`` and
  ``segmentation/confidence`` as received;
* ``<out>/overlay_NN.png`` — each processed frame beside its segmentation, with a legend;
* ``<out>/summary.json`` and a one-screen summary: rates, latency, drops, memory.

A new run in the same ``<out>`` replaces the last run's outputs there (:func:`prepare_out`).
The command line and its checks are in :mod:`mlmp_ros.demo.arguments`.

Real weights make the overlays meaningful: an open_clip pretrained tag that can be
fetched (the default ``openai`` is downloaded once and cached), or a local file given
with ``--weights``.  Without them (no internet, nothing cached) the demo runs the bundled
world model (``mlmp-world``, a small CLIP trained on the procedural world of
:mod:`mlmp_ros.world`) on a world camera stream generated on the fly, whose ground truth
is known, played into two nodes at once, NoAdapt and the adapted configuration recommended
for robots (:mod:`mlmp_ros.demo.world`): it prints each frame's mIoU per run as the labels
arrive, and each overlay shows camera | NoAdapt | adapted | ground truth.
``--weights random`` keeps the photographs with random weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..bench.argument_checks import counted
from ..resources import config_path
from ..ros import stay_on_loopback
from .arguments import check_node_parameters, node_parameters, parse_args, usage_error
from .common import node_diagnostics, prepare_out
from .sample_stream import sample_frames, sample_raw_messages

RANDOM_BANNER = (
    "RUNNING ON RANDOM WEIGHTS: no real CLIP weights are available ({reason}).\n"
    "The node, DDS and the adaptation run for real, but the segmentations are meaningless.\n"
    "Give real weights with --weights FILE (open_clip checkpoint, .safetensors or an OpenAI-format\n"
    "state dict) or run once with internet so the 'openai' tag is downloaded and cached."
)


def choose_weights(args: argparse.Namespace, params_file: Path) -> tuple[str, str]:
    """(weights to give the node, why random) — real weights when they can be had."""
    from ..core import Config
    from ..core.backbone import ModelNameError, WeightsError, check_model_name, weights_file

    cfg = Config.from_yaml(params_file)
    model = args.model or cfg.model
    weights = args.weights or cfg.weights
    if weights == "random":
        return "random", "random weights were asked for"
    try:
        check_model_name(model)
    except ModelNameError as exc:
        usage_error(f"--model: {exc}")
    try:
        path = weights_file(model, weights, cache_dir=cfg.cache_dir or None, offline=args.offline or cfg.offline)
    except WeightsError as exc:
        if args.weights:  # the user named these weights: a failure is an error, not a fallback
            usage_error(f"--weights: {exc}")
        return "random", str(exc).split(" Details:")[0]
    return (str(path) if Path(weights).expanduser().exists() else weights), ""


def overlay(image: np.ndarray, labels: np.ndarray, names: dict[int, str], random_weights: bool = False) -> np.ndarray:
    """The frame beside its segmentation blended over it, with a legend of the classes present."""
    from ..ros.conversions import colorize, palette

    colours = palette(max(names) + 1 if names else int(labels.max()) + 1)
    blended = colorize(labels, colours, image, blend=0.5)
    panel = np.concatenate([image, blended], axis=1)
    present, counts = np.unique(labels, return_counts=True)
    order = present[np.argsort(-counts)][:8]
    legend = np.full((28 * len(order) + 8, panel.shape[1], 3), 255, np.uint8)
    for row, cls in enumerate(order):
        y = 8 + 28 * row
        legend[y : y + 20, 8:28] = colours[cls]
        share = 100.0 * counts[present == cls][0] / labels.size
        text = f"{names.get(int(cls), str(cls))}  {share:.0f}%"
        cv2.putText(legend, text, (36, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    if random_weights:
        x = panel.shape[1] // 2 + 8
        cv2.putText(legend, "RANDOM WEIGHTS: meaningless", (x, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (200, 0, 0), 2, cv2.LINE_AA)
    return np.concatenate([panel, legend], axis=0)


def _choose_run(args: argparse.Namespace, params_file: Path) -> tuple[Any, str, str, dict[str, Any]]:
    """(world stream or None, weights, why random, node parameters), announcing the choice."""
    weights, why_random = choose_weights(args, params_file)
    from ..world.model import has_bundled_weights

    if not (args.world or (why_random and args.weights is None and args.model is None and has_bundled_weights())):
        if why_random:
            print("\n" + RANDOM_BANNER.format(reason=why_random) + "\n", flush=True)
        return None, weights, why_random, {**node_parameters(args), "weights": weights}
    from .world import WorldStreamRun

    world = WorldStreamRun(args.frames, args.shift, args.seed)
    print(f"mlmp-demo: no real CLIP weights ({why_random})." if why_random else "mlmp-demo: --world given.", flush=True)
    print(f"mlmp-demo: running the bundled world model (mlmp-world) on a generated world stream: "
          f"{counted(len(world.frames), 'frame')} 640x480, '{args.shift}' setting in, into two nodes at once: NoAdapt and "
          "the adapted configuration recommended for robots (--method, --steps and --set change the adapted one). "
          "The ground truth is known, so each frame's mIoU is printed as its labels arrive.", flush=True)  # fmt: skip
    return world, "world", "", node_parameters(args)


def _input_stream(loops: int) -> tuple[list, dict]:
    """(messages to play, source stamp -> RGB frame) of the bundled sample stream."""
    inputs = {stamp: frame for stamp, frame in sample_frames()}
    raw = list(sample_raw_messages())
    return [item for _ in range(max(1, loops)) for item in raw], inputs


def _play(live, stream: list, args: argparse.Namespace):
    """Play the stream into the node; wait for the confidence maps of the frames with labels."""
    pacing = {"paced": True} if args.paced else {"rate_hz": args.rate}
    result = live.play(stream, restamp=True, timeout=args.timeout, **pacing)
    done = [rec.stamp_ns for rec in result.frames if rec.labels is not None]
    try:  # confidence is published right after the labels
        live.wait_until(lambda: all(s in live.outputs["confidence"] for s in done), 5.0, "confidence maps")
    except Exception:  # noqa: BLE001 - a missing map shows in the message count
        pass
    return result


def _write_overlays(result, inputs: dict, args: argparse.Namespace, names: dict[int, str], random_weights: bool) -> list[Path]:
    """One overlay PNG per processed frame in ``args.out``; their paths."""
    sources = {rec.stamp_ns: rec.source_stamp_ns for rec in result.frames}
    overlays = []
    for rec in result.frames:
        if rec.labels is None or rec.labels.array is None:
            continue
        path = args.out / f"overlay_{len(overlays):02d}.png"
        picture = overlay(inputs[sources[rec.stamp_ns]], rec.labels.array, names, random_weights=random_weights)
        cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        overlays.append(path)
    return overlays


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params_file = args.params or config_path("segment.yaml")
    if args.out.exists() and not args.out.is_dir():
        usage_error(f"--out: {args.out} is a file, not a folder")
    check_node_parameters(params_file, node_parameters(args), args)  # every argument, before anything starts
    stay_on_loopback()
    print(f"mlmp-demo: node parameters from {params_file}", flush=True)
    world, weights, why_random, params = _choose_run(args, params_file)
    if world is not None:
        from . import world as world_demo

        return world_demo.run(args, params_file, world, params)

    from ..ros.live import LiveSession, NodeProcess

    out = args.out
    prepare_out(out)
    stream, inputs = _input_stream(args.loops)
    node = NodeProcess(params_file, params, log_path=out / "node.log")
    print("mlmp-demo: starting the node (model load and text embeddings take a while on a CPU) ...", flush=True)
    t0 = time.monotonic()
    with LiveSession(node, keep_serialized=True) as live:
        ready = time.monotonic() - t0
        print(f"mlmp-demo: node ready after {ready:.1f} s; playing {counted(len(stream), 'frame')}", flush=True)
        result = _play(live, stream, args)
        names = live.class_map
        diag = node_diagnostics(live, result)
        outputs = live.outputs

    overlays = _write_overlays(result, inputs, args, names, bool(why_random))
    from ..bench.data.recorded import recorded, write_recorded_images

    n_msgs = write_recorded_images(out / "outputs", recorded(outputs))
    summary = {
        "weights": weights,
        "random_weights": bool(why_random),
        "node_parameters": params,
        "node_ready_s": round(ready, 1),
        **result.summary(),
        "node_diagnostics": diag.values if diag else {},
        "outputs_bag": str(out / "outputs"),
        "output_messages": n_msgs,
        "overlays": [str(p) for p in overlays],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    return 0 if result.processed else 1


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def print_summary(s: dict[str, Any]) -> None:
    d = s.get("node_diagnostics", {})
    line = "=" * 72
    print(line)
    print("mlmp-demo summary")
    print(line)
    weights = "RANDOM (segmentations are meaningless)" if s["random_weights"] else s["weights"]
    print(f"weights           {weights}")
    print(f"model / device    {d.get('model', '?')} on {d.get('device', '?')}")
    print(f"method            {d.get('adaptation_method', '?')}  mode {d.get('adaptation_mode', '?')}  steps {d.get('adaptation_steps', '?')}")
    print(f"frames            published {s['frames_published']}, processed {s['frames_processed']}, dropped {s['frames_dropped']} (latest frame wins)")
    print(f"input rate        {_fmt(s['input_rate_hz'], ' Hz')}")
    print(f"output rate       {_fmt(s['output_rate_hz'], ' Hz', 2)}")
    print(f"latency           median {_fmt(s['latency_median_ms'], ' ms', 0)}, p95 {_fmt(s['latency_p95_ms'], ' ms', 0)} (publish -> labels received)")
    if d:
        print(f"model time        {d.get('model_ms', '-')} ms per frame; node overhead {d.get('overhead_ms', '-')} ms")
        print(f"node memory       {d.get('rss_mb', '-')} MB RSS")
    print(f"outputs           {s['outputs_bag']} ({counted(s['output_messages'], 'message')}), {counted(len(s['overlays']), 'overlay')} in {Path(s['outputs_bag']).parent}")
    if s["frames_dropped"]:
        print("note              the node was slower than the camera; use --paced to process every frame")
    print(line)


if __name__ == "__main__":
    sys.exit(main())
