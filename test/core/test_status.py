"""The narrow interface callers use instead of the method's internals: status(), set_runtime(), describe()."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mlmp_ros.core import Segmenter

from ..conftest import tiny_clip, tiny_config


def test_status_update_and_describe():
    seg = Segmenter(tiny_config(adaptation__steps=1, resize=[224]), loaded=tiny_clip(4))
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    status = seg.status()
    assert status.weights == "random" and status.random_weights
    assert status.class_names == ("cat", "dog", "sky", "grass")
    assert status.synonyms[1] == ("dog", "puppy")
    assert (status.resets, status.adaptation_failures, status.last_adaptation_failure) == (0, 0, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.resets = 5  # a snapshot, not a handle on the method

    # Run-time changes reach the method through set_runtime: three steps, then none.
    seg.update(adaptation__steps=3)
    assert len(seg.segment(image).losses) == 3
    seg.update(adaptation__mode="off")
    assert seg.segment(image).losses == []

    seg.reset()
    assert seg.status().resets == 1 and status.resets == 0
    # Every method answers describe(); MLMP has nothing to add.
    assert seg.method.describe() == {}
