"""WATT's own loop (M rounds x templates x L steps) under adaptation.budget_ms and adaptation.plateau.

Time comes from a fake clock that each step advances, never from the machine's speed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlmp_ros.core import Segmenter

from ...conftest import tiny_clip, tiny_config, torch_threads

SMALL = {"window": [32], "stride": [32], "adaptation__method": "watt", "adaptation__watt__l": 2}
TEMPLATES = 7  # WATT's default template set


@pytest.fixture(autouse=True)
def _two_threads():
    with torch_threads(2):
        yield


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)


def segmenter(**overrides) -> Segmenter:
    return Segmenter(tiny_config(**{**SMALL, **overrides}), loaded=tiny_clip(0))


class StepClock:
    """A clock that moves only when a step runs (10 ms per step)."""

    def __init__(self, seg: Segmenter, step_s: float = 0.010):
        self.t = 0.0
        original = seg.method.step_loss

        def timed_step(batch, template=0):
            self.t += step_s
            return original(batch, template)

        seg.method.step_loss = timed_step
        seg.method.control.clock = self

    def __call__(self) -> float:
        return self.t


def test_budget_stops_inside_watts_rounds():
    full = segmenter(adaptation__watt__m=2)
    assert full.method.control is None  # the paper's loop: every step of every round
    reference = full.segment([image()]).losses
    assert len(reference) == 2 * TEMPLATES * 2

    seg = segmenter(adaptation__watt__m=2, adaptation__budget_ms=55.0)
    clock = StepClock(seg)
    source = [p.detach().clone() for _, p in seg.method.named_params]
    out = seg.segment([image()])
    # step 1 runs (nothing measured yet); step k+1 starts only if 10 k + 10 <= 55 ms: 5 steps
    assert len(out.losses) == 5
    assert out.losses == reference[:5]  # the same steps, stopped early
    assert clock.t == pytest.approx(0.050)
    assert seg.method.control._stopped == "budget"
    # the cut round (templates 0 and 1 whole, template 2 after one step) was averaged: adapted, finite
    assert len(seg.method.round_losses) == 1
    assert seg.method.parameters_finite()
    assert any(not torch.equal(p, s) for (_, p), s in zip(seg.method.named_params, source))
    seg.segment([image(1)])
    assert seg.method.control.stats()["stops"]["budget"] == 1


def test_budget_shorter_than_a_step_leaves_the_weights_alone():
    seg = segmenter(adaptation__watt__m=2, adaptation__budget_ms=5.0, adaptation__mode="continual")
    StepClock(seg)
    seg.segment([image()])  # the first step always runs, to be measured
    after_first = [p.detach().clone() for _, p in seg.method.named_params]
    out = seg.segment([image(1)])
    assert out.losses == []
    assert seg.method.round_losses == []
    assert all(torch.equal(p, a) for (_, p), a in zip(seg.method.named_params, after_first))


def test_plateau_compares_rounds():
    full = segmenter(adaptation__watt__m=3).segment([image()]).losses
    seg = segmenter(adaptation__watt__m=3, adaptation__plateau=0.99)
    out = seg.segment([image()])
    # two rounds always run; the second cannot improve on the first by 99%: no third round
    per_round = TEMPLATES * 2
    assert len(out.losses) == 2 * per_round
    assert out.losses == full[: 2 * per_round]
    assert len(seg.method.round_losses) == 2
    seg.segment([image(1)])
    assert seg.method.control.stats()["stops"] == {"steps": 0, "budget": 0, "plateau": 1}
