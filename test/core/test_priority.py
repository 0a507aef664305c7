"""Prediction first (core/priority.py): claims, safe points, one adapter at a time, the thread
policy, and the diagnostics of what adaptation got.  Checked by the order of events, never by
how long anything took."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from mlmp_ros.core import Segmenter
from mlmp_ros.core.multicamera import MultiCameraSegmenter
from mlmp_ros.core.priority import THREADS, Priority
from mlmp_ros.core.schedule import ScheduledSegmenter

from ..conftest import tiny_clip, tiny_config, torch_threads

SMALL = {"window": [32], "stride": [32], "adaptation__steps": 3, "adaptation__mode": "continual"}


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def segmenter(**overrides) -> Segmenter:
    return Segmenter(tiny_config(**{**SMALL, **overrides}), loaded=tiny_clip(0))


def until(condition, what: str, timeout: float = 60.0) -> None:
    """Wait for ``condition()`` (a bound so a broken build fails instead of hanging)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def _two_threads():
    with torch_threads(2):
        yield
    assert THREADS.users == 0  # every test's segmenters are closed


# ------------------------------------------------------------------ Priority alone
def test_a_waiting_frame_holds_adaptation_until_it_leaves_and_stale_sources_expire():
    now = [0.0]
    priority = Priority(stale_s=2.0, clock=lambda: now[0])
    assert not priority.claimed()
    priority.frame_arrived("front")
    priority.frame_arrived("front")  # arrived while the first one was being predicted
    priority.frame_left("front")
    assert priority.claimed()  # the second still waits
    priority.frame_left("front")
    priority.frame_left("front")  # one too many: no effect
    assert not priority.claimed()
    priority.frame_arrived("rear")
    now[0] = 2.5  # the node never said it left: dropped after stale_s
    assert not priority.claimed()
    with priority.predicting():
        assert priority.claimed()
    assert not priority.claimed() and priority.predictions == 1


def test_the_turn_alternates_between_adapters_and_is_never_held_twice():
    priority = Priority()
    order: list[str] = []
    inside = []

    def adapter(name: str, other: str) -> None:
        priority.acquire(name)
        for _ in range(3):
            priority.checkpoint(name)
            inside.append(name)
            assert priority.holds(name) and not priority.holds(other)
            order.append(name)
            inside.remove(name)
            until(lambda: priority.queued() or done[other].is_set(), f"{other} in line")
        priority.release(name)
        done[name].set()

    done = {"a": threading.Event(), "b": threading.Event()}
    priority.acquire("main")  # both start in line behind the test
    threads = [threading.Thread(target=adapter, args=p) for p in (("a", "b"), ("b", "a"))]
    threads[0].start()
    until(lambda: priority.queued() == 1, "a in line")
    threads[1].start()
    until(lambda: priority.queued() == 2, "b in line")
    priority.release("main")
    for t in threads:
        t.join(60)
    assert order == ["a", "b", "a", "b", "a", "b"]


def test_a_claim_holds_the_adaptation_turn_and_counts_the_wait():
    priority = Priority()
    events: list[str] = []
    with priority.predicting():
        thread = threading.Thread(target=lambda: (priority.acquire("x"), events.append("turn")))
        thread.start()
        until(lambda: priority.held == 1, "the adapter held by the prediction")
        events.append("prediction done")
    thread.join(60)
    assert events == ["prediction done", "turn"]


# ---------------------------------------------------- one segmenter, threaded
@pytest.mark.timeout(120)
def test_a_prediction_claimed_during_a_step_stops_it_at_the_next_safe_point():
    seg = segmenter(adaptation__schedule="async")
    in_step, go = threading.Event(), threading.Event()
    steps = []

    def step_hook():  # on the adaptation thread, at the start of each step
        steps.append(1)
        if len(steps) == 1:
            in_step.set()
            go.wait(60)

    seg.method.step_hook = step_hook
    scheduled = ScheduledSegmenter(seg)
    priority = scheduled.priority
    seen: list[tuple[str, bool]] = []  # (where, claimed) at each LayerNorm of the adapter's blocks
    encoder = scheduled._adapter.method.encoder
    for blk in encoder.blocks:  # after the safe points' hooks: runs once the pause is over
        blk.ln_1.register_forward_pre_hook(lambda m, a: seen.append(("ln", priority.claimed())))
    try:
        scheduled.segment(image(0))  # predicted, then handed to the adaptation thread
        assert in_step.wait(60)
        with priority.predicting():  # a frame is predicted while the step is about to run
            go.set()
            until(lambda: priority.held >= 1, "the adapter paused inside its step")
            seen.append(("released", False))
        until(lambda: scheduled.record.jobs >= 1, "the job to end")
    finally:
        scheduled.close()
    first_ln = next(i for i, (w, _) in enumerate(seen) if w == "ln")
    assert seen[0] == ("released", False) and first_ln > 0  # no LayerNorm ran while the prediction was claimed
    assert not any(claimed for w, claimed in seen if w == "ln")
    assert scheduled.stats()["adapt_wait_s"] > 0


