"""Measure the world model on held-out world scenes: its properties, then every method.

    python -m mlmp_ros.bench.study.model_card properties --out benchmarks/results/world_model.json [--scenes 16]
    python -m mlmp_ros.bench.study.model_card methods --out benchmarks/results/world_methods.json \
        [--methods noadapt,tent,mlmp] [--conditions original,fog,...,shift:fog] [--lrs 1e-4,3e-4,1e-3]

``properties`` measures what the model card promises, before any method is scored:
each block MLMP reads, read alone the way MLMP reads it (the attention branch; ordinary
attention for a non-final block, NACLIP for the last); NACLIP against plain CLIP
attention at the last block; MLMP's fusion at 0 steps; NoAdapt on clean scenes, under
the 15 ImageNet-C corruptions at severity 5 and under each world stream shift at full
strength.  ``methods`` scores adaptation methods (episodic, the paper's settings, one
frame per batch) on the same scenes under the chosen conditions and learning rates; it
writes its JSON after every condition and resumes from it when run again.

Everything goes through the public :class:`~mlmp_ros.core.Segmenter`.  Scores are mIoU
in percent over all scenes together (intersections and unions summed before dividing,
as the benchmark does).  Scenes use seeds from ``HELD_OUT_SEED`` + 200 000 up (never
seen in training, and apart from the benchmark's ``world`` bags and the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.segmenter import Segmenter, default_layers
from ...world.model import bundled_weights, world_config
from ...world.scenes import render_scene
from ...world.shifts import SHIFTS, apply_shift
from ...world.textures import CLASSES
from ...world.train import HELD_OUT_SEED
from ..data.corruptions import CORRUPTIONS, corrupt_image
from ..scoring.metrics import SegmentationMetrics

EVAL_SEED = HELD_OUT_SEED + 200_000
STREAM_SHIFTS = tuple(s for s in SHIFTS if s != "none")


def held_out_scenes(count: int, height: int = 480, width: int = 640, seed: int = EVAL_SEED):
    scenes = [render_scene(seed + i, height, width) for i in range(count)]
    return [s.image for s in scenes], [s.labels for s in scenes]


def condition_images(images: Sequence[np.ndarray], condition: str, severity: int = 5) -> list[np.ndarray]:
    """The scenes under ``condition``: ``original``, an ImageNet-C corruption, or ``shift:<name>`` at full strength."""
    if condition == "original":
        return list(images)
    if condition.startswith("shift:"):
        shift = condition.split(":", 1)[1]
        return [apply_shift(im, shift, 1.0, np.random.default_rng([EVAL_SEED, i]), {}) for i, im in enumerate(images)]
    return [corrupt_image(im, condition, severity, seed=i) for i, im in enumerate(images)]


def score(segmenter, images: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> dict[str, Any]:
    """mIoU (%) of ``segmenter`` on the images, one frame per adaptation batch."""
    metrics = SegmentationMetrics(len(CLASSES), class_names=list(CLASSES))
    losses_first, losses_last = [], []
    t0 = time.perf_counter()
    for img, lab in zip(images, labels):
        out = segmenter.segment([img])
        metrics.update(out.frames[0].labels, lab)
        if out.losses:
            losses_first.append(out.losses[0])
            losses_last.append(out.losses[-1])
    res = metrics.compute()
    result = {
        "miou": round(float(res["mIoU"]), 2),
        "aacc": round(float(res["aAcc"]), 2),
        "seconds_per_frame": round((time.perf_counter() - t0) / max(len(images), 1), 3),
    }
    if losses_first:
        result["loss_first_step"] = round(float(np.mean(losses_first)), 4)
        result["loss_last_step"] = round(float(np.mean(losses_last)), 4)
    return result


def block_readout(block: int, last: int) -> dict[str, Any]:
    """Settings that read ``block`` alone the way MLMP reads it in its fusion."""
    if block == last:
        return {"layers": [block], "attention": "naclip"}
    return {"layers": [block], "attention": "clip", "features": "reduced"}


class Probe:
    """One loaded model, segmenters over it for any settings (NoAdapt unless told)."""

    def __init__(self, weights: str):
        self.weights = weights
        self.base = Segmenter(world_config(weights=weights, **{"adaptation.method": "noadapt"}))
        self.num_layers = self.base.encoder.num_layers
        self.mlmp_layers = sorted(b % self.num_layers for b in default_layers("mlmp", self.num_layers))

    def segmenter(self, **settings):
        settings = {"adaptation.method": "noadapt", **settings}
        return Segmenter(world_config(weights=self.weights, **settings), loaded=self.base.loaded)

    def miou(self, images, labels, **settings) -> float:
        seg = self.segmenter(**settings)
        try:
            return score(seg, images, labels)["miou"]
        finally:
            seg.reset()


def properties(probe: Probe, images, labels, severity: int = 5) -> dict[str, Any]:
    """(a), (b), (c), (d) of the model card, measured."""
    last = probe.num_layers - 1
    blocks = {str(b): probe.miou(images, labels, **block_readout(b, last)) for b in probe.mlmp_layers}
    print("blocks as MLMP reads them", blocks, flush=True)
    out: dict[str, Any] = {
        "blocks": probe.num_layers,
        "mlmp_layers": probe.mlmp_layers,
        "per_block_mlmp_readout": blocks,
        "naclip_last": blocks[str(last)],
        "clip_last": probe.miou(images, labels, attention="clip"),
        "mlmp_fused_0_steps": probe.miou(images, labels, **{"adaptation.method": "mlmp", "adaptation.steps": 0}),
    }
    print({k: out[k] for k in ("naclip_last", "clip_last", "mlmp_fused_0_steps")}, flush=True)
    clean = out["naclip_last"]
    corr = {}
    for name in CORRUPTIONS:
        corr[name] = probe.miou(condition_images(images, name, severity), labels)
        print(name, corr[name], flush=True)
    shifts = {s: probe.miou(condition_images(images, f"shift:{s}"), labels) for s in STREAM_SHIFTS}
    print("shifts", shifts, flush=True)
    mean = float(np.mean(list(corr.values())))
    out["robustness"] = {
        "clean": clean,
        "severity": severity,
        "corruptions": corr,
        "corruption_mean": round(mean, 2),
        "corruption_mean_kept": round(mean / clean, 3),
        "corruption_min_kept": round(min(corr.values()) / clean, 3),
        "shifts_full_strength": shifts,
        "shift_min_kept": round(min(shifts.values()) / clean, 3),
    }
    return out


def per_method(probe: Probe, images, labels, methods: Sequence[str], conditions: Sequence[str], lrs: Sequence[float],
               table: dict[str, Any], save) -> dict[str, Any]:  # fmt: skip
    """``table[condition][method][lr]`` filled in (entries already there are kept: a rerun resumes)."""
    for condition in conditions:
        imgs = None
        for method in methods:
            for lr in ([None] if method == "noadapt" else lrs):
                key = "-" if lr is None else f"{lr:g}"
                if key in table.get(condition, {}).get(method, {}):
                    continue
                imgs = imgs if imgs is not None else condition_images(images, condition)
                settings: dict[str, Any] = {"adaptation.method": method}
                if lr is not None:
                    settings["adaptation.lr"] = lr
                seg = probe.segmenter(**settings)
                res = score(seg, imgs, labels)
                seg.reset()  # the shared model back to the source weights for the next run
                table.setdefault(condition, {}).setdefault(method, {})[key] = res
                print(condition, method, key, res, flush=True)
                save()
    return table


def host_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in have]
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__}  # fmt: skip


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m mlmp_ros.bench.study.model_card",
        description="Measure the world model on held-out world scenes: its properties, then every method.",
    )
    ap.add_argument("what", choices=("properties", "methods"), help="properties of the model, or methods scored on it")
    ap.add_argument("--weights", default=str(bundled_weights()), help="weights file (default: the bundled model)")
    ap.add_argument("--out", required=True, help="JSON to write (methods: resumed when it exists)")
    ap.add_argument("--scenes", type=int, default=16, help="held-out scenes (default 16)")
    ap.add_argument("--methods", default="noadapt,tent,mlmp", help="methods, comma-separated")
    ap.add_argument("--conditions", default="original",
                    help="original, ImageNet-C corruption names, 'corruptions' (all 15), shift:<name> or 'shifts' (all)")
    ap.add_argument("--lrs", default="1e-3", help="learning rates for every adapting method alike, comma-separated")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = ap.parse_args(argv)
    if args.scenes < 1:
        ap.error("--scenes must be at least 1")
    return args


def _conditions(spec: str) -> list[str]:
    out: list[str] = []
    for c in (c.strip() for c in spec.split(",") if c.strip()):
        out += list(CORRUPTIONS) if c == "corruptions" else [f"shift:{s}" for s in STREAM_SHIFTS] if c == "shifts" else [c]
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    images, labels = held_out_scenes(args.scenes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = json.loads(out.read_text()) if args.what == "methods" and out.is_file() else {}
    report.update({
        "weights": Path(args.weights).name,
        "scenes": args.scenes,
        "scene_seeds": [EVAL_SEED, EVAL_SEED + args.scenes - 1],
        "size": "640x480 (the protocol resizes to 320x240, windows 160, stride 80)",
        "host": host_info(),
        "note": "mIoU in percent, all scenes pooled; world model numbers, not CLIP's; timings vary with load",
    })  # fmt: skip

    def save() -> None:
        out.write_text(json.dumps(report, indent=1) + "\n")

    probe = Probe(args.weights)
    if args.what == "properties":
        report.update(properties(probe, images, labels))
    else:
        report["protocol"] = "episodic, batch 1, each method's paper settings (10 steps), lr as keyed"
        methods = [m for m in args.methods.split(",") if m]
        lrs = [float(x) for x in args.lrs.split(",") if x]
        report["per_method"] = per_method(probe, images, labels, methods, _conditions(args.conditions), lrs,
                                          report.get("per_method", {}), save)  # fmt: skip
    save()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
