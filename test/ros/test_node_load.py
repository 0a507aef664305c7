"""A slow node under a 30 Hz flood, and the input QoS following the camera.

The frames are made slow on any machine with the test-only parameter ``dev.step_delay``
(a sleep before each adaptation step): every frame takes at least ``MIN_FRAME`` seconds,
so the bounds below follow from that known delay, not from the speed of the CPU.
"""

from __future__ import annotations

import statistics

import pytest
from sensor_msgs.msg import Image

from mlmp_ros.ros.conversions import array_to_image

from .ros_helpers import best_effort_camera, make_image, node_session

NAMESPACE = "mlmp_test_load"
FLOOD_FRAMES = 150  # 5 s at 30 Hz
MiB = 2**20
STEPS, STEP_DELAY = 2, 0.25
MIN_FRAME = STEPS * STEP_DELAY  # seconds: a lower bound of every frame's time, by construction


@pytest.fixture(scope="module")
def live():
    params = {"adaptation.steps": STEPS, "dev.step_delay": STEP_DELAY, "diagnostics.period": 0.5}
    with node_session(NAMESPACE, params, rss_period=0.25) as session:
        yield session


def counters(diag) -> dict[str, int]:
    return {k: int(diag.values[f"frames_{k}"]) for k in ("received", "processed", "dropped")}


def test_a_flood_keeps_one_frame_in_flight_and_memory_flat(live):
    # Set here too: another test of the module may have changed them (tests run in any order).
    assert all(r.successful for r in live.set_parameters({"adaptation.steps": STEPS, "dev.step_delay": STEP_DELAY}))
    frame = make_image(480, 640, seed=3)
    warm = live.play(((0, frame) for _ in range(4)), paced=True, restamp=True, timeout=120.0)
    assert warm.processed == 4
    # The frame time on this machine: never below MIN_FRAME (the sleeps), more on a slow or busy CPU.
    frame_time = max(warm.latencies[1:])
    assert min(warm.latencies[1:]) >= MIN_FRAME, warm.latencies
    before = counters(live.wait_for_diagnostics())

    result = live.play(((0, frame) for _ in range(FLOOD_FRAMES)), rate_hz=30.0, restamp=True, timeout=120.0)
    assert result.published == FLOOD_FRAMES
    # Never faster than asked (a busy machine may publish slower: the send times move, the play does not burst).
    assert result.input_rate_hz <= 30.0 * 1.05
    assert result.frames[-1].labels is not None, "the last frame was never processed"
    # One frame in flight: the model keeps its own pace (at most one frame per MIN_FRAME) and the rest is
    # dropped. Frames come faster than 1 / MIN_FRAME, so most of them are dropped.
    duration = result.finished - result.started
    assert result.processed <= duration / MIN_FRAME + 2
    assert result.dropped > 0
    # No queue: latency stays about one to two frame times instead of growing with the flood (a queue of
    # 150 frames at >= 0.5 s each would reach tens of seconds). One frame may stall on a busy 2-core machine.
    latencies = sorted(result.latencies)
    assert latencies[-2] < 3 * frame_time + 1.0, (result.latencies, frame_time)
    assert latencies[-1] < 6 * frame_time + 2.0, (result.latencies, frame_time)
    first_half, second_half = result.latencies[: len(result.latencies) // 2], result.latencies[len(result.latencies) // 2:]
    assert statistics.median(second_half) < statistics.median(first_half) + frame_time

    after = live.wait_for_diagnostics(
        lambda d: int(d.values["frames_processed"]) >= before["processed"] + result.processed, timeout=10.0
    )
    delta = {k: v - before[k] for k, v in counters(after).items()}
    assert delta["processed"] == result.processed
    assert delta["dropped"] > 0 and delta["received"] == delta["processed"] + delta["dropped"]
    # Keep-last 1 in DDS may also overwrite a frame before the node takes it: never more than sent.
    assert delta["received"] <= FLOOD_FRAMES
    assert float(after.values["input_rate_hz"]) >= 0 and after.values["frame_errors"] == "0"

    # Memory is flat over the flood: a queue of these frames would add ~0.9 MiB each.
    rss = [b for _, b in result.rss]
    assert len(rss) >= 10
    growth = max(rss) - rss[0]
    assert growth < 64 * MiB, f"RSS grew by {growth / MiB:.0f} MiB during the flood"


def test_auto_reliability_follows_a_best_effort_camera(live):
    assert live.set_parameters({"adaptation.steps": 1, "dev.step_delay": 0.0})[0].successful
    assert live.wait_for_diagnostics().values["input_reliability"] == "reliable"
    camera = best_effort_camera(live, Image)
    try:
        live.wait_for_diagnostics(lambda d: d.values["input_reliability"] == "best_effort", timeout=15.0)
            # Frames from the best-effort camera are segmented (best effort may lose one: retry).
        for attempt in range(10):
            msg = array_to_image(make_image(240, 320, seed=attempt), "rgb8")
            msg.header.stamp.sec, msg.header.stamp.nanosec = 1_000 + attempt, 0
            camera.publish(msg)
            try:
                out = live.wait_for_output((1_000 + attempt) * 10**9, 10.0)
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("no frame from the best-effort camera was segmented")
        assert (out.width, out.height) == (320, 240)
        assert live.wait_for_diagnostics().values["incompatible_qos_events"] == "0"
    finally:
        live.ros.destroy_publisher(camera)
    # With only reliable publishers left, the input goes back to reliable.
    live.wait_for_diagnostics(lambda d: d.values["input_reliability"] == "reliable", timeout=15.0)
