"""The bench's trial loop against real bags of a miniature VOC split and the tiny random CLIP.

Trials run through :func:`mlmp_ros.bench.suite.trials.run_trials`, the loop every executor
uses (``run``, ``suite``, Ray), and their records are checked against an independent
computation: the same frames in the same order through a fresh Segmenter and
SegmentationMetrics by hand, and the mIoU recomputed from the saved predictions with a
confusion matrix written here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlmp_ros.bench.data.bags import open_bag
from mlmp_ros.bench.data.make_bags import make_bag
from mlmp_ros.bench.data.registry import open_dataset
from mlmp_ros.bench.offline.cache import TrialCache
from mlmp_ros.bench.offline.frames import load_frames, save_examples
from mlmp_ros.bench.offline.options import RunError, RunOptions, segmenter_config
from mlmp_ros.bench.scoring.metrics import SegmentationMetrics
from mlmp_ros.bench.suite.records import TrialRecord
from mlmp_ros.bench.suite.trials import TrialDone, TrialJob, run_trials
from mlmp_ros.core import Segmenter

from ...conftest import tiny_clip, tiny_config

VOC_PALETTE = [v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]


def write_voc(root: Path, n: int = 6, seed: int = 0) -> list[str]:
    """A VOC2012-layout split: textured JPEGs (one portrait), palette PNG labels.

    Labels are 8x8 blocks of ids 0..20 (0 = background, ignored by VOC20) with a 255
    border, so many classes appear and a wrong resize or mapping changes the scores.
    """
    rng = np.random.default_rng(seed)
    ids = [f"2008_{i:06d}" for i in range(n)]
    for k, image_id in enumerate(ids):
        h, w = (72, 48) if k == 1 else (48 + 4 * k, 64)
        image = np.clip(rng.normal(120, 60, (h, w, 3)), 0, 255).astype(np.uint8)
        blocks = rng.integers(0, 21, (h // 8 + 1, w // 8 + 1)).astype(np.uint8)
        labels = np.kron(blocks, np.ones((8, 8), np.uint8))[:h, :w]
        labels[:, :2] = 255
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        label_image = Image.fromarray(labels)
        label_image.putpalette(VOC_PALETTE)
        label_image.save(root / "SegmentationClass" / f"{image_id}.png")
    split = root / "ImageSets/Segmentation/val.txt"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text("\n".join(ids) + "\n")
    return ids


def write_cityscapes(root: Path, n: int = 2, seed: int = 1) -> None:
    """A Cityscapes-layout split of small landscape PNGs with train ids 0..18 and 255."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        stem = f"frankfurt/frankfurt_{k:06d}_000019"
        image = rng.integers(0, 256, (40, 80, 3), dtype=np.uint8)
        labels = np.kron(rng.integers(0, 19, (5, 10)), np.ones((8, 8), np.int64)).astype(np.uint8)
        labels[-1] = 255
        for path, array in ((root / "leftImg8bit/val" / f"{stem}_leftImg8bit.png", image),
                            (root / "gtFine/val" / f"{stem}_gtFine_labelTrainIds.png", labels)):  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path)


def miou_by_confusion(preds: list[np.ndarray], labels: list[np.ndarray], num_classes: int) -> float:
    """mIoU (%) over classes with a non-empty union, from one confusion matrix."""
    conf = np.zeros((num_classes, num_classes), np.int64)
    for p, g in zip(preds, labels):
        keep = g != 255
        conf += np.bincount(g[keep].astype(np.int64) * num_classes + p[keep], minlength=num_classes**2).reshape(
            num_classes, num_classes
        )
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - np.diag(conf)
    return float(np.mean(inter[union > 0] / union[union > 0]) * 100)


@pytest.fixture(scope="module")
def voc_bags(tmp_path_factory):
    """(presized bag, bag at the original sizes) of a six-image VOC20 split."""
    tmp = tmp_path_factory.mktemp("voc")
    write_voc(tmp / "VOC2012")
    dataset = open_dataset("voc20", tmp / "VOC2012")
    presized = make_bag(dataset, "original", tmp / "bags/voc20/original", progress=False)
    original = make_bag(dataset, "original", tmp / "raw/voc20/original", presize=False, progress=False)
    return presized, original


