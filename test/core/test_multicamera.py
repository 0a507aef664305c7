"""Several cameras through one model (core/multicamera.py): each camera's adaptation state is
its own unless shared, and a batch of cameras' frames predicts what one at a time does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlmp_ros.core import Segmenter
from mlmp_ros.core.multicamera import MultiCameraSegmenter

from ..conftest import tiny_clip, tiny_config


def _image(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _seg(**overrides) -> Segmenter:
    cfg = tiny_config(**{"adaptation__mode": "continual", "adaptation__steps": 2, "adaptation__lr": 1e-2,
                         "precision": "fp32", **overrides})
    return Segmenter(cfg, loaded=tiny_clip(0))


def test_each_camera_adapts_its_own_weights_and_the_model_is_one():
    seg = _seg()
    multicamera = MultiCameraSegmenter(seg, ["front", "rear"])
    assert len({id(s.view.encoder) for s in multicamera.distinct()}) == 1  # one model in memory
    for i in range(2):
        multicamera.segment("front", [_image(i)])
    assert multicamera.weight_shift("front") > 0 and multicamera.weight_shift("rear") == 0
    # rear's first frame starts from the source: what a fresh segmenter gives on it
    rear = multicamera.segment("rear", [_image(9)]).result.frames[0].labels
    fresh = _seg().segment([_image(9)]).frames[0].labels
    np.testing.assert_array_equal(rear, fresh)
    front_before = [v.clone() for v in multicamera.states["front"].values]
    multicamera.reset("rear")
    assert all(torch.equal(a, b) for a, b in zip(front_before, multicamera.states["front"].values))
    assert multicamera.scheduled("front").method.resets == 0 and multicamera.scheduled("rear").method.resets == 1
    multicamera.close()


def test_shared_cameras_adapt_one_state():
    multicamera = MultiCameraSegmenter(_seg(), ["front", "rear"], share=True)
    multicamera.segment("front", [_image(0)])
    assert multicamera.weight_shift("rear") == multicamera.weight_shift("front") > 0
    multicamera.reset("rear")  # shared: the one state
    assert multicamera.weight_shift("front") == 0
    multicamera.close()


def test_a_batch_predicts_what_one_frame_at_a_time_does():
    seg = _seg(**{"adaptation__mode": "off"})
    multicamera = MultiCameraSegmenter(seg, ["a", "b", "c"])
    assert multicamera.batchable()
    images = [_image(i) for i in range(3)]
    frames, _ = multicamera.segment_batch(images)
    for name, image, frame in zip("abc", images, frames):
        alone = multicamera.segment(name, [image]).result.frames[0]
        np.testing.assert_array_equal(frame.labels, alone.labels)
        np.testing.assert_allclose(frame.confidence, alone.confidence, atol=1e-5)
    multicamera.close()


def test_no_batch_once_a_camera_has_its_own_weights():
    multicamera = MultiCameraSegmenter(_seg(), ["a", "b"])
    assert not multicamera.batchable()  # continual: it adapts
    multicamera.update(**{"adaptation.mode": "off"})
    assert multicamera.batchable()
    with pytest.raises(RuntimeError):
        MultiCameraSegmenter(_seg(), ["a", "b"]).segment_batch([_image(0)])
    multicamera.close()
