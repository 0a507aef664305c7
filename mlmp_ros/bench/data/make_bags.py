"""Turn a data set split and one corruption into a bench bag.

Per sample, in the split's order: corrupt at the original size seeded by the sample's
index, then (``presize``) resize to the protocol size — image bilinear, labels nearest —
and write.  The bag is written under a hidden temporary folder beside the target and
renamed into place only when complete, so an interrupted run never leaves a bag that
looks finished.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ... import __version__
from ...core.windows import resize_image, resize_labels, target_size
from .bags import DEFAULT_RATE_HZ, DEFAULT_STORAGE, STORAGES, BagError, BagWriter, open_bag
from .corruptions import CHANNEL_ORDERS, DRAWS, ORIGINAL, SEVERITY, check_corruption, corrupt_image
from .datasets import SegmentationDataset
from .entry import DatasetError


def corruption_library() -> str | None:
    """``imagecorruptions-imaug <version>``, the library behind 12 of the 15 corruptions."""
    try:
        return f"imagecorruptions-imaug {version('imagecorruptions-imaug')}"
    except PackageNotFoundError:
        return None


def dataset_info(
    dataset: SegmentationDataset,
    corruption: str,
    *,
    severity: int,
    channel_order: str,
    presize: bool,
    count: int,
    storage: str = DEFAULT_STORAGE,
    limit: int | None = None,
) -> dict[str, Any]:
    """The self-description a bag carries, so scoring needs nothing but the bag."""
    corrupted = corruption != ORIGINAL
    return {
        "dataset": dataset.name,
        "base_dataset": dataset.base_name,
        "condition": dataset.condition,
        "split": dataset.split,
        "corruption": corruption,
        "severity": severity if corrupted else None,
        "channel_order": channel_order if corrupted else None,
        "corruption_seed": "image index" if corrupted else None,
        "corruption_draws": DRAWS if corrupted else None,
        "corruption_library": corruption_library() if corrupted else None,
        "class_key": dataset.class_key,
        "class_names": list(dataset.class_names),
        "num_classes": dataset.num_classes,
        "ignore_index": dataset.ignore_index,
        "protocol": {"resize": list(dataset.protocol_resize), "window": dataset.window, "stride": dataset.stride},
        "presized": presize,
        "storage": storage,
        "limit": limit if limit is not None and limit < len(dataset) else None,  # None: the whole split
        "split_size": len(dataset),
        "frame_count": count,
        "image_ids": dataset.ids[:count],
        "generation": generation_of(dataset),
        "created_by": f"mlmp_ros {__version__}",
    }


def generation_of(dataset: Any) -> dict[str, Any] | None:
    """The parameters a generated data set's frames come from (count, size, seed, shift); None for data on disk."""
    generation = getattr(dataset, "generation", None)
    return dict(generation) if generation is not None else None


def _check_bag_options(corruption: str, severity: int, channel_order: str, storage: str, limit: int | None) -> None:
    """Refuse a bad corruption, channel order, storage or limit before anything is written."""
    check_corruption(corruption, severity)
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {', '.join(CHANNEL_ORDERS)}, got {channel_order!r}")
    if storage not in STORAGES:
        raise ValueError(f"unknown bag storage '{storage}'; choose one of: {', '.join(STORAGES)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")


def _write_frames(writer: BagWriter, dataset: SegmentationDataset, corruption: str, count: int, *, severity: int,
                  channel_order: str, presize: bool, progress: bool) -> None:  # fmt: skip
    """The first ``count`` images, corrupted and (if ``presize``) resized, with their labels."""
    from tqdm import tqdm

    desc = f"{dataset.name}/{corruption}"
    for i in tqdm(range(count), desc=desc, unit="img", disable=not progress):
        sample = dataset[i]
        check_labels(dataset, i, sample.image, sample.labels, warn=lambda m: tqdm.write(m, file=sys.stderr))
        image = corrupt_image(sample.image, corruption, severity, seed=sample.index, channel_order=channel_order)
        height, width = image.shape[:2]
        size = target_size(height, width, dataset.protocol_resize) if presize else (height, width)
        writer.write(resize_image(image, size), resize_labels(sample.labels, size))


