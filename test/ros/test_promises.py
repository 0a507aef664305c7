"""The node's promises, for one camera and for several, over loopback DDS (a real mlmp-segment
process; the cameras are reliable publishers of depth 10, as a robot's driver would be):

- every frame accounted for: sent = received + lost before the node, received = processed +
  dropped, each drop under its reason, at unequal rates (30 Hz beside 2 Hz);
- no label of an old class list once a class change returned (a frame in flight during the
  change is dropped and counted);
- the overlay's palette follows the class list;
- a burst of service calls is answered in full;
- diagnostics under async say what the adaptation thread did.

Every bound derives from the node's own settings (dev.step_delay), none from the machine's speed.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from std_srvs.srv import SetBool, Trigger

from mlmp_ros.ros.conversions import palette
from mlmp_ros.ros.live import LiveSession
from mlmp_ros.ros.qos import service_qos

from .ros_helpers import CLASSES, TINY, camera_sessions, close_sessions, make_image

TIMEOUT = 120.0
CAMERAS = [pytest.param([], id="one_camera"), pytest.param(["front", "rear"], id="two_cameras"),
           pytest.param(["c0", "c1", "c2", "c3"], id="four_cameras")]
SHORT = ["sky", "road"]  # a class list shorter than CLASSES: an id >= 2 is one of the old list's


def _start(namespace: str, cameras: list[str], parameters: dict, **session) -> list[LiveSession]:
    """The node (the paper file, the tiny model) with reliable depth-10 cameras, as a robot's driver."""
    return camera_sessions(namespace, cameras, {**TINY, "classes": CLASSES, "diagnostics.period": 0.25, **parameters},
                           depth=10, **session)


def _stream(sessions: list[LiveSession], rates: list[float], seconds: float, image: np.ndarray,
            stop: threading.Event | None = None) -> list[list[tuple[float, int]]]:
    """Publish into every camera at its rate for ``seconds`` (or until ``stop``); per camera the
    (monotonic time, stamp) of every frame sent."""
    sent: list[list[tuple[float, int]]] = [[] for _ in sessions]
    start = time.monotonic()
    due = [start] * len(sessions)
    while time.monotonic() - start < seconds and not (stop is not None and stop.is_set()):
        i = min(range(len(sessions)), key=lambda k: due[k])
        time.sleep(max(0.0, due[i] - time.monotonic()))
        now = time.monotonic()
        sent[i].append((now, sessions[i].publish(image)))
        # The next frame one period after this one (not after when this one was due): a sender held up by a
        # loaded machine does not catch up in a burst that would replace a slow camera's frames itself.
        due[i] = max(due[i], now) + 1.0 / rates[i]
    return sent


def _values(live: LiveSession, predicate, timeout: float = TIMEOUT) -> dict[str, int]:
    d = live.wait_for_diagnostics(predicate, timeout)
    return {k: int(v) for k, v in d.values.items() if k.startswith(("frames_", "bad_frames", "frame_errors"))
            and v.lstrip("-").isdigit()}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("cameras", CAMERAS)
