"""Schedules (sync / async), budgets and continual safeguards with the tiny random CLIP."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from mlmp_ros.core import ConfigError, Segmenter
from mlmp_ros.core.priority import THREADS
from mlmp_ros.core.safeguards import AdaptationControl
from mlmp_ros.core.schedule import ScheduledSegmenter

from ..conftest import tiny_clip, tiny_config, torch_threads

SMALL = {"window": [32], "stride": [32], "adaptation__steps": 2}


@pytest.fixture(autouse=True)
def _two_threads():
    with torch_threads(2):
        yield


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(n)]


def segmenter(**overrides) -> Segmenter:
    return Segmenter(tiny_config(**{**SMALL, **overrides}), loaded=tiny_clip(0))


@pytest.mark.parametrize("mode", ["episodic", "continual"])
def test_sync_defaults_give_exactly_the_plain_segmenter(mode):
    plain = segmenter(adaptation__mode=mode)
    scheduled = ScheduledSegmenter(segmenter(adaptation__mode=mode))
    for img in frames(2):
        a = plain.segment([img])
        b = scheduled.segment(img)
        assert b.lag == 0 and b.schedule == "sync"
        assert a.losses == b.result.losses
        assert np.array_equal(a.frames[0].labels, b.result.frames[0].labels)
        assert np.array_equal(a.frames[0].confidence, b.result.frames[0].confidence)


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="adaptation.schedule"):
        tiny_config(adaptation__schedule="later")
    with pytest.raises(ConfigError, match="adaptation.every"):
        tiny_config(adaptation__every=0)
    with pytest.raises(ConfigError, match="reliable_e0"):
        tiny_config(adaptation__method="watt", adaptation__safeguards__reliable_e0=0.4)
    with pytest.raises(ConfigError, match="ensemble_alpha"):
        tiny_config(adaptation__safeguards__ensemble_alpha=1.5)
    scheduled = ScheduledSegmenter(segmenter())
    with pytest.raises(ConfigError, match="cannot change at run time"):
        scheduled.update(window=[64])


def test_every_nth_frame_adapts_and_the_others_use_the_newest_weights():
    scheduled = ScheduledSegmenter(segmenter(adaptation__mode="continual", adaptation__every=3))
    out = [scheduled.segment(img) for img in frames(7)]
    assert [r.result.status for r in out] == ["ok", "skipped", "skipped", "ok", "skipped", "skipped", "ok"]
    assert [r.lag for r in out] == [0, 1, 2, 0, 1, 2, 0]


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_budget_stops_before_a_step_that_would_pass_it():
    seg = segmenter(adaptation__steps=10, adaptation__budget_ms=35.0, adaptation__mode="continual")
    scheduled = ScheduledSegmenter(seg)
    clock = FakeClock()
    scheduled.control.clock = clock
    original = seg.method.step_loss

    def slow_step(batch):  # every step takes 10 ms on the fake clock
        clock.t += 0.010
        return original(batch)

    seg.method.step_loss = slow_step
    first = scheduled.segment(frames(1)[0])
    # step 1 runs (nothing measured yet), then 10+10 <= 35, 20+10 <= 35, 30+10 > 35
    assert len(first.result.losses) == 3
    assert scheduled.control.step_time == pytest.approx(0.010)
    scheduled.update(adaptation__budget_ms=5.0)  # shorter than one step: no step starts
    assert scheduled.segment(frames(1)[0]).result.losses == []


def test_plateau_stops_the_steps_of_a_frame():
    full = segmenter(adaptation__steps=6).segment(frames(1))
    scheduled = ScheduledSegmenter(segmenter(adaptation__steps=6, adaptation__plateau=0.5))
    out = scheduled.segment(frames(1)[0])
    assert len(full.losses) == 6
    assert len(out.result.losses) == 2  # the loss moves far less than 50% per step
    assert out.result.losses == full.losses[:2]


def test_reliable_token_filter():
    base = segmenter(adaptation__method="tent", adaptation__steps=1).segment(frames(1)).losses
    none_kept = segmenter(adaptation__method="tent", adaptation__steps=1, adaptation__safeguards__reliable_e0=1e-6)
    assert none_kept.segment(frames(1)).losses == [0.0]  # no token is that certain: nothing to learn from
    all_kept = segmenter(adaptation__method="tent", adaptation__steps=1, adaptation__safeguards__reliable_e0=1.0)
    assert all_kept.segment(frames(1)).losses == pytest.approx(base, rel=1e-6)


def test_weight_ensembling_pulls_toward_the_source():
    free = segmenter(adaptation__steps=1, adaptation__mode="continual")
    free.segment(frames(1))
    pulled = segmenter(adaptation__steps=1, adaptation__mode="continual", adaptation__safeguards__ensemble_alpha=0.25)
    ScheduledSegmenter(pulled).segment(frames(1)[0])
    source = pulled.method.source_weights()
    for (_, p), (_, q), s in zip(pulled.method.named_params, free.method.named_params, source):
        assert torch.allclose(p, 0.25 * q + 0.75 * s, atol=1e-6)


def test_collapse_detection_from_predictions():
    cfg = tiny_config(adaptation__safeguards__collapse=True)
    control = AdaptationControl(cfg.adaptation)
    diverse = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    for _ in range(4):
        control.observe(diverse)
    assert control.reset_reason() == ""
    one_class = torch.zeros(2, 4, 16, 16)
    one_class[:, 2] = 30.0  # every pixel the same query, almost certain
    control.observe(one_class)
    assert control.reset_reason() == ""  # one frame is not a collapse (moving averages)
    for _ in range(15):
        control.observe(one_class)
    assert control.reset_reason() == "collapse"
    control.on_reset()
    assert control.reset_reason() == ""
    control.observe(one_class, generation=control.generation - 1)  # from weights before the reset: ignored
    assert control.stats()["collapse_classes_ema"] is None


def test_collapse_resets_a_continual_stream_and_counts_the_reason():
    # the tiny random model predicts almost uniformly (normalised entropy ~0.7); a threshold
    # above it makes every observation a collapse: a reset after every 3 observations
    seg = segmenter(adaptation__mode="continual", adaptation__safeguards__collapse=True,
                    adaptation__safeguards__collapse_entropy=0.99)  # fmt: skip
    scheduled = ScheduledSegmenter(seg)
    for img in frames(7):
        scheduled.segment(img)
    assert scheduled.stats()["resets"] == {"collapse": 2}  # before frames 3 and 6


def test_drift_resets_on_a_jump_in_input_statistics():
    rng = np.random.default_rng(1)
    base = rng.integers(60, 200, (48, 64, 3), dtype=np.uint8)
    calm = [np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8) for _ in range(8)]
    jump = np.full_like(base, 250)
    scheduled = ScheduledSegmenter(segmenter(adaptation__mode="continual", adaptation__safeguards__drift=True))
    for img in calm:
        scheduled.segment(img)
    assert scheduled.stats()["resets"] == {}
    scheduled.segment(jump)
    scheduled.segment(jump)  # the drift seen on the jump frame resets before the next adaptation
    assert scheduled.stats()["resets"] == {"drift": 1}


def test_periodic_reset_is_counted():
    scheduled = ScheduledSegmenter(segmenter(adaptation__mode="continual", adaptation__reset_every=2))
    for img in frames(5):
        scheduled.segment(img)
    assert scheduled.stats()["resets"] == {"periodic": 2}


def _prediction_with(seg, params, image):
    with torch.no_grad():
        for (_, p), v in zip(seg.method.named_params, params):
            p.copy_(v)
    return seg.segment([image]).frames[0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["episodic", "continual"])
def test_async_predictions_use_whole_published_weights_only(mode):
    seg = segmenter(adaptation__schedule="async", adaptation__mode=mode, adaptation__steps=4, adaptation__lr=0.05)
    source = [p.detach().clone() for _, p in seg.method.named_params]
    scheduled = ScheduledSegmenter(seg)
    published = {0: source}
    adapter = scheduled._adapter
    job = adapter.job

    def recording_job(index, images):
        out = job(index, images)
        if out is not None:
            published[out.version] = [t.clone() for t in out.params]
        return out

    adapter.job = recording_job
    original = adapter.method.step_loss

    def slow_step(batch):  # slow steps: predictions run while the weights are half adapted
        time.sleep(0.02)
        return original(batch)

    adapter.method.step_loss = slow_step
    images = frames(8)
    results = []
    for img in images:
        results.append(scheduled.segment(img))
        time.sleep(0.01)
    deadline = time.monotonic() + 30
    while adapter.jobs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    results.append(scheduled.segment(images[0]))
    scheduled.close()
    versions = {r.version for r in results}
    checker = segmenter(adaptation__mode="off")
    assert len(versions) >= 2  # new weights were installed while the segmenter ran
    assert torch.get_num_threads() == 2  # the thread split is undone on close
    for r, img in zip(results, [*images, images[0]]):
        expected = _prediction_with(checker, published[r.version], img)
        assert np.array_equal(r.result.frames[0].labels, expected.labels)
        assert np.array_equal(r.result.frames[0].confidence, expected.confidence)
        assert r.lag is None or r.lag >= 1  # never predicted with weights adapted on itself


@pytest.mark.timeout(120)
def test_schedule_switch_at_run_time():
    seg = segmenter(adaptation__mode="continual")
    scheduled = ScheduledSegmenter(seg)
    scheduled.segment(frames(1)[0])
    scheduled.update(adaptation__schedule="async")
    # the process's thread policy (core/priority.py): prediction keeps its threads, adaptation gets half
    assert scheduled.schedule == "async" and torch.get_num_threads() == THREADS.predict_threads == 2
    assert scheduled.stats()["adapt_threads"] == THREADS.adapt_threads == 1
    assert threading.active_count() >= 2
    for img in frames(4):
        scheduled.segment(img)
    time.sleep(0.2)
    adapter = scheduled._adapter
    scheduled.update(adaptation__schedule="sync")
    assert scheduled._adapter is None and not adapter.thread.is_alive() if adapter.thread else True
    assert torch.get_num_threads() == 2
    # the prediction side carries on from the adaptation side's weights
    for (_, p), (_, q) in zip(seg.method.named_params, adapter.method.named_params):
        assert torch.equal(p, q)
    out = scheduled.segment(frames(1)[0])
    assert out.result.status == "ok" and out.lag == 0


def test_a_plain_segmenter_applies_budgets_and_safeguards_too():
    assert segmenter().method.control is None  # the paper's loop, untouched
    seg = segmenter(adaptation__mode="continual", adaptation__every=2)
    statuses = [seg.segment([img]).status for img in frames(3)]
    assert statuses == ["ok", "skipped", "ok"]


@pytest.mark.timeout(120)
def test_reset_under_async_puts_both_sides_back_to_the_source():
    seg = segmenter(adaptation__schedule="async", adaptation__mode="continual", adaptation__lr=0.05)
    source = [p.detach().clone() for _, p in seg.method.named_params]
    scheduled = ScheduledSegmenter(seg)
    for img in frames(3):
        scheduled.segment(img)
    scheduled.reset()
    for (_, p), (_, q), s in zip(seg.method.named_params, scheduled.method.named_params, source):
        assert torch.equal(p, s) and torch.equal(q, s)
    assert scheduled._adapter.thread.is_alive()  # adaptation carries on after the reset
    scheduled.segment(frames(1)[0])
    scheduled.close()
    assert scheduled.stats()["resets"].get("manual", 0) >= 1


@pytest.mark.timeout(120)
def test_counters_survive_schedule_and_mode_switches():
    # a huge learning rate: the second step's loss is NaN, so every adaptation fails (and is rolled back)
    seg = segmenter(adaptation__mode="continual", adaptation__lr=1e30)
    scheduled = ScheduledSegmenter(seg, threaded=False)  # async jobs run when the test says
    image = frames(1)[0]
    assert scheduled.segment(image).result.status.startswith("restored")  # sync: failure 1
    scheduled.reset()
    scheduled.update(adaptation__schedule="async")
    assert scheduled.adapt_only([image], 1).status.startswith("restored")  # the adaptation side: failure 2
    scheduled.reset()
    scheduled.reset()
    before = scheduled.stats()
    assert (before["resets"], before["failures"]) == ({"manual": 3}, 2)
    for change in ({"adaptation__mode": "episodic"}, {"adaptation__schedule": "sync"},
                   {"adaptation__mode": "continual"}, {"adaptation__schedule": "async"},
                   {"adaptation__schedule": "sync"}, {"adaptation__schedule": "async"}):
        scheduled.update(**change)
        after = scheduled.stats()
        assert after["resets"] == {"manual": 3} and after["resets_total"] == 3, change
        assert (after["failures"], after["last_failure"]) == (2, "non-finite loss"), change
        assert after["frames"] == 1 and after["steps"] == before["steps"], change
    scheduled.reset()  # and they go on counting from there
    assert scheduled.counters()["resets"] == {"manual": 4}
    scheduled.close()
