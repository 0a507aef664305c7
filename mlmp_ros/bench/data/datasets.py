"""Readers for the benchmark's data sets in their MMSegmentation on-disk layouts.

The paper's numbers come from MMSegmentation's data lists, so these readers rebuild the
same lists without depending on it: the order of the split file for VOC and Pascal
Context, and the image paths sorted (recursive listing, hidden files skipped) for the
others.  A sample's position in that list is its ``index``; the corruptions are seeded
with it, so the order must never change.

Images are decoded as mmcv does (``cv2.imread`` in colour, BGR) and returned RGB;
label maps are decoded with Pillow (palette PNGs give their indices), as mmseg's
``LoadAnnotations`` does, then mapped to train ids with the data set's rule
(``reduce_zero_label`` for VOC20 and Context59, Cityscapes ids -> train ids for GTA-V).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ...core.config import ConfigError
from ...resources import config_path
from .entry import DataSet, DatasetError

IGNORE_INDEX = 255
WINDOW = 224
STRIDE = 112
SPLIT = "val"

ACDC_CONDITIONS = ("fog", "night", "rain", "snow")

# Cityscapes label ids -> the 19 train ids (GTA-V ships label ids, not train ids).
CITYSCAPES_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


@dataclass(frozen=True)
class _FolderLayout:
    """Where a data set keeps its validation images and labels, and how labels map."""

    class_key: str
    image_dir: str
    label_dir: str
    image_suffix: str
    label_suffix: str
    protocol_resize: tuple[int, int]
    root_hint: str
    split_file: str | None = None
    label_rule: str = "identity"  # identity | reduce_zero_label | cityscapes_ids
    nested: str = ""  # the sub-folder level between image_dir and the files, for messages


_SMALL = (224, 224)
_CITY = (1120, 560)

_LAYOUTS: dict[str, _FolderLayout] = {
    "voc20": _FolderLayout(
        "voc20", "JPEGImages", "SegmentationClass", ".jpg", ".png", _SMALL,
        "VOCdevkit/VOC2012", "ImageSets/Segmentation/val.txt", "reduce_zero_label",
    ),
    "voc21": _FolderLayout(
        "voc21", "JPEGImages", "SegmentationClass", ".jpg", ".png", _SMALL,
        "VOCdevkit/VOC2012", "ImageSets/Segmentation/val.txt",
    ),
    "context59": _FolderLayout(
        "context59", "JPEGImages", "SegmentationClassContext", ".jpg", ".png", _SMALL,
        "VOCdevkit/VOC2010", "ImageSets/SegmentationContext/val.txt", "reduce_zero_label",
    ),
    "context60": _FolderLayout(
        "context60", "JPEGImages", "SegmentationClassContext", ".jpg", ".png", _SMALL,
        "VOCdevkit/VOC2010", "ImageSets/SegmentationContext/val.txt",
    ),
    "coco_object": _FolderLayout(
        "coco_object", "images/val2017", "annotations/val2017", ".jpg", "_instanceTrainIds.png",
        _SMALL, "coco_stuff164k",
    ),
    "coco_stuff": _FolderLayout(
        "coco_stuff", "images/val2017", "annotations/val2017", ".jpg", "_labelTrainIds.png",
        _SMALL, "coco_stuff164k",
    ),
    "cityscapes": _FolderLayout(
        "cityscapes", "leftImg8bit/val", "gtFine/val", "_leftImg8bit.png", "_gtFine_labelTrainIds.png",
        _CITY, "cityscapes", nested="<city>/",
    ),
    "acdc": _FolderLayout(
        "cityscapes", "rgb_anon/{condition}/val", "gt/{condition}/val", "_rgb_anon.png",
        "_gt_labelTrainIds.png", _CITY, "acdc", nested="<sequence>/",
    ),
    "gta5": _FolderLayout(
        "cityscapes", "images", "labels", ".png", ".png", _CITY, "gta5", None, "cityscapes_ids",
    ),
}  # fmt: skip

DATASETS: tuple[str, ...] = tuple(_LAYOUTS)
"""Data set names; ``acdc`` also takes a condition (or is named ``acdc_fog`` etc.)."""


@dataclass(frozen=True)
class Sample:
    """One validation image and its ground truth (train ids, 255 = ignore)."""

    index: int
    id: str
    image: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class _Pair:
    id: str
    image_path: Path
    label_path: Path


def _label_lut(rule: str) -> np.ndarray | None:
    """A uint8 -> uint8 lookup table for the label rule (None for identity)."""
    if rule == "identity":
        return None
    if rule == "reduce_zero_label":
        # mmseg: 0 -> 255, then -1 on uint8 (so 255 -> 254), then 254 -> 255.
        lut = np.arange(256, dtype=np.int64)
        lut[0] = 255
        lut = (lut - 1) % 256
        lut[lut == 254] = 255
        return lut.astype(np.uint8)
    if rule == "cityscapes_ids":
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
            lut[label_id] = train_id
        return lut
    raise ValueError(f"unknown label rule {rule!r}")


def _layout_text(layout: _FolderLayout, condition: str | None) -> str:
    image_dir = layout.image_dir.format(condition=condition or "<condition>")
    label_dir = layout.label_dir.format(condition=condition or "<condition>")
    stem = f"{layout.nested}<name>" if layout.nested else "<id>"
    parts = [f"{image_dir}/{stem}{layout.image_suffix}", f"{label_dir}/{stem}{layout.label_suffix}"]
    if layout.split_file:
        parts.append(f"{layout.split_file} (one id per line)")
    return f"the root (usually .../{layout.root_hint}) must hold " + ", ".join(parts)


def _suggest_root(root: Path, marker: str) -> str:
    """A hint when the data set sits one or two folders below the given root."""
    if not root.is_dir():
        return ""
    for pattern in ("*", "*/*"):
        for cand in sorted(root.glob(pattern)):
            if (cand / marker).is_dir():
                return f"; did you mean root={cand}?"
    return ""


def _list_files(folder: Path, suffix: str) -> list[str]:
    """Relative posix paths of the files under ``folder`` ending in ``suffix``, sorted.

    Mirrors mmengine's recursive ``list_dir_or_file`` (names starting with '.' are
    skipped) followed by mmseg's sort on the image path.
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(folder)
        for name in filenames:
            if name.startswith(".") or not name.endswith(suffix):
                continue
            found.append((rel_dir / name).as_posix())
    return sorted(found)