def test_every_frame_is_accounted_for_at_unequal_rates(cameras):
    """30 Hz cameras beside 2 Hz ones into a worker that needs >= 50 ms a frame: the fast cameras'
    frames are replaced (and counted), the slow ones are all served, nothing vanishes."""
    params = {"adaptation.steps": 1, "dev.step_delay": 0.05}  # sync, episodic: >= 50 ms a frame
    sessions = _start(f"/mlmp_test_accounting_{len(cameras)}", cameras, params)
    rates = [30.0 if i % 2 == 0 else 2.0 for i in range(len(sessions))]
    try:
        sent = _stream(sessions, rates, 4.0, make_image(60, 80))
        processed: dict[str, tuple[float, int, int]] = {}
        for live, frames, rate in zip(sessions, sent, rates):
            n = len(frames)

            def settled(d, n=n):
                v = d.values
                return int(v["frames_received"]) + int(v["frames_lost_in_dds"]) == n and v["frames_waiting"] == "0"

            v = _values(live, settled)
            assert v["frames_received"] == v["frames_processed"] + v["frames_dropped"], (live.camera, v)
            reasons = ("frames_dropped_replaced", "frames_skipped_by_rate_cap", "frames_dropped_by_class_change",
                       "frames_dropped_disabled", "frames_dropped_inactive", "bad_frames", "frame_errors")
            assert v["frames_dropped"] == sum(v[k] for k in reasons), (live.camera, v)
            assert v["frames_processed"] == len(live.outputs["labels"]), (live.camera, v)
            processed[live.camera] = (rate, n, v["frames_processed"])
        # Round robin: every round serves each camera with a frame waiting, so a slow camera gets at least as
        # many passes as a fast one (whose slot is never empty), or all its frames; whatever the machine's speed.
        fewest_fast = min(p for rate, _, p in processed.values() if rate >= 10)
        for camera, (rate, n, done) in processed.items():
            if rate < 10:
                assert done >= min(n, fewest_fast) - 1, (camera, processed)
        fast = _values(sessions[0], lambda d: True)
        assert fast["frames_dropped_replaced"] > 0  # the node's newest-frame logic did the replacing, counted
        assert sessions[0].wait_for_diagnostics(lambda d: True).values["frames_lost_counted_by"] == "sequence numbers"
    finally:
        close_sessions(sessions)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("cameras", CAMERAS[:2])
def test_no_label_of_an_old_class_list_after_a_change_returns(cameras):
    """A frame is in flight (>= 2 s of adaptation steps) on the first camera when the class list
    changes: its labels, of the old list, are dropped and counted; every output any camera's
    consumer receives after the change returned is of the new list, and label_info came first."""
    params = {"adaptation.steps": 2, "dev.step_delay": 1.0}  # sync, episodic: a frame takes >= 2 s
    sessions = _start(f"/mlmp_test_class_gate_{len(cameras)}", cameras, params)
    first = sessions[0]
    try:
        in_flight = {live.camera: live.publish(make_image(60, 80, seed=1)) for live in sessions}
        first.wait_for_diagnostics(lambda d: float(d.values["frame_in_progress_s"]) > 0, TIMEOUT)
        assert all(r.successful for r in first.set_parameters({"classes": SHORT}))
        returned = time.monotonic()
        after = {live.camera: live.publish(make_image(60, 80, seed=2)) for live in sessions}
        for live in sessions:
            live.wait_for_output(after[live.camera], TIMEOUT)
            info_at = min(t for t, m in list(live.label_infos) if len(m) == len(SHORT))
            late = [o for o in list(live.outputs["labels"].values()) if o.received >= returned]
            assert late, live.camera
            for out in late:
                assert out.received >= info_at and out.array.max() < len(SHORT), (live.camera, out.stamp_ns)
        assert first.output(in_flight[first.camera]) is None  # the frame in flight was dropped ...
        d = first.wait_for_diagnostics(lambda d: d.values["frames_dropped_by_class_change"] == "1", TIMEOUT)
        assert d.values["classes"] == str(len(SHORT))  # ... and counted
    finally:
        close_sessions(sessions)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cameras", CAMERAS[:2])
def test_the_overlay_palette_follows_the_class_list(cameras):
    params = {"adaptation.mode": "off", "output.colored": True, "output.blend": 0.0, "classes": SHORT}
    sessions = _start(f"/mlmp_test_palette_{len(cameras)}", cameras, params, record=("labels", "colored"))
    try:
        assert all(r.successful for r in sessions[0].set_parameters({"classes": CLASSES}))
        for live in sessions:
            live.wait_for_label_info(lambda m: len(m) == len(CLASSES), TIMEOUT)
            stamp = live.publish(make_image(60, 80, seed=3))
            labels, coloured = live.wait_for_output(stamp, TIMEOUT), live.wait_for_output(stamp, TIMEOUT, "colored")
            assert labels.array.max() < len(CLASSES)
            np.testing.assert_array_equal(coloured.array, palette(len(CLASSES))[labels.array], err_msg=live.camera)
    finally:
        close_sessions(sessions)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cameras", CAMERAS[:2])
