"""Adaptation schedules through a real node: async under slow adaptation, a switch back to sync,
and a collapse reset reported in /diagnostics.  Slowness comes from dev.step_delay, never from
the machine's speed."""

from __future__ import annotations

import time

import pytest

from .ros_helpers import make_image, node_session
from .test_conversions import raw_image

NAMESPACE = "mlmp_test_streaming"
TIMEOUT = 90.0

pytest.importorskip("rclpy")


@pytest.fixture(scope="module")
def live():
    params = {"adaptation.method": "tent", "adaptation.mode": "continual", "adaptation.steps": 2,
              "diagnostics.period": 0.5}  # fmt: skip
    with node_session(NAMESPACE, params) as session:
        yield session


_stamps = iter(range(1_760_000_000 * 10**9, 1_800_000_000 * 10**9, 10**6))


def send(live, seed: int = 0):
    msg = raw_image(make_image(48, 64, seed=seed), "rgb8")
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(next(_stamps), 10**9)
    msg.header.frame_id = "camera_optical"
    stamp = live.publish(msg)
    return live.wait_for_output(stamp, TIMEOUT, "labels")


def configure(live, **params):
    results = live.set_parameters({k.replace("__", "."): v for k, v in params.items()})
    assert all(r.successful for r in results), [r.reason for r in results]


def diagnostics_after(live, sent: float, check=lambda d: True):
    return live.wait_for_diagnostics(check, timeout=30.0, after=sent)


@pytest.mark.timeout(240)
def test_async_answers_while_adaptation_is_slow_and_switches_back_to_sync(live):
    configure(live, adaptation__schedule="sync", dev__step_delay=0.0, adaptation__safeguards__collapse=False)
    send(live)
    # every adaptation step now takes at least 5 s: under async, frames are answered without waiting
    configure(live, adaptation__schedule="async", dev__step_delay=5.0)
    sent = time.monotonic()
    for seed in range(3):
        assert send(live, seed).array.shape == (48, 64)
    # the three answers came before the first adaptation under async finished (it needs >= 10 s):
    # the last one (frame 3) was predicted with the weights adapted on frame 0, under sync
    diag = diagnostics_after(live, sent, lambda d: d.values["adaptation_lag_frames"] == "3")
    assert diag.values["adaptation_schedule"] == "async"
    assert int(diag.values["frames_processed"]) >= 4
    # a refused value leaves the schedule alone
    refused = live.set_parameters({"adaptation.schedule": "later"})[0]
    assert not refused.successful and "adaptation.schedule" in refused.reason
    # back to sync: the adaptation thread is cancelled between steps; frames adapt on themselves again
    configure(live, adaptation__schedule="sync", dev__step_delay=0.0)
    send(live, 5)
    sent = time.monotonic()
    send(live, 6)
    diag = diagnostics_after(live, sent, lambda d: d.values["adaptation_schedule"] == "sync"
                             and d.values["adaptation_lag_frames"] == "0")  # fmt: skip
    assert diag.values["adaptation_status"] == "ok"
    assert live.node.alive()
    assert "adaptation thread failed" not in live.node.log()


@pytest.mark.timeout(240)
def test_a_collapse_triggers_a_reset_that_is_reported(live):
    # the tiny random model's predictions have a normalised entropy near 0.7: with a threshold of
    # 0.99 every moving average is a collapse, so a continual stream resets after 3 observations
    configure(live, adaptation__schedule="sync", dev__step_delay=0.0, adaptation__safeguards__collapse=True,
              adaptation__safeguards__collapse_entropy=0.99)  # fmt: skip
    try:
        for seed in range(5):
            send(live, seed)
        sent = time.monotonic()
        send(live, 9)
        diag = diagnostics_after(live, sent, lambda d: "collapse=" in d.values["resets_by_reason"])
        assert int(diag.values["resets_by_reason"].split("collapse=")[1].split(",")[0]) >= 1
    finally:
        configure(live, adaptation__safeguards__collapse=False)