@pytest.mark.timeout(120)
def test_a_frame_waiting_in_the_node_queue_holds_adaptation():
    scheduled = ScheduledSegmenter(segmenter(adaptation__schedule="async"))
    try:
        scheduled.priority.frame_arrived("camera")  # what the node's image callback calls
        scheduled.segment(image(0))
        until(lambda: scheduled.priority.held >= 1, "the adapter waiting for the queued frame")
        assert scheduled.stats()["steps"] == 0 and scheduled.record.jobs == 0
        scheduled.priority.frame_left("camera")
        until(lambda: scheduled.record.jobs >= 1, "the job after the frame left")
    finally:
        scheduled.close()
    assert scheduled.stats()["steps"] == 3


# ------------------------------------------------------------------ several cameras
@pytest.mark.timeout(180)
def test_cameras_share_one_priority_and_adapt_one_at_a_time():
    seg = segmenter(adaptation__schedule="async")
    names = ("a", "b", "c")
    multi = MultiCameraSegmenter(seg, names)
    outside_turn: list[str] = []
    try:
        assert all(multi.scheduled(n).priority is multi.priority for n in names)
        for name in names:
            adapter = multi.scheduled(name)._adapter

            def probe(m, a, adapter=adapter, name=name):
                if not multi.priority.holds(adapter):
                    outside_turn.append(name)

            for blk in adapter.method.encoder.blocks:
                blk.ln_2.register_forward_pre_hook(probe)
        for name in names:
            multi.segment(name, [image(1)])
        until(lambda: all(multi.scheduled(n).record.jobs >= 1 for n in names), "a job of every camera")
    finally:
        multi.close()
    assert outside_turn == []  # every adapter ran its blocks only while it held the one turn
    assert all(multi.scheduled(n).stats()["adapt_last_steps"] == 3 for n in names)


@pytest.mark.timeout(240)
def test_thread_policy_is_applied_once_and_undone_with_four_cameras():
    with torch_threads(8):
        seg = segmenter(adaptation__schedule="async", adaptation__steps=1)
        names = ("a", "b", "c", "d")
        counts: list[int] = []
        seg.method.step_hook = lambda: counts.append(torch.get_num_threads())  # on each adaptation thread
        multi = MultiCameraSegmenter(seg, names)
        try:
            for cycle in range(2):  # async -> sync -> async
                assert THREADS.users == 4 and torch.get_num_threads() == 8
                counts.clear()
                for name in names:
                    multi.segment(name, [image(cycle)])
                until(lambda: len(counts) >= 4, "a step of every camera")
                assert set(counts) == {4}  # each adaptation thread: half of the 8
                assert multi.scheduled("a").stats()["torch_threads"] == 8
                multi.update(adaptation__schedule="sync")
                assert THREADS.users == 0 and torch.get_num_threads() == 8
                multi.segment("a", [image(5)])
                multi.update(adaptation__schedule="async")
        finally:
            multi.close()
        assert THREADS.users == 0 and torch.get_num_threads() == 8


# ------------------------------------------------------------------ diagnostics
def test_stats_say_what_adaptation_got_under_sync():
    scheduled = ScheduledSegmenter(segmenter())
    first = scheduled.stats()
    assert (first["adapt_last_status"], first["adapt_last_loss"], first["adapt_last_steps"]) == ("", None, 0)
    assert first["steps_per_frame"] == 0.0 and first["adapt_wait_s"] == 0.0
    out = scheduled.segment(image(0))
    stats = scheduled.stats()
    assert stats["adapt_last_status"] == "ok" and stats["adapt_last_steps"] == 3
    assert stats["adapt_last_loss"] == pytest.approx(out.result.losses[-1])
    assert stats["steps_per_frame"] == 3.0 and stats["lag_frames"] == 0 and stats["steps"] == 3
    scheduled.update(adaptation__mode="off")
    scheduled.segment(image(1))
    stats = scheduled.stats()
    assert stats["adapt_last_status"] == "skipped" and stats["adapt_last_steps"] == 0
    assert stats["adapt_last_loss"] is None and stats["steps_per_frame"] == 1.5


def test_stats_say_what_adaptation_got_under_async():
    scheduled = ScheduledSegmenter(segmenter(adaptation__schedule="async"), threaded=False)
    try:
        img = image(0)
        scheduled.predict_only([img], 0)
        published = scheduled.adapt_only([img], 0)  # the adaptation thread's job
        scheduled.install(published)
        scheduled.predict_only([img], 1)
        stats = scheduled.stats()
        assert stats["adapt_last_status"] == "ok" and stats["adapt_last_steps"] == 3
        assert stats["adapt_last_loss"] == pytest.approx(published.losses[-1])
        assert stats["steps_per_frame"] == 1.5  # 3 steps over 2 predicted frames
        assert stats["lag_frames"] == 1 and stats["adapt_wait_s"] == 0.0
        # no CUDA streams on the CPU
        assert scheduled._prediction_cuda_stream.cuda_stream is None and scheduled._adapter.cuda_stream is None
    finally:
        scheduled.close()