def test_a_burst_of_service_calls_is_answered_in_full(cameras):
    sessions = _start(f"/mlmp_test_burst_{len(cameras)}", cameras, {"adaptation.steps": 1, "dev.step_delay": 0.2})
    live = sessions[0]
    names = ["reset", "enable"] + [f"{c}/reset" for c in cameras]
    try:
        live.publish(make_image(60, 80))  # a frame in flight: the first reset waits for it, the rest queue
        for name in names:
            srv, request = (SetBool, SetBool.Request(data=True)) if name == "enable" else (Trigger, Trigger.Request())
            # the client's own response queue deep enough for the burst: only the node's queue is tested
            client = live.ros.create_client(srv, f"{live.node_fqn}/{name}", qos_profile=service_qos())
            assert client.wait_for_service(timeout_sec=30.0)
            answered = threading.Semaphore(0)
            futures = [client.call_async(request) for _ in range(30)]
            for future in futures:
                future.add_done_callback(lambda _, sem=answered: sem.release())
            for i in range(30):
                assert answered.acquire(timeout=TIMEOUT), f"{name}: {i} of 30 calls answered"
            assert all(f.result().success for f in futures), name
    finally:
        close_sessions(sessions)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cameras", CAMERAS[:2])
def test_diagnostics_under_async_say_what_the_adaptation_thread_did(cameras):
    params = {"adaptation.schedule": "async", "adaptation.mode": "continual", "adaptation.steps": 2}
    sessions = _start(f"/mlmp_test_async_diag_{len(cameras)}", cameras, params)
    try:
        for live in sessions:
            for i in range(4):
                live.wait_for_output(live.publish(make_image(60, 80, seed=i)), TIMEOUT)
        for live in sessions:
            d = live.wait_for_diagnostics(lambda d: int(d.values["adaptation_steps_total"]) > 0, TIMEOUT)
            v = d.values
            assert v["adaptation_status"] not in ("", "skipped"), v
            assert v["adaptation_steps"] == "2" and float(v["last_loss"]) >= 0, v
            # steps run between predictions count for the next predicted frame
            live.wait_for_output(live.publish(make_image(60, 80, seed=9)), TIMEOUT)
            d = live.wait_for_diagnostics(lambda d: float(d.values["adaptation_steps_per_frame"] or 0) > 0, TIMEOUT)
            assert float(d.values["adaptation_wait_s"]) >= 0
    finally:
        close_sessions(sessions)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cameras", CAMERAS[:2])
def test_bad_frames_and_the_rate_cap_count_on_their_own_camera(cameras):
    """A frame beyond the limits is refused and counted on the camera that sent it (the next one is
    served); frames replaced while input.max_rate_hz holds the worker back count as rate_cap."""
    sessions = _start(f"/mlmp_test_limits_{len(cameras)}", cameras, {"adaptation.steps": 1,
                                                                     "input.max_rate_hz": 1.0})
    first, last = sessions[0], sessions[-1]
    try:
        first.publish(make_image(1, 4000))  # 7999 sliding windows after resize [224]: refused
        d = first.wait_for_diagnostics(lambda d: d.values["bad_frames"] == "1", TIMEOUT)
        assert d.values["last_bad_frame_limit"] == "input.max_windows"
        assert first.wait_for_output(first.publish(make_image(60, 80)), TIMEOUT).height == 60
        if len(sessions) > 1:
            assert last.wait_for_diagnostics(timeout=TIMEOUT).values["bad_frames"] == "0"
        # one frame a second: of a quick burst into the last camera, the waiting ones are replaced
        stamps = [last.publish(make_image(60, 80, seed=i)) for i in range(5)]
        last.wait_for_output(stamps[-1], TIMEOUT)
        d = last.wait_for_diagnostics(lambda d: d.values["frames_waiting"] == "0"
                                      and int(d.values["frames_received"]) >= 5, TIMEOUT)
        v = {k: int(d.values[k]) for k in ("frames_received", "frames_processed", "frames_skipped_by_rate_cap",
                                           "frames_dropped_replaced", "frames_dropped")}
        assert v["frames_skipped_by_rate_cap"] >= 1, v
        assert v["frames_received"] == v["frames_processed"] + v["frames_dropped"], v
    finally:
        close_sessions(sessions)