@pytest.fixture(scope="module")
def cache():
    """One cache for the module, as a process keeps it: the tiny CLIP is loaded once and shared."""
    return TrialCache()


def bench_config(**overrides):
    return tiny_config(adaptation__steps=1, **overrides)


def run_method(bag: Path, config, method: str, options: RunOptions, cache: TrialCache) -> list[TrialDone]:
    """Every trial of one method on one bag through the trial loop; each must finish."""
    info = open_bag(bag).info
    segmenter_cfg = segmenter_config(config, info, method)
    identity = {"dataset": info["dataset"], "corruption": info["corruption"], "bag": str(bag)}
    jobs = [TrialJob(identity, method, segmenter_cfg, options, str(bag), trial, seed, f"key{trial}", "digest")
            for trial, seed in enumerate(options.seeds)]  # fmt: skip
    done = list(run_trials(jobs, cache))
    assert [d.reason for d in done] == [None] * len(jobs)
    return done


def records(done: list[TrialDone]) -> list[TrialRecord]:
    return [d.record for d in done]


def by_hand(bag: Path, method: str, seed: int, batch_size: int, **overrides) -> dict:
    """The runner's job done here: a fresh segmenter, the seed's order, one metrics accumulator."""
    frames = list(open_bag(bag))
    config = bench_config(
        adaptation__method=method, classes=["voc20"], resize=[224, 224], window=[224], stride=[112], **overrides
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segmenter = Segmenter(config, loaded=tiny_clip(0))
    order = np.random.default_rng(seed).permutation(len(frames))
    metrics = SegmentationMetrics(20, 255)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        result = segmenter.segment([frames[i].image for i in batch], output="processing")
        for i, frame in zip(batch, result.frames):
            metrics.update(frame.labels, frames[i].labels)
    return metrics.compute()


def test_run_equals_segmenter_and_metrics_by_hand(voc_bags, cache) -> None:
    bag, _ = voc_bags
    results = records(run_method(bag, bench_config(), "tent", RunOptions(batch_size=2, seeds=(0, 1)), cache))
    assert [r.seed for r in results] == [0, 1] and [r.status for r in results] == ["done", "done"]
    for result in results:
        expected = by_hand(bag, "tent", result.seed, 2)
        assert result.metrics["IoU"] == expected["IoU"]
        assert (result.metrics["mIoU"], result.metrics["mAcc"], result.metrics["mDice"], result.metrics["aAcc"]) == (
            expected["mIoU"], expected["mAcc"], expected["mDice"], expected["aAcc"],
        )  # fmt: skip
        assert (result.frames, result.batches, result.batch_size) == (6, 3, 2)
        assert result.adaptation_status == {"ok": 3}
        assert len(result.loss_per_step) == 1 and np.isfinite(result.loss_per_step[0])
        assert result.metrics_state["images"] == 6
        harness = result.timing["harness_s_per_frame"]
        assert result.timing["model_s_per_frame"] > 0 and harness["decode"] > 0 and harness["score"] > 0


def test_single_sample_batches_and_odd_split(voc_bags, cache) -> None:
    bag, _ = voc_bags
    (one,) = records(run_method(bag, bench_config(), "tent", RunOptions(batch_size=1, seeds=(3,)), cache))
    assert (one.batches, one.frames) == (6, 6)
    assert one.metrics["IoU"] == by_hand(bag, "tent", 3, 1)["IoU"]
    (four,) = records(run_method(bag, bench_config(), "noadapt", RunOptions(batch_size=4, seeds=(0,)), cache))
    assert four.batches == 2  # 4 + 2: the last batch holds what is left
    assert four.adaptation_status == {"skipped": 2} and four.loss_per_step == []


def test_saved_predictions_give_the_recorded_miou(voc_bags, cache, tmp_path: Path) -> None:
    bag, _ = voc_bags
    (done,) = run_method(bag, bench_config(), "mlmp", RunOptions(seeds=(1,), examples=6), cache)
    result = done.record
    assert done.examples.ids == open_bag(bag).info["image_ids"]
    path = tmp_path / "examples.npz"
    save_examples(path, done.examples.arrays, ["a"] * 6)
    saved = np.load(path)
    frames = list(open_bag(bag))
    preds = [saved[f"prediction_{i}"] for i in range(6)]
    labels = [saved[f"labels_{i}"] for i in range(6)]
    for i, frame in enumerate(frames):  # the split's first frames, whatever the trial order
        np.testing.assert_array_equal(saved[f"image_{i}"], frame.image)
        np.testing.assert_array_equal(labels[i], frame.labels)
        assert preds[i].shape == (224, 224)
    assert miou_by_confusion(preds, labels, 20) == pytest.approx(result.metrics["raw"]["mIoU"], abs=1e-9)
    assert round(miou_by_confusion(preds, labels, 20), 2) == result.metrics["mIoU"]
    weights = result.layer_weights
    assert weights is not None and weights["layers"] == [1, 2, 3]
    assert sum(weights["mean"]) == pytest.approx(1.0, abs=1e-6)  # softmax over layers, per window


def test_bag_at_original_size_scores_like_a_presized_one(voc_bags, cache) -> None:
    presized, original = voc_bags
    raw = load_frames(original)
    assert raw.info["presized"] is False
    assert raw.labels[1].shape == (224, 224) and raw.images[1].shape == (224, 224, 3)  # portrait 72x48 resized
    assert raw.resize_s > 0
    options = RunOptions(seeds=(0,))
    (a,) = records(run_method(presized, bench_config(), "noadapt", options, cache))
    (b,) = records(run_method(original, bench_config(), "noadapt", options, cache))
    assert a.metrics["IoU"] == b.metrics["IoU"]


def test_continual_keeps_state_over_batches_but_not_over_trials(voc_bags, cache) -> None:
    bag, _ = voc_bags
    options = RunOptions(seeds=(0, 1), shuffle=False)
    continual = records(run_method(bag, bench_config(adaptation__mode="continual", adaptation__lr=0.05), "tent",
                                   options, cache))  # fmt: skip
    episodic = records(run_method(bag, bench_config(adaptation__lr=0.05), "tent", options, cache))
    assert continual[0].loss_per_step == continual[1].loss_per_step
    assert continual[0].metrics["IoU"] == continual[1].metrics["IoU"]
    assert continual[0].loss_per_step != episodic[0].loss_per_step


def test_shared_model_is_back_to_source_weights_after_a_run(voc_bags, cache) -> None:
    bag, _ = voc_bags
    run_method(bag, bench_config(adaptation__lr=0.1), "mlmp", RunOptions(seeds=(0,)), cache)
    loaded = cache.loaded_clip(bench_config())  # the backbone the cache shares between methods
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = tiny_clip(0).model.state_dict()
    for name, tensor in loaded.model.state_dict().items():
        assert tensor.equal(fresh[name]), name


def test_limit_and_bad_options(voc_bags, cache) -> None:
    bag, _ = voc_bags
    (result,) = records(run_method(bag, bench_config(), "noadapt", RunOptions(seeds=(0,), limit=3), cache))
    assert result.frames == 3 and result.metrics["images"] == 3
    with pytest.raises(RunError, match="batch_size must be >= 1, not 0"):
        RunOptions(batch_size=0)
    with pytest.raises(RunError, match="seeds must differ"):
        RunOptions(seeds=(1, 1))


def test_a_failing_trial_stops_the_method_and_names_the_reason(voc_bags, cache, monkeypatch) -> None:
    """After a failure the remaining trials of the method come back not run, with the reason."""
    bag, _ = voc_bags
    calls = []
    real = Segmenter.segment

    def segment(self, images, **kw):
        calls.append(len(images))
        if len(calls) == 4:  # the second trial's first batch (3 batches a trial)
            raise RuntimeError("out of memory")
        return real(self, images, **kw)

    monkeypatch.setattr(Segmenter, "segment", segment)
    info = open_bag(bag).info
    config = segmenter_config(bench_config(), info, "noadapt")
    jobs = [TrialJob({"dataset": "voc20", "corruption": "original"}, "noadapt", config, RunOptions(seeds=(0, 1, 2)),
                     str(bag), t, s, f"key{t}", "digest") for t, s in enumerate((0, 1, 2))]  # fmt: skip
    done = list(run_trials(jobs, cache))
    assert [d.record is not None for d in done] == [True, False, False]
    assert [d.reason for d in done[1:]] == ["RuntimeError: out of memory"] * 2
    assert [d.job.trial for d in done] == [0, 1, 2]
