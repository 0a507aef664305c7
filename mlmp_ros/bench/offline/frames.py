"""A bag's frames decoded once and brought to the scoring resolution, shared by every method and trial."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core.windows import fit_to_window, pair, resize_image, resize_labels, target_size
from ..data.bags import BagFile, open_bag
from .options import RunError, protocol


@dataclass
class BenchFrames:
    """A bag's frames, decoded and resized to the scoring resolution, in bag order."""

    bag_path: Path
    info: dict[str, Any]
    images: list[np.ndarray]
    labels: list[np.ndarray]
    ids: list[str | None]
    decode_s: float  # reading and deserialising the bag
    resize_s: float  # protocol resize of images and labels (zero for a presized bag)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return int(self.info["num_classes"])

    @property
    def ignore_index(self) -> int:
        return int(self.info.get("ignore_index", 255))


def load_frames(
    bag: BagFile | str | os.PathLike[str],
    *,
    limit: int | None = None,
    progress: bool = False,
) -> BenchFrames:
    """Decode a bench bag once and bring every frame to the scoring resolution.

    Images get the protocol resize the segmenter would apply (bilinear, so a
    segmenter given the result resizes nothing more) and labels go straight from
    their stored size to the scoring size (nearest neighbour).  Both are identities
    for a presized bag.
    """
    bag = bag if isinstance(bag, BagFile) else open_bag(bag)
    info = bag.info
    for key in ("class_key", "num_classes", "protocol"):
        if key not in info:
            raise RunError(f"bag {bag.path} has no '{key}' in its description; write it again with make-bags")
    resize, window, _ = protocol(info)
    window_hw = pair(window)
    count = len(bag) if limit is None else min(limit, len(bag))
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    ids: list[str | None] = []
    decode_s = resize_s = 0.0
    bar = progress_bar(count, f"decode {info.get('dataset')}/{info.get('corruption')}", progress, unit="img")
    frames = iter(bag)
    try:
        while len(images) < count:
            t0 = time.perf_counter()
            frame = next(frames, None)
            t1 = time.perf_counter()
            decode_s += t1 - t0
            if frame is None:
                raise RunError(f"bag {bag.path} ended after {len(images)} of its {len(bag)} frames; write it again")
            h, w = frame.image.shape[:2]
            images.append(resize_image(frame.image, target_size(h, w, resize)))
            labels.append(resize_labels(frame.labels, fit_to_window(target_size(h, w, resize), window_hw)))
            ids.append(frame.image_id)
            resize_s += time.perf_counter() - t1
            bar.update(1)
    finally:
        bar.close()
        close = getattr(frames, "close", None)
        if close is not None:
            close()  # releases the bag reader when stopping early (limit)
    if not images:
        raise RunError(f"bag {bag.path} holds no frames")
    warn_out_of_range(bag.path, labels, ids, int(info["num_classes"]), int(info.get("ignore_index", 255)))
    return BenchFrames(bag.path, dict(info), images, labels, ids, decode_s, resize_s)


def warn_out_of_range(path: Any, labels: Sequence[np.ndarray], ids: Sequence[str | None], classes: int,
                      ignore: int) -> int:  # fmt: skip
    """Print one console warning when ground-truth ids fall outside the classes; returns the pixel count.

    Such pixels are never scored (the metrics count them as ``out_of_range_pixels``, and
    the report marks the cells); they usually mean a wrong label mapping.
    """
    counts = [int(((lab >= classes) & (lab != ignore)).sum()) for lab in labels]
    total = sum(counts)
    if total:
        first = next(i for i, c in enumerate(counts) if c)
        ids_seen = sorted({int(v) for v in np.unique(labels[first]) if v >= classes and v != ignore})
        name = f"frame {first}" + (f" ({ids[first]})" if ids[first] else "")
        print(
            f"warning: bag {path}: {total} ground-truth pixels in {sum(1 for c in counts if c)} frames have "
            f"label ids outside the classes 0..{classes - 1} (ignore {ignore}), e.g. {name}: ids "
            f"{', '.join(map(str, ids_seen[:8]))}; they are not scored",
            file=sys.stderr,
        )
    return total


def progress_bar(total: int, desc: str, enabled: bool, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not enabled, dynamic_ncols=True)


def save_examples(path: Path, examples: Mapping[str, np.ndarray], ids: Iterable[str | None] = ()) -> None:
    """Write the qualitative examples as one compressed .npz, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, ids=np.array([str(i) for i in ids]), **dict(examples))
    os.replace(tmp, path)
