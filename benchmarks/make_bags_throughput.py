"""How fast make_bag turns a VOC-sized split into bags, per corruption and storage.

Builds a synthetic VOC2012-layout split (JPEG images of 500x375, palette PNG labels) in a
temporary folder, then times make_bag for the clean images and two corruptions (a cheap
noise and glass_blur, the slowest in the reference) in MCAP and SQLite3 storage.
Corruption kernels are warmed up first (glass_blur compiles with numba on first use);
the warm-up time is reported separately.  Prints JSON.

    python benchmarks/make_bags_throughput.py [--images 100] [--corruptions original,gaussian_noise,glass_blur]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from PIL import Image

from mlmp_ros.bench.data.corruptions import corrupt_image
from mlmp_ros.bench.data.make_bags import make_bag
from mlmp_ros.bench.data.registry import open_dataset


def build_voc(root: Path, count: int, width: int = 500, height: int = 375) -> None:
    """Synthetic VOC2012 split: smooth colour fields with texture, blocky labels 0-20 and 255 borders."""
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    palette = [v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]
    ids = []
    for i in range(count):
        image_id = f"2007_{i:06d}"
        phase = rng.uniform(0, 6.28, 3)
        base = np.stack([128 + 100 * np.sin(xx / (40 + 9 * c) + yy / (55 + 7 * c) + phase[c]) for c in range(3)], -1)
        image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
        blocks = rng.integers(0, 21, (height // 25 + 1, width // 25 + 1)).astype(np.uint8)
        labels = np.kron(blocks, np.ones((25, 25), np.uint8))[:height, :width]
        labels[::25] = 255
        label_image = Image.fromarray(labels)
        label_image.putpalette(palette)
        label_image.save(root / "SegmentationClass" / f"{image_id}.png")
        ids.append(image_id)
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids) + "\n")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--corruptions", default="original,gaussian_noise,glass_blur")
    parser.add_argument("--storages", default="mcap,sqlite3")
    args = parser.parse_args()
    corruptions = args.corruptions.split(",")
    storages = args.storages.split(",")

    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="mlmp-bench-") as tmp:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        build_voc(tmp_path / "VOC2012", args.images)
        build_s = time.perf_counter() - started
        dataset = open_dataset("voc21", tmp_path / "VOC2012")

        warmup = {}
        probe = dataset[0].image
        for name in corruptions:
            started = time.perf_counter()
            corrupt_image(probe, name, 5, seed=0)
            warmup[name] = round(time.perf_counter() - started, 3)

        # Stage costs on their own, to read the totals: decoding, then each corruption.
        started = time.perf_counter()
        images = [sample.image for sample in dataset]
        stages = {"read_ms_per_image": round(1000 * (time.perf_counter() - started) / len(images), 1)}
        for name in corruptions:
            started = time.perf_counter()
            for i, image in enumerate(images):
                corrupt_image(image, name, 5, seed=i)
            stages[f"{name}_ms_per_image"] = round(1000 * (time.perf_counter() - started) / len(images), 1)
        del images

        runs = []
        for name in corruptions:
            for storage in storages:
                out = tmp_path / "bags" / f"{name}_{storage}"
                started = time.perf_counter()
                make_bag(dataset, name, out, storage=storage, progress=False)
                seconds = time.perf_counter() - started
                runs.append(
                    {
                        "corruption": name,
                        "storage": storage,
                        "images": len(dataset),
                        "seconds": round(seconds, 3),
                        "images_per_s": round(len(dataset) / seconds, 2),
                        "ms_per_image": round(1000 * seconds / len(dataset), 1),
                        "bag_mb": round(folder_bytes(out) / 2**20, 2),
                    }
                )

    result = {
        "benchmark": "make_bags_throughput",
        "dataset": "synthetic voc21 layout, 500x375 JPEG, presized to 224x224, severity 5, channel order bgr",
        "images": args.images,
        "build_dataset_s": round(build_s, 2),
        "first_call_warmup_s": warmup,
        "stages": stages,
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(),
            # Other work on the machine skews the timings; the 1/5/15-minute load says how much.
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
            "numpy": np.__version__,
            "rosbags": version("rosbags"),
            "imagecorruptions": version("imagecorruptions-imaug"),
        },
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
