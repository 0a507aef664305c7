"""SegmentationMetrics against torchmetrics and a per-class brute-force loop."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from mlmp_ros.bench.scoring.metrics import SegmentationMetrics

NUM_CLASSES = 7
ABSENT = 6  # never in labels nor predictions
PRED_ONLY = 5  # predicted, never labelled


def random_split(seed: int = 0, images: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """Label maps of several sizes with ignore pixels, an absent class and a predicted-only class."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(images):
        shape = (20 + 7 * i, 31 - 2 * i)
        label = rng.integers(0, PRED_ONLY, shape).astype(np.uint8)
        label[rng.random(shape) < 0.15] = 255
        pred = label.copy()
        flip = rng.random(shape) < 0.4
        pred[flip] = rng.integers(0, ABSENT, int(flip.sum()))
        pred[label == 255] = rng.integers(0, ABSENT, int((label == 255).sum()))
        pairs.append((pred, label))
    return pairs


def brute_force(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int) -> dict[str, list[float]]:
    """Per-class areas by looping over classes and pixels, the textbook way."""
    inter = [0] * num_classes
    union = [0] * num_classes
    pred_area = [0] * num_classes
    label_area = [0] * num_classes
    for pred, label in pairs:
        for p, t in zip(pred.ravel().tolist(), label.ravel().tolist()):
            if t == 255:
                continue
            for c in range(num_classes):
                inter[c] += p == c and t == c
                union[c] += p == c or t == c
                pred_area[c] += p == c
                label_area[c] += t == c
    return {"I": inter, "U": union, "P": pred_area, "L": label_area}


def mean_defined(values: list[float | None]) -> float:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined)


def test_agrees_with_torchmetrics_and_brute_force() -> None:
    pairs = random_split()
    metrics = SegmentationMetrics(NUM_CLASSES)
    reference = MulticlassJaccardIndex(NUM_CLASSES, ignore_index=255, average=None)
    for pred, label in pairs:
        metrics.update(pred, label)
        reference.update(torch.from_numpy(pred).long(), torch.from_numpy(label).long())
    result = metrics.compute()
    areas = brute_force(pairs, NUM_CLASSES)

    np.testing.assert_array_equal(metrics.intersection, areas["I"])
    np.testing.assert_array_equal(metrics.union, areas["U"])
    assert areas["U"][ABSENT] == 0 and areas["L"][PRED_ONLY] == 0 and areas["U"][PRED_ONLY] > 0

    tm_iou = reference.compute().numpy()
    defined = [c for c in range(NUM_CLASSES) if areas["U"][c] > 0]
    ours = np.array([result["IoU"][c] for c in defined]) / 100
    np.testing.assert_allclose(ours, tm_iou[defined], rtol=1e-6)
    assert result["IoU"][ABSENT] is None

    iou = [areas["I"][c] / areas["U"][c] for c in defined]
    acc = [areas["I"][c] / areas["L"][c] for c in range(NUM_CLASSES) if areas["L"][c] > 0]
    dice = [2 * areas["I"][c] / (areas["P"][c] + areas["L"][c]) for c in defined]
    assert result["raw"]["mIoU"] == pytest.approx(100 * sum(iou) / len(iou))
    assert result["raw"]["mAcc"] == pytest.approx(100 * sum(acc) / len(acc))
    assert result["raw"]["mDice"] == pytest.approx(100 * sum(dice) / len(dice))
    assert result["raw"]["aAcc"] == pytest.approx(100 * sum(areas["I"]) / sum(areas["L"]))
    assert result["mIoU"] == round(100 * sum(iou) / len(iou), 2)
    assert result["mAcc"] == pytest.approx(mean_defined(result["Acc"]), abs=0.005)
    assert result["Acc"][PRED_ONLY] is None and result["IoU"][PRED_ONLY] == 0.0
    assert result["valid_classes"] == len(defined) == NUM_CLASSES - 1


def test_absent_class_is_excluded_not_zero() -> None:
    metrics = SegmentationMetrics(3)
    metrics.update(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
    result = metrics.compute()
    # IoU0 = 1/2, IoU1 = 2/3, class 2 undefined: mean of two classes, not three.
    assert result["mIoU"] == 58.33
    assert result["IoU"][2] is None
    assert result["mDice"] == round(100 * (2 / 3 + 4 / 5) / 2, 2)
    assert result["aAcc"] == 75.0


def test_inputs_torch_and_integer_dtypes() -> None:
    pred, label = random_split(1, images=1)[0]
    baseline = SegmentationMetrics(NUM_CLASSES)
    baseline.update(pred, label)
    for p, t in [
        (torch.from_numpy(pred).long(), torch.from_numpy(label)),
        (pred.astype(np.int32), label.astype(np.uint16)),
        (pred[None], label[None]),  # a batch dimension
    ]:
        other = SegmentationMetrics(NUM_CLASSES)
        other.update(p, t)
        np.testing.assert_array_equal(other.union, baseline.union)
        np.testing.assert_array_equal(other.intersection, baseline.intersection)


def test_bad_inputs_are_refused() -> None:
    metrics = SegmentationMetrics(4)
    with pytest.raises(ValueError, match="differs from label shape"):
        metrics.update(np.zeros((4, 5), np.int64), np.zeros((5, 4), np.uint8))
    with pytest.raises(TypeError, match="argmax"):
        metrics.update(np.zeros((4, 5), np.float32), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError):
        SegmentationMetrics(0)


def test_out_of_range_labels_counted_not_scored() -> None:
    metrics = SegmentationMetrics(2)
    metrics.update(np.array([0, 1, 1, 0]), np.array([0, 1, 9, 255]))
    result = metrics.compute()
    assert result["out_of_range_pixels"] == 1
    assert result["pixels"] == 2
    assert metrics.pred_area.tolist() == [1, 2]  # as mmseg's histc: the pixel labelled 9 still adds its prediction


def test_merge_and_state_resume() -> None:
    pairs = random_split(2, images=6)
    whole = SegmentationMetrics(NUM_CLASSES)
    first, second = SegmentationMetrics(NUM_CLASSES), SegmentationMetrics(NUM_CLASSES)
    for i, (pred, label) in enumerate(pairs):
        whole.update(pred, label)
        (first if i < 3 else second).update(pred, label)
    resumed = SegmentationMetrics.from_state(json.loads(json.dumps(first.state())))
    resumed.merge(second)
    assert resumed.state() == whole.state()
    assert resumed.compute()["raw"] == whole.compute()["raw"]
    with pytest.raises(ValueError, match="cannot merge"):
        whole.merge(SegmentationMetrics(NUM_CLASSES + 1))


def test_empty_is_nan() -> None:
    result = SegmentationMetrics(3).compute()
    assert math.isnan(result["mIoU"]) and result["IoU"] == [None, None, None]
