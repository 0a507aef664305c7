"""Where ``mlmp-bench run`` spends its time: the model versus the harness around it.

Builds a synthetic VOC2012-layout split (the one benchmarks/make_bags_throughput.py
uses: 500x375 JPEGs, palette labels), writes it as bags, and times

* the harness stages per frame on their own: bag decode, corruption (paid when the
  bag is written, not when it runs), protocol resize (bags at the original size only;
  presized bags skip it) and scoring;
* a real ``run`` (the function behind ``mlmp-bench run``): NoAdapt, ViT-B-16-quickgelu
  with random weights, batch 2, one trial over the whole split, and its share of time
  spent in the model, of the per-frame work and of the whole run (loading the model and
  the text bank included; importing open_clip, a process-start cost, is done before and
  reported apart).  The requirement is a model share of at least 90%.

Prints JSON; ``--out`` also writes it.

    python benchmarks/harness_overhead.py --images 100 --out benchmarks/results/harness_overhead.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def build_voc(root: Path, count: int) -> None:
    """The synthetic split of make_bags_throughput.py (one builder for both benchmarks)."""
    path = Path(__file__).with_name("make_bags_throughput.py")
    spec = importlib.util.spec_from_file_location("make_bags_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_voc(root, count)


def per_frame_ms(seconds: float, frames: int) -> float:
    return round(1000 * seconds / frames, 3)


def stage_timings(dataset, bag_presized: Path, bag_original: Path) -> dict:
    """Each harness stage alone, in ms per frame."""
    from mlmp_ros.bench.data.bags import open_bag
    from mlmp_ros.bench.data.corruptions import corrupt_image
    from mlmp_ros.bench.offline.frames import load_frames
    from mlmp_ros.bench.scoring.metrics import SegmentationMetrics

    frames = load_frames(bag_presized)
    n = len(frames)
    started = time.perf_counter()
    for _ in open_bag(bag_presized):
        pass
    decode_only = time.perf_counter() - started
    raw = load_frames(bag_original)

    images = [dataset[i].image for i in range(min(20, len(dataset)))]
    corrupt_image(images[0], "gaussian_noise", 5, seed=0)  # first-call warm-up
    started = time.perf_counter()
    for i, image in enumerate(images):
        corrupt_image(image, "gaussian_noise", 5, seed=i)
    corrupt = time.perf_counter() - started

    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 20, labels.shape, dtype=np.uint8) for labels in frames.labels]
    metrics = SegmentationMetrics(frames.num_classes, frames.ignore_index)
    started = time.perf_counter()
    for pred, labels in zip(preds, frames.labels):
        metrics.update(pred, labels)
    score = time.perf_counter() - started
    return {
        "decode_presized_224": per_frame_ms(decode_only, n),
        "decode_original_500x375": per_frame_ms(raw.decode_s, len(raw)),
        "resize_to_224_when_not_presized": per_frame_ms(raw.resize_s, len(raw)),
        "resize_presized": per_frame_ms(frames.resize_s, n),
        "corrupt_gaussian_noise_500x375_at_bag_writing": per_frame_ms(corrupt, len(images)),
        "score_224": per_frame_ms(score, n),
    }


def one_time_costs(config) -> dict:
    """Importing open_clip (process start; before the timed run), loading the model and encoding the text bank."""
    from mlmp_ros.core.backbone import load_clip
    from mlmp_ros.core.methods import METHODS
    from mlmp_ros.core.text import ClassList, TextBank, resolve_templates

    started = time.perf_counter()
    import open_clip  # noqa: F401

    imported = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_clip(config.model, "random", device="cpu")
    built = time.perf_counter()
    templates = resolve_templates(config.templates or METHODS["noadapt"].default_templates)
    TextBank(loaded.model, loaded.tokenizer, ClassList.resolve("voc20"), templates)
    encoded = time.perf_counter()
    return {
        "import_open_clip_not_in_run": round(imported - started, 3),
        "model_load": round(built - imported, 3),
        "text_bank": round(encoded - built, 3),
    }


def run_timing(bag: Path, out: Path, model: str, batch: int) -> dict:
    """``mlmp-bench run`` in process (run_bags), with the time split by stage."""
    from mlmp_ros.bench.offline.options import RunOptions
    from mlmp_ros.bench.suite.run import run_bags
    from mlmp_ros.bench.suite.store import ResultStore
    from mlmp_ros.core import Config

    config = Config(model=model, weights="random", device="cpu", precision="fp32")
    options = RunOptions(batch_size=batch, seeds=(0,), examples=3)
    once = one_time_costs(config)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_bags([bag], config, ["noadapt"], options, out, progress=False)
    total = time.perf_counter() - started
    (record,) = ResultStore(out).read()
    t = record.timing
    frames = record.frames
    model_s = t["model_s_per_frame"] * frames
    seg = {k: v * frames for k, v in t["segmenter_s_per_frame"].items()}
    harness = {k: v * frames for k, v in t["harness_s_per_frame"].items()}
    per_frame_work = seg["total"] + harness["total"]
    setup = max(total - record.wall_s - harness["decode"] - harness["resize"], 0.0)
    return {
        "method": "noadapt",
        "model": model,
        "weights": "random",
        "batch_size": batch,
        "frames": frames,
        "run_wall_s": round(total, 3),
        "one_time_setup_s": round(setup, 3),
        # the same one-time steps timed alone (the run pays them once, whatever the number of frames)
        "one_time_parts_s": once,
        "ms_per_frame": {
            "model": per_frame_ms(model_s, frames),
            "segmenter_prepare": per_frame_ms(seg["prepare"], frames),
            "segmenter_post": per_frame_ms(seg["post"], frames),
            "harness_decode": per_frame_ms(harness["decode"], frames),
            "harness_resize": per_frame_ms(harness["resize"], frames),
            "harness_score": per_frame_ms(harness["score"], frames),
            "harness_loop": per_frame_ms(harness["loop"], frames),
        },
        # the per-frame work: segmenter (prepare + model + post) plus the harness
        "model_share_of_frame_work": round(model_s / per_frame_work, 4),
        # everything run() did, including loading the model and the text bank once
        "model_share_of_run_wall": round(model_s / total, 4),
        # the same, counting the text bank (CLIP's text tower run once) as model time
        "model_share_of_run_wall_with_text_bank": round((model_s + once["text_bank"]) / total, 4),
        "requirement_model_share_at_least": 0.9,
        "meets_requirement": model_s / per_frame_work >= 0.9 and model_s / total >= 0.9,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--model", default="ViT-B-16-quickgelu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)

    import torch

    from mlmp_ros.bench.data.make_bags import make_bag
    from mlmp_ros.bench.data.registry import open_dataset

    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="mlmp-overhead-") as tmp:
        tmp_path = Path(tmp)
        build_voc(tmp_path / "VOC2012", args.images)
        dataset = open_dataset("voc20", tmp_path / "VOC2012")
        presized = make_bag(dataset, "original", tmp_path / "bags/voc20/original", progress=False)
        original = make_bag(dataset, "original", tmp_path / "raw/voc20/original", presize=False, progress=False)
        stages = stage_timings(dataset, presized, original)
        run = run_timing(presized, tmp_path / "results", args.model, args.batch)

    result = {
        "benchmark": "harness_overhead",
        "dataset": f"synthetic voc20 layout, {args.images} images 500x375, presized MCAP bag (224x224)",
        "harness_stage_ms_per_frame": stages,
        "run": run,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            # other jobs share this machine; the load says how much
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
