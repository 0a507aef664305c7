"""score_camera_rate (shared by ``mlmp-bench stream`` and ``replay-live``) on hand-made frames."""

from __future__ import annotations

import numpy as np
import pytest

from mlmp_ros.bench.camera.chain import check_chain
from mlmp_ros.bench.offline.options import RunError
from mlmp_ros.bench.scoring.camera_rate import score_camera_rate
from mlmp_ros.bench.scoring.metrics import SegmentationMetrics


def test_each_frame_gets_the_newest_labels_published_by_its_arrival():
    truth = [np.array([[0, 1], [1, 255]], np.uint8), np.array([[1, 1], [0, 0]], np.uint8),
             np.array([[0, 0], [0, 1]], np.uint8), np.array([[1, 0], [1, 0]], np.uint8)]  # fmt: skip
    arrival = [0.0, 1.0, 2.0, 3.0]
    ones = np.ones((4, 4), np.int32)  # another size than the ground truth: resized (nearest)
    zeros = np.zeros((2, 2), np.int32)
    # given out of time order; frame 2's labels are published exactly when frame 3 arrives
    published = [(3.0, 2, zeros), (1.5, 0, ones)]
    scores = score_camera_rate(truth, arrival, published, num_classes=2, segments=["a", "a", "b", "b"])
    assert [t["shown"] for t in scores["timeline"]] == [None, None, 0, 2]  # a tie counts as on the topic
    assert scores["frames_without_labels"] == 2
    assert scores["label_age_frames_median"] == 1.5 and scores["label_age_frames_max"] == 2
    assert [s["segment"] for s in scores["segments"]] == ["a", "b"]

    expected = SegmentationMetrics(2)
    for gt, pred in zip(truth, [np.full((2, 2), 2), np.full((2, 2), 2), np.ones((2, 2)), np.zeros((2, 2))]):
        expected.update(pred.astype(np.int32), gt)
    assert scores["metrics_camera"]["raw"] == expected.compute()["raw"]
    own = SegmentationMetrics(2)
    own.update(np.ones((2, 2), np.int32), truth[0])
    own.update(zeros, truth[2])
    assert scores["metrics_processed"]["raw"] == own.compute()["raw"] and scores["frames_scored_processed"] == 2
    assert scores["segments"][0]["miou_processed"] is not None


def test_each_frame_keeps_its_areas_so_an_interval_over_frames_can_be_computed():
    from mlmp_ros.bench.scoring.intervals import pooled_miou

    truth = [np.array([[0, 1], [1, 255]], np.uint8), np.array([[1, 1], [0, 0]], np.uint8),
             np.array([[0, 0], [0, 1]], np.uint8)]  # fmt: skip
    published = [(0.5, 0, np.array([[0, 1], [0, 0]], np.int32)), (1.5, 1, np.ones((2, 2), np.int32))]
    scores = score_camera_rate(truth, [0.0, 1.0, 2.0], published, num_classes=2)
    inter = np.array([t["inter"] for t in scores["timeline"]])
    union = np.array([t["union"] for t in scores["timeline"]])
    assert inter.tolist() == [[0, 0], [2, 1], [0, 1]]  # frame 0: nothing on the topic yet, all wrong
    assert union.tolist() == [[1, 2], [3, 2], [3, 4]]
    assert pooled_miou(inter, union) == pytest.approx(scores["miou_camera"], abs=0.01)


def test_nothing_published_counts_every_frame_as_wrong():
    truth = [np.zeros((2, 2), np.uint8)] * 3
    scores = score_camera_rate(truth, [0.0, 0.1, 0.2], [], num_classes=3)
    assert scores["miou_camera"] == 0.0 and scores["frames_without_labels"] == 3
    assert scores["metrics_processed"] is None and scores["label_age_frames_max"] is None
    with pytest.raises(ValueError, match="arrival"):
        score_camera_rate(truth, [0.0], [], num_classes=3)


def test_check_chain_names_both_bags_and_what_differs():
    voc = {"class_key": "voc20", "protocol": {"resize": [224, 224]}}
    city = {"class_key": "cityscapes", "protocol": {"resize": [1120, 560]}}
    check_chain([("a", city), ("b", dict(city))])
    with pytest.raises(RunError) as err:
        check_chain([("bags/city", city), ("bags/voc", voc)])
    text = str(err.value)
    assert "bags/voc" in text and "bags/city" in text and "'voc20' vs 'cityscapes'" in text and "protocol" in text
