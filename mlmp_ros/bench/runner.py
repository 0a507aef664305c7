"""Replay a bench bag offline through the core and score it (no middleware).

One trial: the bag's frames in an order set by the trial's seed (``numpy``
``Generator(seed).permutation``, or bag order with ``shuffle=False``), cut into batches
of ``batch_size`` frames; each batch is one :meth:`Segmenter.segment` call at the
protocol resolution, scored against the ground truth resized (nearest neighbour) to
the same size and accumulated over the whole split with :class:`SegmentationMetrics`.
Episodic methods reset before every batch (the core does that); a trial starts from
the source weights, so continual adaptation carries over batches but never trials.

The frames are decoded and resized once (:func:`load_frames`) and shared by every
method and trial of a scenario, so the bench measures the model, not the bag reader.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import schema
from ..core.backbone import LoadedCLIP
from ..core.config import Config
from ..core.schema import setting
from ..core.segmenter import Segmenter
from ..core.windows import fit_to_window, pair, resize_image, resize_labels, target_size
from .bags import BagFile, open_bag
from .metrics import SegmentationMetrics


class RunError(ValueError):
    """A run cannot start: its options do not fit the bag or the segmenter."""


def _seeds(seeds: tuple[int, ...]) -> str | None:
    if not seeds:
        return "must list at least one trial seed"
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        return f"must be integers >= 0, not {list(seeds)}"
    if len(set(seeds)) != len(seeds):
        return f"must differ, got {list(seeds)}"
    return None


@dataclass(frozen=True)
class RunOptions:
    """How a bag is replayed: batching, order, trials and what is kept (declared as in core/schema.py;
    a suite file's keys of the same names are these declarations)."""

    batch_size: int = setting(2, help="frames per adaptation batch (2: the paper's tables, 1: single sample)",
                              range="[1, inf)")
    seeds: tuple[int, ...] = setting((0, 1, 2), help="trial seeds, one trial each", check=_seeds)
    shuffle: bool = setting(True, help="frames in a new order per trial seed (false: bag order)")
    limit: int | None = setting(None, help="the first N frames of the bag only", range="[1, inf)")
    examples: int = setting(3, help="predictions kept for the first K frames of the split (trial 0)",
                            range="[0, inf)")
    progress: bool = False

    def __post_init__(self) -> None:
        problems = schema.problems(self, types=True)
        if problems:
            raise RunError("; ".join(problems))


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


def protocol(info: Mapping[str, Any]) -> tuple[list[int], list[int], list[int]]:
    """(resize, window, stride) of a bag's description, as Config lists."""
    try:
        proto = info["protocol"]
        resize, window, stride = proto["resize"], proto["window"], proto["stride"]
    except (KeyError, TypeError) as err:
        raise RunError(f"the bag's description has no protocol {err}; write the bag again with make-bags") from None

    def as_list(value: Any) -> list[int]:
        return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]

    return as_list(resize), as_list(window), as_list(stride)


def segmenter_config(base: Config, info: Mapping[str, Any], method: str | None = None) -> Config:
    """``base`` with the bag's classes and window protocol (and ``method`` if given)."""
    resize, window, stride = protocol(info)
    changes: dict[str, Any] = {"classes": [info["class_key"]], "resize": resize, "window": window, "stride": stride}
    if method is not None:
        changes["adaptation.method"] = method
    return base.replace(**changes)


def scoring_size(height: int, width: int, config: Config) -> tuple[int, int]:
    """(height, width) at which the segmenter answers with ``output='processing'``."""
    return fit_to_window(target_size(height, width, config.resize), pair(config.window))


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
    bar = _bar(count, f"decode {info.get('dataset')}/{info.get('corruption')}", progress, unit="img")
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


@dataclass
class TrialResult:
    """Scores and diagnostics of one trial; ``examples`` holds arrays kept out of the JSON."""

    seed: int
    shuffle: bool
    batch_size: int
    frames: int
    batches: int
    metrics: dict[str, Any]
    metrics_state: dict[str, Any]
    timing: dict[str, Any]
    loss_per_step: list[float | None]
    layer_weights: dict[str, list] | None
    adaptation_status: dict[str, int]
    notes: dict[str, Any]
    trainable_parameters: int
    examples: dict[str, np.ndarray] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The JSON-serialisable part (every field but the example arrays)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "examples"}


