"""Several streams through one model (core/multistream.py): each stream's adaptation state is
its own unless shared, and a batch of streams' frames predicts what one at a time does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlmp_ros.core import Segmenter
from mlmp_ros.core.multistream import MultiStream

from ..conftest import tiny_clip, tiny_config


def _image(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _seg(**overrides) -> Segmenter:
    cfg = tiny_config(**{"adaptation__mode": "continual", "adaptation__steps": 2, "adaptation__lr": 1e-2,
                         "precision": "fp32", **overrides})
    return Segmenter(cfg, loaded=tiny_clip(0))


def test_each_stream_adapts_its_own_weights_and_the_model_is_one():
    seg = _seg()
    streams = MultiStream(seg, ["front", "rear"])
    assert len({id(s.view.encoder) for s in streams.distinct()}) == 1  # one model in memory
    for i in range(2):
        streams.segment("front", [_image(i)])
    assert streams.weight_shift("front") > 0 and streams.weight_shift("rear") == 0
    # rear's first frame starts from the source: what a fresh segmenter gives on it
    rear = streams.segment("rear", [_image(9)]).result.frames[0].labels
    fresh = _seg().segment([_image(9)]).frames[0].labels
    np.testing.assert_array_equal(rear, fresh)
    front_before = [v.clone() for v in streams.states["front"].values]
    streams.reset("rear")
    assert all(torch.equal(a, b) for a, b in zip(front_before, streams.states["front"].values))
    assert streams.stream("front").method.resets == 0 and streams.stream("rear").method.resets == 1
    streams.close()


def test_shared_streams_adapt_one_state():
    streams = MultiStream(_seg(), ["front", "rear"], share=True)
    streams.segment("front", [_image(0)])
    assert streams.weight_shift("rear") == streams.weight_shift("front") > 0
    streams.reset("rear")  # shared: the one state
    assert streams.weight_shift("front") == 0
    streams.close()


def test_a_batch_predicts_what_one_frame_at_a_time_does():
    seg = _seg(**{"adaptation__mode": "off"})
    streams = MultiStream(seg, ["a", "b", "c"])
    assert streams.batchable()
    images = [_image(i) for i in range(3)]
    frames, _ = streams.segment_batch(images)
    for name, image, frame in zip("abc", images, frames):
        alone = streams.segment(name, [image]).result.frames[0]
        np.testing.assert_array_equal(frame.labels, alone.labels)
        np.testing.assert_allclose(frame.confidence, alone.confidence, atol=1e-5)
    streams.close()


def test_no_batch_once_a_stream_has_its_own_weights():
    streams = MultiStream(_seg(), ["a", "b"])
    assert not streams.batchable()  # continual: it adapts
    streams.update(**{"adaptation.mode": "off"})
    assert streams.batchable()
    with pytest.raises(RuntimeError):
        MultiStream(_seg(), ["a", "b"]).segment_batch([_image(0)])
    streams.close()
