"""Pixel identity of our 15 corruptions with the reference's own corruption code.

Runs the corruption module vendored by the reference implementation (a checkout of
https://github.com/dosowiechi/MLMP, given with --reference) the way its data pipeline
does — NumPy's global generator seeded with the image's index, mmcv's BGR array in —
beside ``mlmp_ros.bench.data.corruptions.corrupt_image`` on the same images, and prints JSON:
per corruption, how many images are pixel-identical, the largest difference and the
share of differing pixels.  Nothing of the reference is copied: it is imported from the
checkout.  The reference's fog uses ``np.float_``, which NumPy 2 removed; the script
defines it as float64 (its NumPy 1 meaning) before importing.

    python benchmarks/corruption_parity.py --reference /path/to/MLMP [--images 6] [--out FILE]
    python benchmarks/corruption_parity.py --reference /path/to/MLMP --fixture test/bench/data/reference_corruptions.npz

``--fixture`` also writes the reference's outputs for a small synthetic image (seeds
chosen so that frost's texture draw differs between randint(5) and randint(6)), which
test/bench/data/test_corruptions.py compares against.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from mlmp_ros.bench.data.corruptions import CORRUPTIONS, corrupt_image

FIXTURE_SEEDS = (0, 1, 19)  # 1 and 19: randint(5) and randint(6) pick different frost textures
FIXTURE_SHAPE = (40, 52)


def load_reference(checkout: Path):
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # the reference's fog; NumPy 1 spelled float64 this way
    package = checkout / "utils" / "imagecorruptions"
    spec = importlib.util.spec_from_file_location(
        "mlmp_reference_corruptions", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def reference_rgb(ref, image: np.ndarray, name: str, seed: int, severity: int = 5) -> np.ndarray:
    """The reference's CorruptTransform on mmcv's BGR array, converted back to RGB."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        out = ref.corrupt(np.ascontiguousarray(image[..., ::-1]), severity=severity, corruption_name=name)
    finally:
        np.random.set_state(state)
    return np.ascontiguousarray(np.asarray(out, np.uint8)[..., ::-1])


def fixture_image() -> np.ndarray:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0 : FIXTURE_SHAPE[0], 0 : FIXTURE_SHAPE[1]]
    base = np.stack([xx * 4 % 256, (yy * 6) % 256, ((xx + yy) * 3) % 256], -1).astype(np.float64)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def sample_images(count: int) -> list[tuple[str, np.ndarray]]:
    """scikit-image's photographs, resized to VOC's usual 500x375 (and 375x500) when larger."""
    import cv2
    import skimage.data as data

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "cat"]
    out = []
    for i, name in enumerate(names[:count]):
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, -1)
        image = image[..., :3]
        size = (500, 375) if i % 2 == 0 else (375, 500)
        out.append((name, cv2.resize(image, size, interpolation=cv2.INTER_AREA)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="checkout of dosowiechi/MLMP")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--corruptions", default=",".join(CORRUPTIONS))
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--fixture", type=Path, help="write the reference's outputs for the test fixture here")
    args = parser.parse_args()
    ref = load_reference(args.reference)
    names = [n for n in args.corruptions.split(",") if n]

    if args.fixture:
        image = fixture_image()
        arrays = {"image": image}
        for name in CORRUPTIONS:
            for seed in FIXTURE_SEEDS:
                arrays[f"{name}/{seed}"] = reference_rgb(ref, image, name, seed)
        args.fixture.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.fixture, **arrays)

    images = sample_images(args.images)
    results = {}
    for name in names:
        rows = []
        for index, (image_name, image) in enumerate(images):
            seed = index * 97 + 1  # spread over seeds, including frost's texture-6 draws
            start = time.perf_counter()
            theirs = reference_rgb(ref, image, name, seed)
            t_ref = time.perf_counter() - start
            start = time.perf_counter()
            ours = corrupt_image(image, name, 5, seed=seed)
            t_ours = time.perf_counter() - start
            diff = np.abs(theirs.astype(np.int16) - ours.astype(np.int16))
            rows.append(
                {
                    "image": image_name,
                    "shape": list(image.shape),
                    "seed": seed,
                    "identical": bool(not diff.any()),
                    "max_diff": int(diff.max()),
                    "differing_pixels": float((diff.max(-1) > 0).mean()),
                    "seconds_reference": round(t_ref, 3),
                    "seconds_ours": round(t_ours, 3),
                }
            )
        results[name] = {
            "identical": f"{sum(r['identical'] for r in rows)}/{len(rows)}",
            "max_diff": max(r["max_diff"] for r in rows),
            "images": rows,
        }
        print(f"{name:18s} identical {results[name]['identical']}  max diff {results[name]['max_diff']}", file=sys.stderr)
    report = {
        "what": "corrupt_image vs the reference's vendored imagecorruptions, severity 5, BGR in, seeded by index",
        "host": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "imagecorruptions-imaug": version("imagecorruptions-imaug"),
            "scikit-image": version("scikit-image"),
            "scipy": version("scipy"),
            "opencv": version("opencv-python") if _installed("opencv-python") else None,
        },
        "corruptions": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def _installed(dist: str) -> bool:
    try:
        version(dist)
        return True
    except PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