_KEPT_SCORES = (
    "mIoU", "mAcc", "mDice", "aAcc", "raw", "IoU", "Acc", "Dice", "valid_classes", "pixels", "out_of_range_pixels",
    "images",
)  # fmt: skip


class _StepMeans:
    """Per-index means of lists of varying length, ignoring non-finite values."""

    def __init__(self) -> None:
        self.sums: list[float] = []
        self.counts: list[int] = []

    def add(self, values: Sequence[float]) -> None:
        for i, v in enumerate(values):
            if i == len(self.sums):
                self.sums.append(0.0)
                self.counts.append(0)
            if math.isfinite(v):
                self.sums[i] += float(v)
                self.counts[i] += 1

    def means(self) -> list[float | None]:
        return [s / c if c else None for s, c in zip(self.sums, self.counts)]


class _LayerWeightStats:
    """Mean and standard deviation per layer of the (S, windows) entropy weights."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.squares: np.ndarray | None = None
        self.count = 0

    def add(self, weights: np.ndarray | None) -> None:
        if weights is None:
            return
        w = np.asarray(weights, dtype=np.float64).reshape(weights.shape[0], -1)
        if self.total is None:
            self.total, self.squares = np.zeros(w.shape[0]), np.zeros(w.shape[0])
        self.total += w.sum(1)
        self.squares += (w * w).sum(1)
        self.count += w.shape[1]

    def summary(self, layers: Sequence[int]) -> dict[str, list] | None:
        if self.total is None or not self.count:
            return None
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.squares / self.count - mean * mean, 0.0))
        return {"layers": [int(v) for v in layers], "mean": mean.tolist(), "std": std.tolist()}


def trial_order(count: int, seed: int, shuffle: bool) -> np.ndarray:
    """The frame order of a trial: a seeded permutation, or bag order."""
    return np.random.default_rng(seed).permutation(count) if shuffle else np.arange(count)


def check_classes(segmenter: Segmenter, info: Mapping[str, Any]) -> None:
    """Refuse a segmenter whose class list is not the bag's (the scores would be nonsense)."""
    names = list(segmenter.class_names)
    expected = list(info.get("class_names") or [])
    if len(names) != int(info["num_classes"]) or (expected and names != expected):
        raise RunError(
            f"the segmenter's {len(names)} classes ({', '.join(names[:4])}, ...) are not the bag's "
            f"{info['num_classes']} classes of '{info['class_key']}'; the bag and this installation's class lists differ"
        )


class _TrialTally:
    """What one trial accumulates batch by batch: scores, losses, layer weights, statuses, time, kept examples."""

    def __init__(self, frames: BenchFrames, keep: int) -> None:
        self.metrics = SegmentationMetrics(frames.num_classes, frames.ignore_index, frames.info.get("class_names"))
        self.losses = _StepMeans()
        self.weights = _LayerWeightStats()
        self.statuses: Counter[str] = Counter()
        self.stages = {"prepare": 0.0, "model": 0.0, "post": 0.0, "total": 0.0}
        self.score_s = 0.0
        self.keep = keep
        self.kept: dict[str, np.ndarray] = {}
        self.batches = 0

    def add(self, frames: BenchFrames, idx: np.ndarray, result: Any) -> None:
        """Score one batch's frames (timing the scoring) and take in the segmenter's report on it."""
        t0 = time.perf_counter()
        for i, frame in zip(idx, result.frames):
            self.metrics.update(frame.labels, frames.labels[i])
            if i < self.keep:
                self.kept[f"prediction_{i}"] = frame.labels
        self.score_s += time.perf_counter() - t0
        for key in self.stages:
            self.stages[key] += float(result.timings.get(key, 0.0))
        self.losses.add(result.losses)
        self.weights.add(result.layer_weights)
        self.statuses[result.status] += 1
        self.batches += 1

    def keep_inputs(self, frames: BenchFrames) -> None:
        """The kept examples' images and ground truth beside their predictions."""
        for i in range(self.keep):
            self.kept[f"image_{i}"] = frames.images[i]
            self.kept[f"labels_{i}"] = frames.labels[i]

    def timing(self, frames: BenchFrames, wall: float) -> dict[str, Any]:
        """Per-frame time of the segmenter's stages and of the harness around it."""
        stages, score_s = self.stages, self.score_s
        per = 1.0 / len(frames)
        decode, resize = frames.decode_s * per, frames.resize_s * per
        loop = max(wall - stages["total"] - score_s, 0.0) * per
        harness = decode + resize + score_s * per + loop
        spent = stages["total"] * per + harness
        return {
            "trial_wall_s": wall,
            "model_s_per_frame": stages["model"] * per,
            "segmenter_s_per_frame": {k: v * per for k, v in stages.items()},
            # decode and resize are paid once per bag and shared by every method and trial
            "harness_s_per_frame": {
                "decode": decode,
                "resize": resize,
                "score": score_s * per,
                "loop": loop,
                "total": harness,
            },
            "model_fraction": stages["model"] * per / spent if spent > 0 else None,
        }


