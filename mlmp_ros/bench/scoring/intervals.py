"""95% bootstrap confidence intervals for scores and for paired differences of scores.

Resampling is done by :func:`scipy.stats.bootstrap` (BCa by default) over *units*: the
scenes of a data set, or the frames of a stream.  A statistic is a function of the
resampled unit indices, so a pooled score (mIoU from summed per-class areas, as the paper
computes it) is resampled as a whole and not as a mean of per-unit scores.

A paired difference resamples the same units for both sides (method on scene ``i`` against
NoAdapt on scene ``i``); :meth:`Interval.verdict` words it as the interval allows: "gains"
or "loses" only when the interval excludes zero, else "no measurable difference".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 9999
SEED = 0  # fixed: a report regenerated from the same records gives the same intervals


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval over ``n`` units."""

    value: float
    low: float
    high: float
    n: int
    level: float = LEVEL

    def excludes_zero(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high)) and (self.low > 0 or self.high < 0)

    def verdict(self, up: str = "gains", down: str = "loses") -> str:
        """For a difference: ``up`` / ``down`` when the interval excludes zero, else no measurable difference."""
        if not self.excludes_zero():
            return "no measurable difference"
        return up if self.low > 0 else down

    def text(self, digits: int = 1, signed: bool = False) -> str:
        """``52.1 [50.3, 53.8]`` (``signed``: ``+1.5 [-0.3, +4.0]``)."""
        fmt = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
        if math.isnan(self.low):
            return fmt.format(self.value) + " [n/a]"
        return f"{fmt.format(self.value)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"

    def as_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n, "level": self.level}


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, *, level: float = LEVEL,
              resamples: int = RESAMPLES, seed: int = SEED, method: str = "BCa",
              vectorized: bool = False, batch: int | None = None) -> Interval:
    """``statistic(indices)`` over ``n`` units, with its bootstrap interval (resampling the units).

    ``vectorized``: ``statistic`` takes index arrays of shape ``(..., n)`` and returns ``(...)``, one
    value per resample (far faster); ``batch`` resamples are handed to it at a time."""
    from scipy import stats  # late: scipy is a bench dependency, and slow to import

    value = float(statistic(np.arange(n)))
    if n < 2:
        return Interval(value, math.nan, math.nan, n, level)
    if vectorized:
        def call(idx, axis=-1):
            return statistic(np.asarray(idx, dtype=int))
    else:
        def call(idx):
            return statistic(np.asarray(idx, dtype=int))
    result = stats.bootstrap((np.arange(n),), call, vectorized=vectorized, batch=batch if vectorized else None,
                             paired=False, confidence_level=level,
                             n_resamples=resamples, method=method, random_state=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):  # every resample gave the same value (BCa is undefined then)
        spread = result.bootstrap_distribution
        low, high = float(np.min(spread)), float(np.max(spread))
    return Interval(value, low, high, n, level)


def mean_interval(values: Sequence[float], **kwargs) -> Interval:
    """The mean of per-unit values (e.g. per-frame mIoU of a stream)."""
    x = np.asarray(values, dtype=np.float64)
    return bootstrap(lambda idx: float(x[idx].mean()), len(x), **kwargs)


def paired_mean_difference(a: Sequence[float], b: Sequence[float], **kwargs) -> Interval:
    """Mean of ``a - b`` over paired units (``a[i]`` and ``b[i]`` measured on the same unit)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired values must have the same shape, got {x.shape} and {y.shape}")
    d = x - y
    return bootstrap(lambda idx: float(d[idx].mean()), len(d), **kwargs)


def pooled_miou(intersection: np.ndarray, union: np.ndarray) -> float:
    """mIoU (percent) from per-unit per-class areas ``[units, classes]`` summed over the units;
    classes with no union are left out of the mean (as :class:`SegmentationMetrics`)."""
    inter, uni = np.asarray(intersection, np.float64).sum(0), np.asarray(union, np.float64).sum(0)
    valid = uni > 0
    return float((inter[valid] / uni[valid]).mean() * 100) if valid.any() else math.nan


def pooled_miou_many(intersection: np.ndarray, union: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """:func:`pooled_miou` of many resamples at once: ``idx`` ``(..., units)`` -> ``(...)``.

    Each resample's areas are its units' counts times their areas (a matrix product)."""
    n = intersection.shape[0]
    rows = idx.reshape(-1, idx.shape[-1])
    flat = (rows + n * np.arange(len(rows))[:, None]).ravel()
    counts = np.bincount(flat, minlength=len(rows) * n).reshape(len(rows), n).astype(np.float64)
    shape = (*idx.shape[:-1], intersection.shape[1])
    inter, uni = (counts @ intersection).reshape(shape), (counts @ union).reshape(shape)
    valid = uni > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(valid, inter / np.where(valid, uni, 1.0), 0.0)
        return ratios.sum(-1) / valid.sum(-1) * 100


def _batch(inter: np.ndarray) -> int:
    """Resamples per vectorized call: about 32 MB of unit counts."""
    return max(1, 4_000_000 // max(1, inter.shape[0]))


def pooled_miou_interval(intersection: np.ndarray, union: np.ndarray, **kwargs) -> Interval:
    """Pooled mIoU over units ``[units, classes]`` with its interval (units resampled)."""
    inter, uni = np.asarray(intersection, np.float64), np.asarray(union, np.float64)
    _check_areas(inter, uni)
    kwargs.setdefault("batch", _batch(inter))
    return bootstrap(lambda idx: pooled_miou_many(inter, uni, idx), len(inter), vectorized=True, **kwargs)


def paired_pooled_difference(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                             **kwargs) -> Interval:
    """Pooled mIoU of ``a`` minus that of ``b`` (each ``(intersection, union)``, ``[units, classes]``),
    the same units resampled on both sides."""
    ai, au = (np.asarray(v, np.float64) for v in a)
    bi, bu = (np.asarray(v, np.float64) for v in b)
    _check_areas(ai, au)
    _check_areas(bi, bu)
    if ai.shape != bi.shape:
        raise ValueError(f"paired areas must have the same shape, got {ai.shape} and {bi.shape}")
    kwargs.setdefault("batch", _batch(ai))

    def difference(idx: np.ndarray) -> np.ndarray:
        return pooled_miou_many(ai, au, idx) - pooled_miou_many(bi, bu, idx)

    return bootstrap(difference, len(ai), vectorized=True, **kwargs)


def _check_areas(inter: np.ndarray, uni: np.ndarray) -> None:
    if inter.ndim != 2 or inter.shape != uni.shape:
        raise ValueError(f"areas must be [units, classes] of the same shape, got {inter.shape} and {uni.shape}")
