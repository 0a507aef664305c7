"""mlmp-demo: the segmentation node on the bundled sample stream, over real DDS on loopback.

Starts ``mlmp-segment`` with ``config/segment.yaml`` as a separate process, plays the
bundled camera stream into it at the recorded 10 Hz (a camera does not wait), records
what comes back and writes:

* ``<out>/outputs`` — a rosbag2 bag (MCAP) of ``segmentation/labels`` and
  ``segmentation/confidence`` as received;
* ``<out>/overlay_NN.png`` — each processed frame beside its segmentation, with a legend;
* ``<out>/summary.json`` and a one-screen summary: rates, latency, drops, memory.

Real weights make the overlays meaningful: an open_clip pretrained tag that can be
fetched (the default ``openai`` is downloaded once and cached), or a local file given
with ``--weights``.  Without them (no internet, nothing cached) the demo runs the bundled
world model (``mlmp-world``, a small CLIP trained on the procedural world of
:mod:`mlmp_ros.world`) on a world camera stream generated on the fly, whose ground truth
is known: it prints each frame's mIoU as the labels arrive and the run's mIoU, and each
overlay shows the frame, the segmentation and the ground truth side by side.
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

from .catalog import METHOD_NAMES
from .resources import config_path
from .ros import stay_on_loopback
from .sample_stream import sample_frames, sample_raw_messages

RANDOM_BANNER = (
    "RUNNING ON RANDOM WEIGHTS: no real CLIP weights are available ({reason}).\n"
    "The node, DDS and the adaptation run for real, but the segmentations are meaningless.\n"
    "Give real weights with --weights FILE (open_clip checkpoint, .safetensors or an OpenAI-format\n"
    "state dict) or run once with internet so the 'openai' tag is downloaded and cached."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mlmp-demo", description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=None, help="node parameter file (default: config/segment.yaml)")
    p.add_argument("--weights", default=None, help="pretrained tag or local weights file (default: the params file's)")
    p.add_argument("--model", default=None, help="open_clip model name (default: the params file's)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda")
    p.add_argument("--method", default=None, help=f"{' | '.join(METHOD_NAMES)} (default: the params file's)")
    p.add_argument("--steps", type=int, default=None, help="adaptation steps per frame")
    p.add_argument("--offline", action="store_true", help="never download weights")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="any other node parameter")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: ./demo_out)")
    p.add_argument("--rate", type=float, default=10.0, help="camera rate in Hz (default: 10, as recorded)")
    p.add_argument("--loops", type=int, default=1, help="times to play the 8-frame stream")
    p.add_argument("--paced", action="store_true", help="send each frame only after the previous result (no drops)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the last result")
    w = p.add_argument_group("world stream (used when no real weights can be had)")
    w.add_argument("--world", action="store_true", help="run the world model on a world stream even if real weights exist")
    w.add_argument("--frames", type=int, default=30, help="frames of the world stream (default 30)")
    w.add_argument("--shift", default="fog", help="shift that sets in over the stream: none, fog, night, rain, blur, dirt")
    w.add_argument("--seed", type=int, default=None, help="world stream seed (default: a held-out stream)")
    return p.parse_args(argv)


def node_parameters(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in (("model", args.model), ("device", args.device), ("adaptation.method", args.method), ("adaptation.steps", args.steps)):
        if value is not None:
            params[key] = value
    if args.offline:
        params["offline"] = True
    from .bench.cli import UsageError, parse_sets

    try:
        params.update(parse_sets(args.set))
    except UsageError as exc:
        raise SystemExit(f"mlmp-demo: {exc}") from None
    return params


def choose_weights(args: argparse.Namespace, params_file: Path) -> tuple[str, str]:
    """(weights to give the node, why random) — real weights when they can be had."""
    from .core import Config
    from .core.backbone import WeightsError, check_model_name, weights_file

    cfg = Config.from_yaml(params_file)
    model = args.model or cfg.model
    weights = args.weights or cfg.weights
    if weights == "random":
        return "random", "random weights were asked for"
    check_model_name(model)
    try:
        path = weights_file(model, weights, cache_dir=cfg.cache_dir or None, offline=args.offline or cfg.offline)
    except WeightsError as exc:
        if args.weights:  # the user named these weights: a failure is an error, not a fallback
            raise SystemExit(f"mlmp-demo: {exc}") from None
        return "random", str(exc).split(" Details:")[0]
    return (str(path) if Path(weights).expanduser().exists() else weights), ""


def world_overlay(image: np.ndarray, labels: np.ndarray, truth: np.ndarray, text: str) -> np.ndarray:
    """Frame | segmentation | ground truth (world palette), a legend and the frame's mIoU below."""
    from .world import CLASSES, PALETTE

    def paint(lab: np.ndarray) -> np.ndarray:
        return PALETTE[np.minimum(lab, len(PALETTE) - 1)]

    panel = np.concatenate([image, paint(labels), paint(truth)], axis=1)
    w = image.shape[1]
    for col, title in enumerate(("camera", "segmentation", "ground truth")):
        cv2.putText(panel, title, (col * w + 10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(panel, title, (col * w + 10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 1, cv2.LINE_AA)
    present = sorted(set(np.unique(labels).tolist()) | set(np.unique(truth).tolist()))
    legend = np.full((72, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(legend, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (0, 0, 0), 1, cv2.LINE_AA)
    x = 8
    for cls in present:
        if cls >= len(CLASSES):
            continue
        legend[38:58, x : x + 20] = PALETTE[cls]
        cv2.putText(legend, CLASSES[cls], (x + 26, 54), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        x += 40 + 11 * len(CLASSES[cls])
    return np.concatenate([panel, legend], axis=0)


def frame_miou(labels: np.ndarray, truth: np.ndarray, metrics=None) -> float:
    """mIoU (%) of one frame over the classes present in it or predicted; adds to ``metrics``."""
    from .bench.metrics import SegmentationMetrics
    from .world import CLASSES

    one = SegmentationMetrics(len(CLASSES))
    one.update(labels, truth)
    if metrics is not None:
        metrics.update(labels, truth)
    return float(one.compute()["mIoU"])


class WorldStreamRun:
    """The world stream the demo plays, its ground truth, and the live mIoU as labels arrive."""

    def __init__(self, frames: int, shift: str, seed: int | None):
        from .world.dataset import STREAM_SEED
        from .world.stream import SHIFTS, WorldStream

        if shift not in SHIFTS:
            raise SystemExit(f"mlmp-demo: unknown shift '{shift}' (choose from {', '.join(SHIFTS)})")
        if frames < 1:
            raise SystemExit("mlmp-demo: --frames must be at least 1")
        self.seed = STREAM_SEED + 900 if seed is None else int(seed)
        self.stream = WorldStream(self.seed, frames, shift=shift)
        self.frames = list(self.stream)
        self.shift = shift
        self.printed: set[int] = set()
        self.per_frame: dict[int, dict[str, Any]] = {}
        from .bench.metrics import SegmentationMetrics
        from .world import CLASSES

        self.metrics = SegmentationMetrics(len(CLASSES), class_names=list(CLASSES))

    def items(self, loops: int) -> list[tuple[int, np.ndarray]]:
        period = 100_000_000
        return [(i * period, self.frames[i % len(self.frames)].image) for i in range(loops * len(self.frames))]

    def score(self, index: int, labels: np.ndarray) -> dict[str, Any]:
        frame = self.frames[index % len(self.frames)]
        miou = frame_miou(labels, frame.labels, self.metrics)
        rec = {"frame": index, "severity": round(frame.severity, 2), "miou": round(miou, 1)}
        self.per_frame[index] = rec
        return rec

    def print_new(self, live) -> None:
        """Score and print the frames whose labels arrived since the last call (publish order gives the index)."""
        with live._cond:
            published = sorted(live._published)
            arrived = {s: o for s, o in live.outputs["labels"].items() if o.array is not None}
        for stamp, out in sorted(arrived.items()):
            if stamp in self.printed or stamp not in published:
                continue
            self.printed.add(stamp)
            rec = self.score(published.index(stamp), out.array)
            run = self.metrics.compute()["mIoU"]
            print(f"  frame {rec['frame']:3d}  {self.shift} {rec['severity']:.2f}  mIoU {rec['miou']:5.1f}  "
                  f"(run so far {run:5.1f})", flush=True)  # fmt: skip

    def watch(self, live, stop) -> None:
        """Print each frame's mIoU as its labels arrive, until ``stop`` is set."""
        while not stop.wait(0.2):
            self.print_new(live)


def overlay(image: np.ndarray, labels: np.ndarray, names: dict[int, str], random_weights: bool = False) -> np.ndarray:
    """The frame beside its segmentation blended over it, with a legend of the classes present."""
    from .ros.conversions import colorize, palette

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


def _choose_run(args: argparse.Namespace, params_file: Path) -> tuple[WorldStreamRun | None, str, str, dict[str, Any]]:
    """(world stream or None, weights, why random, node parameters), announcing the choice."""
    weights, why_random = choose_weights(args, params_file)
    from .world.model import has_bundled_weights, world_settings

    if not (args.world or (why_random and args.weights is None and args.model is None and has_bundled_weights())):
        if why_random:
            print("\n" + RANDOM_BANNER.format(reason=why_random) + "\n", flush=True)
        return None, weights, why_random, {**node_parameters(args), "weights": weights}
    world = WorldStreamRun(args.frames, args.shift, args.seed)
    print(f"mlmp-demo: no real CLIP weights ({why_random})." if why_random else "mlmp-demo: --world given.", flush=True)
    print(f"mlmp-demo: running the bundled world model (mlmp-world) on a generated world stream: "
          f"{len(world.frames)} frames 640x480, '{args.shift}' setting in; the ground truth is known, "
          "so each frame's mIoU is printed as its labels arrive.", flush=True)  # fmt: skip
    # NoAdapt unless --method says otherwise: on this small model MLMP's fusion of the middle
    # blocks costs accuracy (measured in mlmp_ros/world/MODEL_CARD.md), adaptation is not the point here.
    params = {**world_settings(), "adaptation.method": "noadapt", **node_parameters(args)}
    print(f"mlmp-demo: method {params['adaptation.method']} (--method mlmp or tent to adapt; "
          "see mlmp_ros/world/MODEL_CARD.md for what each does on this model)", flush=True)  # fmt: skip
    return world, "world", "", params


def _prepare_out(out: Path) -> None:
    """Create the output folder, clearing a previous run's bag and overlays."""
    if (out / "outputs").exists():
        import shutil

        shutil.rmtree(out / "outputs")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("overlay_*.png"):
        old.unlink()


def _input_stream(world: WorldStreamRun | None, loops: int) -> tuple[list, dict]:
    """(messages to play, source stamp -> RGB frame)."""
    if world is not None:
        stream = world.items(max(1, loops))
        return stream, dict(stream)
    inputs = {stamp: frame for stamp, frame in sample_frames()}
    raw = list(sample_raw_messages())
    return [item for _ in range(max(1, loops)) for item in raw], inputs


def _play(live, stream: list, args: argparse.Namespace, world: WorldStreamRun | None):
    """Play the stream into the node (printing world mIoU as labels arrive); wait for confidence maps."""
    schedule = {"paced": True} if args.paced else {"rate_hz": args.rate}
    if world is not None:
        import threading

        stop = threading.Event()
        watcher = threading.Thread(target=world.watch, args=(live, stop), daemon=True)
        watcher.start()
    try:
        result = live.play(stream, restamp=True, timeout=args.timeout, **schedule)
    finally:
        if world is not None:
            stop.set()
            watcher.join(timeout=5.0)
            world.print_new(live)  # labels that came in after the watcher's last look
    done = [rec.stamp_ns for rec in result.frames if rec.labels is not None]
    try:  # confidence is published right after the labels
        live.wait_until(lambda: all(s in live.outputs["confidence"] for s in done), 5.0, "confidence maps")
    except Exception:  # noqa: BLE001 - a missing map shows in the message count
        pass
    return result


def _write_overlays(result, inputs: dict, world: WorldStreamRun | None, args: argparse.Namespace,
                    names: dict[int, str], random_weights: bool) -> list[Path]:  # fmt: skip
    """One overlay PNG per processed frame in ``args.out``; their paths."""
    sources = {rec.stamp_ns: rec.source_stamp_ns for rec in result.frames}
    overlays = []
    for rec in result.frames:
        if rec.labels is None or rec.labels.array is None:
            continue
        path = args.out / f"overlay_{len(overlays):02d}.png"
        image = inputs[sources[rec.stamp_ns]]
        if world is not None:
            score = world.per_frame.get(rec.index) or world.score(rec.index, rec.labels.array)
            truth = world.frames[rec.index % len(world.frames)].labels
            text = (f"frame {rec.index}  {args.shift} {score['severity']:.2f}   mIoU {score['miou']:.1f} "
                    f"(run {world.metrics.compute()['mIoU']:.1f})")  # fmt: skip
            picture = world_overlay(image, rec.labels.array, truth, text)
        else:
            picture = overlay(image, rec.labels.array, names, random_weights=random_weights)
        cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        overlays.append(path)
    return overlays


def _world_summary(world: WorldStreamRun, result) -> dict[str, Any]:
    """The world stream's part of summary.json, scoring frames whose labels came after the watcher stopped."""
    for rec in result.frames:
        if rec.labels is not None and rec.labels.array is not None and rec.index not in world.per_frame:
            world.score(rec.index, rec.labels.array)
    run = world.metrics.compute()
    return {
        "stream_seed": world.seed,
        "shift": world.shift,
        "frames": len(world.frames),
        "run_miou": run["mIoU"],
        "run_pixel_accuracy": run["aAcc"],
        "per_frame": [world.per_frame[i] for i in sorted(world.per_frame)],
    }


def _node_diagnostics(live, result):
    """The node's last diagnostics report that saw a frame (a later, idle period reports no model
    time).  A short run can end before the node's first report (one per ``diagnostics.period``):
    then wait for the report that covers it, a few periods at most."""
    from .ros.live import SessionTimeout

    def saw_frames(d) -> bool:
        return bool(d.values.get("model_ms"))

    diag = next((d for d in reversed(live.diagnostics) if saw_frames(d)), None)
    if diag is None:
        try:
            diag = live.wait_for_diagnostics(saw_frames, timeout=10.0, after=0.0)
        except SessionTimeout:
            diag = result.diagnostics
    return diag


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params_file = args.params or config_path("segment.yaml")
    stay_on_loopback()
    print(f"mlmp-demo: node parameters from {params_file}", flush=True)
    world, weights, why_random, params = _choose_run(args, params_file)

    from .ros.live import LiveSession, NodeProcess

    out = args.out
    _prepare_out(out)
    stream, inputs = _input_stream(world, args.loops)
    node = NodeProcess(params_file, params, log_path=out / "node.log")
    print("mlmp-demo: starting the node (model load and text embeddings take a while on a CPU) ...", flush=True)
    t0 = time.monotonic()
    with LiveSession(node, keep_serialized=True) as live:
        ready = time.monotonic() - t0
        print(f"mlmp-demo: node ready after {ready:.1f} s; playing {len(stream)} frames", flush=True)
        result = _play(live, stream, args, world)
        names = live.class_map
        diag = _node_diagnostics(live, result)
        outputs = live.outputs

    overlays = _write_overlays(result, inputs, world, args, names, bool(why_random))
    from .bench.bags import recorded, write_recorded_images

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
    if world is not None:
        summary["world"] = _world_summary(world, result)
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
    w = s.get("world")
    if w:
        scored = w["per_frame"]
        print(f"world stream      seed {w['stream_seed']}, {w['frames']} frames, '{w['shift']}' setting in")
        print(f"accuracy          mIoU over the run {w['run_miou']:.1f} (pixel accuracy {w['run_pixel_accuracy']:.1f}) "
              f"on {len(scored)} processed frames, against the ground truth")  # fmt: skip
        if scored:
            first, last = scored[0], scored[-1]
            print(f"                  first frame {first['miou']:.1f} ({w['shift']} {first['severity']:.2f}), "
                  f"last frame {last['miou']:.1f} ({w['shift']} {last['severity']:.2f})")  # fmt: skip
    print(f"outputs           {s['outputs_bag']} ({s['output_messages']} messages), {len(s['overlays'])} overlays in {Path(s['outputs_bag']).parent}")
    if s["frames_dropped"]:
        print("note              the node was slower than the camera; use --paced to process every frame")
    print(line)


if __name__ == "__main__":
    sys.exit(main())