def run_trial(
    segmenter: Segmenter,
    frames: BenchFrames,
    *,
    seed: int,
    batch_size: int,
    shuffle: bool = True,
    examples: int = 0,
    progress: bool = False,
    desc: str = "",
) -> TrialResult:
    """One trial of ``segmenter`` over ``frames`` (see module docs)."""
    check_classes(segmenter, frames.info)
    count = len(frames)
    order = trial_order(count, seed, shuffle)
    segmenter.reset()  # every trial starts from the source weights (continual mode too)
    torch.manual_seed(seed)
    tally = _TrialTally(frames, min(examples, count))
    bar = _bar(count, desc or f"seed {seed}", progress, unit="img")
    started = time.perf_counter()
    try:
        for start in range(0, count, batch_size):
            idx = order[start : start + batch_size]
            result = segmenter.segment([frames.images[i] for i in idx], output="processing")
            tally.add(frames, idx, result)
            bar.update(len(idx))
    finally:
        bar.close()
    wall = time.perf_counter() - started
    tally.keep_inputs(frames)
    scores = tally.metrics.compute()
    return TrialResult(
        seed=int(seed),
        shuffle=bool(shuffle),
        batch_size=int(batch_size),
        frames=count,
        batches=tally.batches,
        metrics={k: scores[k] for k in _KEPT_SCORES},
        metrics_state=tally.metrics.state(),
        timing=tally.timing(frames, wall),
        loss_per_step=tally.losses.means(),
        layer_weights=tally.weights.summary(getattr(segmenter, "layers", ())),
        adaptation_status=dict(tally.statuses),
        notes=dict(segmenter.method.describe()),
        trainable_parameters=int(segmenter.method.parameter_count()),
        examples=tally.kept,
    )


def run_bag(
    bag: BagFile | BenchFrames | str | os.PathLike[str],
    config: Config,
    *,
    method: str | None = None,
    options: RunOptions | None = None,
    loaded: LoadedCLIP | None = None,
) -> list[TrialResult]:
    """Every trial of one method on one bag; the segmenter's weights are source again afterwards.

    ``config`` is the caller's core config; classes and window protocol come from
    the bag.  Pass ``loaded`` (:func:`mlmp_ros.core.load_clip`) to share one model.
    """
    options = options or RunOptions()
    frames = bag if isinstance(bag, BenchFrames) else load_frames(bag, limit=options.limit, progress=options.progress)
    segmenter = Segmenter(segmenter_config(config, frames.info, method), loaded=loaded)
    try:
        return [
            run_trial(
                segmenter,
                frames,
                seed=seed,
                batch_size=options.batch_size,
                shuffle=options.shuffle,
                examples=options.examples if t == 0 else 0,
                progress=options.progress,
            )
            for t, seed in enumerate(options.seeds)
        ]
    finally:
        segmenter.reset()  # a shared model must not keep one method's adapted weights


def _bar(total: int, desc: str, enabled: bool, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not enabled, dynamic_ncols=True)


def save_examples(path: Path, examples: Mapping[str, np.ndarray], ids: Iterable[str | None] = ()) -> None:
    """Write the qualitative examples as one compressed .npz, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, ids=np.array([str(i) for i in ids]), **dict(examples))
    os.replace(tmp, path)