def _read_split(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class SegmentationDataset:
    """A validation split as a list of samples, in MMSegmentation's order.

    ``class_names``, ``num_classes`` and the protocol settings (``protocol_resize`` as
    [W, H] for landscape images, ``window``, ``stride``) travel with the data so a bag
    or a report can describe itself.
    """

    ignore_index: int = IGNORE_INDEX
    window: int = WINDOW
    stride: int = STRIDE
    split: str = SPLIT

    def __init__(self, key: str, root: Path, condition: str | None, entries: Sequence[_Pair]) -> None:
        layout = _LAYOUTS[key]
        self.base_name = key
        self.condition = condition
        self.name = f"{key}_{condition}" if condition else key
        self.root = root
        self.class_key = layout.class_key
        self.protocol_resize = list(layout.protocol_resize)
        self._entries = list(entries)
        self._lut = _label_lut(layout.label_rule)
        from ...core.text import ClassList  # loads torch: only when a data set is opened

        try:
            classes = ClassList.from_file(config_path("class_names", f"{layout.class_key}.names.txt"))
        except (OSError, ConfigError) as err:
            raise DatasetError(f"cannot read the class list '{layout.class_key}': {err}") from err
        self.class_names = list(classes.names)
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"SegmentationDataset(name={self.name!r}, root={str(self.root)!r}, images={len(self)})"

    @property
    def ids(self) -> list[str]:
        """Image ids in data-list order (the position is the sample's index)."""
        return [e.id for e in self._entries]

    def paths(self, index: int) -> tuple[Path, Path]:
        """(image path, label path) of the sample at ``index``."""
        entry = self._entries[index]
        return entry.image_path, entry.label_path

    def __getitem__(self, index: int) -> Sample:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"data set indices are integers, not {type(index).__name__}")
        n = len(self._entries)
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for {self.name} ({n} images)")
        index = int(index) % n
        entry = self._entries[index]
        return Sample(index, entry.id, self._read_image(entry.image_path), self._read_labels(entry.label_path))

    @staticmethod
    def _read_image(path: Path) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot decode image {path}: the file is missing, empty or not an image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _read_labels(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as im:
                labels = np.array(im)
        except (OSError, ValueError) as err:
            raise DatasetError(f"cannot decode label map {path}: {err}") from err
        if labels.ndim == 3 and labels.shape[2] == 1:
            labels = labels[..., 0]
        if labels.ndim != 2:
            raise DatasetError(
                f"label map {path} has shape {labels.shape}; expected a single-channel PNG of class ids "
                "(a colour-coded label image must be converted to ids first)"
            )
        if labels.dtype.kind not in "uib":
            raise DatasetError(f"label map {path} holds {labels.dtype} values; expected integer class ids")
        if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max):
            raise DatasetError(f"label map {path} holds ids outside 0..65535")
        wide = labels.size > 0 and labels.max() > 255
        labels = labels.astype(np.uint16 if wide else np.uint8)
        if self._lut is not None:
            if wide:
                # No data set of the suite has ids above 255; map them to ignore.
                narrow = np.where(labels > 255, 255, labels).astype(np.uint8)
                labels = self._lut[narrow]
            else:
                labels = self._lut[labels]
        return labels


