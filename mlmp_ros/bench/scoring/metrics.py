"""Segmentation scores with MMSegmentation's definitions (``IoUMetric``).

Per-class intersection, union, predicted area and label area are summed over the
whole split before any division, so large images weigh more than small ones, exactly
as the paper's numbers do.  Pixels labelled ``ignore_index`` are dropped.  As in mmseg's
``torch.histc``, labels outside ``0..num_classes-1`` add nothing to the label area and
predictions outside it add nothing to the predicted area; such labels are counted in
``out_of_range_pixels`` so a wrong label mapping shows up instead of hiding.

IoU = I / U, Acc = I / label area, Dice = 2I / (predicted + label area).  A class whose
denominator is zero is undefined (NaN) and left out of the mean, never counted as 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_AREAS = ("intersection", "union", "pred_area", "label_area")


def _as_numpy(values: Any, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype.kind not in "uib":
        raise TypeError(
            f"{what} must hold integer class indices, got dtype {array.dtype} "
            "(take the argmax over classes of the logits first)"
        )
    return array


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


class SegmentationMetrics:
    """Accumulates per-class areas over a split; ``compute`` gives mIoU, mAcc, mDice, aAcc.

    ``state()`` and ``from_state`` let an interrupted run resume, and ``merge`` adds
    the areas of another accumulator (e.g. one per worker).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_names = list(class_names) if class_names is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.intersection = np.zeros(self.num_classes, dtype=np.int64)
        self.union = np.zeros(self.num_classes, dtype=np.int64)
        self.pred_area = np.zeros(self.num_classes, dtype=np.int64)
        self.label_area = np.zeros(self.num_classes, dtype=np.int64)
        self.out_of_range_pixels = 0
        self.images = 0

    def update(self, pred: Any, label: Any) -> None:
        """Add one prediction and its ground truth (numpy arrays or torch tensors, same shape).

        A leading batch dimension is fine: every pixel counts the same.
        """
        pred_arr = _as_numpy(pred, "pred")
        label_arr = _as_numpy(label, "label")
        if pred_arr.shape != label_arr.shape:
            raise ValueError(
                f"prediction shape {pred_arr.shape} differs from label shape {label_arr.shape}; "
                "resize the prediction (or the labels, nearest neighbour) to the scoring resolution first"
            )
        n = self.num_classes
        label_flat = label_arr.reshape(-1)
        pred_flat = pred_arr.reshape(-1)
        keep = label_flat != self.ignore_index
        label_flat = label_flat[keep].astype(np.int64, copy=False)
        pred_flat = pred_flat[keep].astype(np.int64, copy=False)

        label_ok = (label_flat >= 0) & (label_flat < n)
        pred_ok = (pred_flat >= 0) & (pred_flat < n)
        label_area = np.bincount(label_flat[label_ok], minlength=n)
        pred_area = np.bincount(pred_flat[pred_ok], minlength=n)
        intersection = np.bincount(label_flat[label_ok & (pred_flat == label_flat)], minlength=n)

        self.intersection += intersection
        self.label_area += label_area
        self.pred_area += pred_area
        self.union += label_area + pred_area - intersection
        self.out_of_range_pixels += int(label_flat.size - label_ok.sum())
        self.images += 1

    def merge(self, other: SegmentationMetrics) -> SegmentationMetrics:
        """Add the areas of ``other`` (same classes and ignore label) to this one; returns self."""
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError(
                f"cannot merge metrics of {other.num_classes} classes / ignore {other.ignore_index} "
                f"into {self.num_classes} classes / ignore {self.ignore_index}"
            )
        for key in _AREAS:
            getattr(self, key).__iadd__(getattr(other, key))
        self.out_of_range_pixels += other.out_of_range_pixels
        self.images += other.images
        return self

    def state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot of the accumulated areas."""
        snapshot: dict[str, Any] = {key: getattr(self, key).tolist() for key in _AREAS}
        snapshot.update(
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            out_of_range_pixels=self.out_of_range_pixels,
            images=self.images,
        )
        if self.class_names is not None:
            snapshot["class_names"] = list(self.class_names)
        return snapshot

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SegmentationMetrics:
        """Rebuild an accumulator from :meth:`state` (to resume an interrupted run)."""
        try:
            metrics = cls(int(state["num_classes"]), int(state["ignore_index"]), state.get("class_names"))
            for key in _AREAS:
                values = np.asarray(state[key], dtype=np.int64)
                if values.shape != (metrics.num_classes,):
                    raise ValueError(f"'{key}' has {values.size} entries for {metrics.num_classes} classes")
                setattr(metrics, key, values.copy())
            metrics.out_of_range_pixels = int(state.get("out_of_range_pixels", 0))
            metrics.images = int(state.get("images", 0))
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a SegmentationMetrics state: missing or bad field {err}") from err
        return metrics

    def compute(self) -> dict[str, Any]:
        """Scores in percent.

        ``mIoU``, ``mAcc``, ``mDice``, ``aAcc`` are rounded to 2 decimals as in the paper
        (NaN if no class is defined yet); ``raw`` holds them unrounded; ``IoU``, ``Acc``,
        ``Dice`` are per-class lists (unrounded, None where undefined).
        """
        inter = self.intersection.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(self.union > 0, inter / self.union, np.nan)
            acc = np.where(self.label_area > 0, inter / self.label_area, np.nan)
            dice_den = self.pred_area + self.label_area
            dice = np.where(dice_den > 0, 2 * inter / dice_den, np.nan)
        total = int(self.label_area.sum())
        raw = {
            # mmseg: np.round(np.nanmean(fraction) * 100, 2)
            "mIoU": _nanmean(iou) * 100,
            "mAcc": _nanmean(acc) * 100,
            "mDice": _nanmean(dice) * 100,
            "aAcc": float(inter.sum() / total) * 100 if total else math.nan,
        }

        def per_class(values: np.ndarray) -> list[float | None]:
            return [None if math.isnan(v) else float(v) * 100 for v in values]

        # np.round (not round()) so ties break exactly as in mmseg's summary.
        result: dict[str, Any] = {key: float(np.round(value, 2)) for key, value in raw.items()}
        result.update(
            raw=raw,
            IoU=per_class(iou),
            Acc=per_class(acc),
            Dice=per_class(dice),
            valid_classes=int((self.union > 0).sum()),
            pixels=total,
            out_of_range_pixels=self.out_of_range_pixels,
            images=self.images,
        )
        if self.class_names is not None:
            result["class_names"] = list(self.class_names)
        return result
