"""Bootstrap intervals (scipy.stats.bootstrap) for scores and paired differences."""

import math

import numpy as np
import pytest

from mlmp_ros.bench.scoring.intervals import (
    mean_interval,
    paired_mean_difference,
    paired_pooled_difference,
    pooled_miou,
    pooled_miou_interval,
)
from mlmp_ros.bench.scoring.metrics import SegmentationMetrics


def test_mean_interval_brackets_the_mean_and_narrows_with_more_units():
    rng = np.random.default_rng(1)
    few, many = rng.normal(50, 5, 8), rng.normal(50, 5, 128)
    a, b = mean_interval(few), mean_interval(many)
    assert a.low < a.value < a.high and b.low < b.value < b.high
    assert a.value == pytest.approx(few.mean())
    assert (b.high - b.low) < (a.high - a.low)


def test_paired_difference_words_only_what_the_interval_allows():
    rng = np.random.default_rng(2)
    base = rng.normal(50, 10, 48)  # large spread between units ...
    better = base + 1.0 + rng.normal(0, 0.3, 48)  # ... but a consistent paired gain
    gain = paired_mean_difference(better, base)
    assert gain.excludes_zero() and gain.verdict() == "gains" and gain.low > 0
    assert paired_mean_difference(base, better).verdict() == "loses"
    noise = base + rng.normal(0, 3, 48)
    same = paired_mean_difference(noise - noise.mean() + base.mean(), base)
    assert not same.excludes_zero() and same.verdict() == "no measurable difference"
    assert "[" in gain.text(signed=True) and gain.text(signed=True).startswith("+")


def test_pooled_miou_matches_the_benchmark_metric():
    rng = np.random.default_rng(3)
    metrics, inter, union = SegmentationMetrics(4), [], []
    for _ in range(6):
        label, pred = rng.integers(0, 4, (16, 16)), rng.integers(0, 4, (16, 16))
        one = SegmentationMetrics(4)
        one.update(pred, label)
        metrics.update(pred, label)
        inter.append(one.intersection.copy())
        union.append(one.union.copy())
    assert pooled_miou(np.array(inter), np.array(union)) == pytest.approx(metrics.compute()["raw"]["mIoU"])
    interval = pooled_miou_interval(np.array(inter), np.array(union))
    assert interval.low <= interval.value <= interval.high


def test_paired_pooled_difference_of_identical_sides_is_zero():
    rng = np.random.default_rng(4)
    inter = rng.integers(0, 50, (10, 3)).astype(float)
    union = inter + rng.integers(1, 50, (10, 3))
    d = paired_pooled_difference((inter, union), (inter, union))
    assert d.value == 0 and d.low == 0 and d.high == 0 and d.verdict() == "no measurable difference"


def test_one_unit_has_no_interval():
    one = mean_interval([3.0])
    assert one.value == 3.0 and math.isnan(one.low) and one.text() == "3.0 [n/a]"
    with pytest.raises(ValueError, match="same shape"):
        paired_mean_difference([1.0, 2.0], [1.0])