def _check_folders(
    key: str, layout: _FolderLayout, root: Path, condition: str | None, expected: str
) -> tuple[Path, Path]:
    """(image folder, label folder) of the split, refusing a root without them."""
    image_dir = root / layout.image_dir.format(condition=condition)
    label_dir = root / layout.label_dir.format(condition=condition)
    if not root.is_dir():
        raise DatasetError(f"{key}: data set root {root} is not a folder; {expected}")
    if not image_dir.is_dir():
        hint = _suggest_root(root, layout.image_dir.format(condition=condition))
        raise DatasetError(f"{key}: no image folder {image_dir}; {expected}{hint}")
    if not label_dir.is_dir():
        raise DatasetError(f"{key}: no label folder {label_dir}; {expected}")
    return image_dir, label_dir


def _split_entries(key: str, layout: _FolderLayout, root: Path, image_dir: Path, label_dir: Path,
                   expected: str) -> tuple[list[_Pair], str]:  # fmt: skip
    """The split's (image, label) entries, from its split file or by listing the images; and where they came from."""
    entries: list[_Pair] = []
    if layout.split_file:
        split_path = root / layout.split_file
        if not split_path.is_file():
            raise DatasetError(f"{key}: split file {split_path} is missing; {expected}")
        for image_id in _read_split(split_path):
            entries.append(
                _Pair(
                    image_id,
                    image_dir / f"{image_id}{layout.image_suffix}",
                    label_dir / f"{image_id}{layout.label_suffix}",
                )
            )
        return entries, f"split file {split_path}"
    for rel in _list_files(image_dir, layout.image_suffix):
        image_id = rel[: -len(layout.image_suffix)]
        entries.append(_Pair(image_id, image_dir / rel, label_dir / f"{image_id}{layout.label_suffix}"))
    return entries, f"{image_dir} (no *{layout.image_suffix} files)"


def _check_entries(key: str, entries: list[_Pair], source: str, expected: str) -> None:
    """Refuse an empty split or one with image or label files missing."""
    if not entries:
        raise DatasetError(f"{key}: the validation split is empty: {source}; {expected}")
    missing_images = [e.image_path for e in entries if not e.image_path.is_file()]
    if missing_images:
        raise DatasetError(
            f"{key}: {len(missing_images)} of {len(entries)} images are missing, e.g. {missing_images[0]}; {expected}"
        )
    missing_labels = [e.label_path for e in entries if not e.label_path.is_file()]
    if missing_labels:
        raise DatasetError(
            f"{key}: {len(missing_labels)} of {len(entries)} label files are missing, e.g. {missing_labels[0]}; "
            f"{expected}"
        )


def open_layout(key: str, root: Path, condition: str | None = None) -> SegmentationDataset:
    """Open the validation split of data set ``key`` (a registered name, resolved) stored under ``root``.

    Every image and label file of the split is checked to exist here, so a broken
    layout fails now rather than hours into a bag or a run.
    """
    layout = _LAYOUTS[key]
    root = Path(root).expanduser()
    expected = _layout_text(layout, condition)
    image_dir, label_dir = _check_folders(key, layout, root, condition, expected)
    entries, source = _split_entries(key, layout, root, image_dir, label_dir, expected)
    _check_entries(key, entries, source, expected)
    return SegmentationDataset(key, root, condition, entries)


_HELP = {"acdc": "acdc_fog|night|rain|snow (or acdc with --condition)"}
ENTRIES = tuple(
    DataSet(key, open_layout, _HELP.get(key, key), conditions=ACDC_CONDITIONS if key == "acdc" else ())
    for key in _LAYOUTS
)
