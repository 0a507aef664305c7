"""Measure the world model on held-out world scenes: per block, per attention, per method.

    python -m mlmp_ros.world.evaluate --out benchmarks/results/world_model.json \
        [--weights FILE] [--scenes 16] [--methods noadapt,tent,mlmp] [--corruptions original,fog,...]

Everything goes through the public :class:`~mlmp_ros.core.Segmenter` (the dense path
the node and the benchmark use).  Scores are mIoU in percent over all scenes together
(intersections and unions summed before dividing, as the benchmark does), at the
frames' own size.  Scenes use seeds from ``HELD_OUT_SEED`` + 200 000 up (never seen in
training, and apart from the benchmark's ``world`` bags and the tests).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..bench.corruptions import corrupt_image
from ..bench.metrics import SegmentationMetrics
from .model import bundled_weights, world_config
from .scenes import render_scene
from .textures import CLASSES
from .train import HELD_OUT_SEED

EVAL_SEED = HELD_OUT_SEED + 200_000


def held_out_scenes(count: int, height: int = 480, width: int = 640, seed: int = EVAL_SEED):
    scenes = [render_scene(seed + i, height, width) for i in range(count)]
    return [s.image for s in scenes], [s.labels for s in scenes]


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


def segmenter_for(weights: str, **settings):
    from ..core import Segmenter

    return Segmenter(world_config(weights=weights, **settings))


def per_block(weights: str, images, labels, attentions=("naclip", "clip")) -> dict[str, list[float]]:
    """NoAdapt mIoU reading out each block alone (that block gets the dense attention)."""
    from ..core import Segmenter

    out: dict[str, list[float]] = {}
    base = segmenter_for(weights, **{"adaptation.method": "noadapt"})
    n = base.encoder.num_layers
    for attention in attentions:
        row = []
        for b in range(n):
            seg = Segmenter(world_config(weights=weights, attention=attention, layers=[b], **{"adaptation.method": "noadapt"}),
                            loaded=base.loaded)  # fmt: skip
            row.append(score(seg, images, labels)["miou"])
        out[attention] = row
    return out


def per_method(weights: str, images, labels, methods: Sequence[str], corruptions: Sequence[str], severity: int = 5):
    from ..core import Segmenter

    base = segmenter_for(weights, **{"adaptation.method": "noadapt"})
    table: dict[str, dict[str, Any]] = {}
    for corruption in corruptions:
        imgs = [corrupt_image(im, corruption, severity, seed=i) for i, im in enumerate(images)]
        table[corruption] = {}
        for method in methods:
            seg = Segmenter(world_config(weights=weights, **{"adaptation.method": method}), loaded=base.loaded)
            table[corruption][method] = score(seg, imgs, labels)
            seg.reset()  # the shared model back to the source weights for the next method
            print(corruption, method, table[corruption][method], flush=True)
    return table


def host_info() -> dict[str, Any]:
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mlmp_ros.world.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=str(bundled_weights()))
    ap.add_argument("--out", required=True)
    ap.add_argument("--scenes", type=int, default=16)
    ap.add_argument("--methods", default="noadapt,tent,mlmp")
    ap.add_argument("--corruptions", default="original")
    ap.add_argument("--skip-blocks", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    images, labels = held_out_scenes(args.scenes)
    report: dict[str, Any] = {
        "weights": args.weights,
        "scenes": args.scenes,
        "scene_seeds": [EVAL_SEED, EVAL_SEED + args.scenes - 1],
        "size": "640x480",
        "host": host_info(),
        "note": "mIoU in percent, all scenes pooled; timings are noisy (shared CPU)",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_blocks:
        report["per_block_noadapt"] = per_block(args.weights, images, labels)
        print("per block", report["per_block_noadapt"], flush=True)
        out.write_text(json.dumps(report, indent=1))
    methods = [m for m in args.methods.split(",") if m]
    corruptions = [c for c in args.corruptions.split(",") if c]
    if methods:
        report["per_method"] = per_method(args.weights, images, labels, methods, corruptions)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