def make_bag(
    dataset: SegmentationDataset,
    corruption: str,
    out_path: str | os.PathLike[str],
    *,
    storage: str = DEFAULT_STORAGE,
    severity: int = SEVERITY,
    channel_order: str = CHANNEL_ORDERS[0],
    presize: bool = True,
    limit: int | None = None,
    progress: bool = True,
    rate_hz: float = DEFAULT_RATE_HZ,
) -> Path:
    """Write ``dataset`` under ``corruption`` as a bag folder at ``out_path``; returns it.

    ``presize=False`` keeps the original sizes (the consumer then resizes with the
    protocol in the bag's description).  ``limit`` writes only the first images.
    """
    _check_bag_options(corruption, severity, channel_order, storage, limit)
    out = Path(out_path)
    if out.exists():
        raise BagError(f"{out} already exists; remove it or choose another output path")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BagError(f"cannot create the bags folder {out.parent}: {err}") from err
    count = len(dataset) if limit is None else min(limit, len(dataset))
    info = dataset_info(
        dataset, corruption, severity=severity, channel_order=channel_order, presize=presize, count=count,
        storage=storage, limit=limit,
    )  # fmt: skip

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        partial = staging / out.name  # rosbags names the storage file after the folder
        with BagWriter(partial, info, storage=storage, rate_hz=rate_hz) as writer:
            _write_frames(writer, dataset, corruption, count, severity=severity, channel_order=channel_order,
                          presize=presize, progress=progress)  # fmt: skip
        try:
            partial.rename(out)
        except OSError as err:
            raise BagError(f"cannot move the finished bag to {out}: {err}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def check_labels(dataset: SegmentationDataset, index: int, image, labels, *, warn=None) -> int:
    """Refuse a label map whose size differs from its image; warn about class ids out of range.

    Returns the number of pixels whose id is neither a class (0..C-1) nor the ignore
    label; they are written as they are and never scored (the metrics count them).
    """
    if labels.shape[:2] != image.shape[:2]:
        image_path, label_path = dataset.paths(index)
        (lh, lw), (ih, iw) = labels.shape[:2], image.shape[:2]
        raise DatasetError(
            f"label map {label_path} is {lw}x{lh} but its image {image_path} is {iw}x{ih}; a label map must have "
            "its image's size (stretching it would score the wrong pixels): fix or remove the pair"
        )
    bad = (labels >= dataset.num_classes) & (labels != dataset.ignore_index)
    count = int(bad.sum())
    if count and warn is not None:
        ids = sorted({int(v) for v in labels[bad].ravel()[:100000]})
        shown = ", ".join(map(str, ids[:8])) + (" …" if len(ids) > 8 else "")
        _, label_path = dataset.paths(index)
        warn(
            f"warning: label map {label_path} has {count} pixels with ids {shown} outside 0..{dataset.num_classes - 1} "
            f"(ignore {dataset.ignore_index}); they are not scored"
        )
    return count


_UNSET = object()


def check_bag_matches(
    path: Path,
    dataset: str,
    corruption: str,
    severity: int,
    channel_order: str,
    *,
    presize: bool | None = None,
    storage: str | None = None,
    limit: int | object | None = _UNSET,
    generation: dict[str, Any] | None = None,
    advice: str = "remove it (it is rebuilt from the data set) or choose another bags folder",
) -> None:
    """Refuse to reuse a bag written for another data set, corruption setting, size, storage, frame count or
    generation (a generated data set's count, frame size, seed and stream shift).

    ``presize``, ``storage``, ``limit`` and ``generation`` are compared when given (``limit=None``
    asks for the whole split).  A bag written before these were recorded is refused too, as is
    one whose corruptions were drawn otherwise than the reference draws them.
    """
    info = open_bag(path).info
    wanted: dict[str, Any] = {"dataset": dataset, "corruption": corruption}
    if corruption != ORIGINAL:
        wanted.update(severity=severity, channel_order=channel_order, corruption_draws=DRAWS)
    if presize is not None:
        wanted["presized"] = presize
    if storage is not None:
        wanted["storage"] = storage
    if limit is not _UNSET:
        split = info.get("split_size")
        wanted["limit"] = None if limit is not None and isinstance(split, int) and limit >= split else limit
    wrong = _differences(info, wanted)
    if generation is not None:
        recorded = info.get("generation")
        if not isinstance(recorded, dict):
            wrong.append(f"no recorded generation parameters (wanted {', '.join(f'{k} {v!r}' for k, v in generation.items())})")
        else:
            wrong += _differences(recorded, generation)
    if wrong:
        raise BagError(f"bag {path} does not match what is asked: {', '.join(wrong)}; {advice}")


def _differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'name recorded (wanted value)' for every wanted value the recorded description lacks or differs in."""
    return [
        f"{k} {recorded[k]!r} (wanted {v!r})" if k in recorded else f"no recorded {k} (wanted {v!r})"
        for k, v in wanted.items()
        if k not in recorded or recorded[k] != v
    ]


def keep_or_make_bag(
    out_path: str | os.PathLike[str],
    dataset_name: str,
    open_dataset: Callable[[], SegmentationDataset],
    corruption: str,
    *,
    storage: str,
    severity: int,
    channel_order: str,
    presize: bool,
    limit: int | None,
    progress: bool,
    generation: dict[str, Any] | None = None,
    force: bool = False,
    advice: str | None = None,
) -> bool:
    """The bag at ``out_path``: kept when there (it must match these settings and, for a generated data
    set, its ``generation`` parameters: :func:`check_bag_matches`), else written from ``open_dataset()``
    (called only then); True when written.  ``force`` rewrites an existing bag whatever it holds."""
    out = Path(out_path)
    if out.exists() and not force:
        check_bag_matches(out, dataset_name, corruption, severity, channel_order, presize=presize, storage=storage,
                          limit=limit, generation=generation,
                          **({"advice": advice} if advice else {}))  # fmt: skip
        return False
    options = {"storage": storage, "severity": severity, "channel_order": channel_order, "presize": presize,
               "limit": limit, "progress": progress}  # fmt: skip
    if not out.exists():
        make_bag(open_dataset(), corruption, out, **options)
        return True
    fresh = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:  # the new bag is complete before the old one goes
        make_bag(open_dataset(), corruption, fresh / out.name, **options)
        old = fresh / ".old"
        out.rename(old)
        (fresh / out.name).rename(out)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return True
