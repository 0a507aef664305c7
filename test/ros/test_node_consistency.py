"""Outputs that never contradict what the node says: a class change is atomic for consumers,
counters and the stall watchdog follow schedule switches, and a burst of service calls is
answered in full.  Slow frames come from dev.step_delay (the races are certain, not probable);
every bound derives from that delay, none from the machine's speed."""

from __future__ import annotations

import threading
import time

import pytest

from .ros_helpers import CLASSES, in_process_node, make_image, node_session
from .test_conversions import raw_image

NAMESPACE = "mlmp_test_consistency"
TIMEOUT = 90.0
DELAY = 1.5  # dev.step_delay: seconds before each adaptation step
NEW_CLASSES = ["sky", "rock"]
ERROR = 2  # DiagnosticStatus.ERROR

pytest.importorskip("rclpy")


@pytest.fixture(scope="module")
def live():
    params = {"adaptation.method": "tent", "adaptation.mode": "continual", "adaptation.steps": 2,
              "diagnostics.period": 0.5, "diagnostics.stall_warn_factor": 2.5,
              "diagnostics.stall_error_factor": 4.0}  # fmt: skip
    with node_session(NAMESPACE, params) as session:
        yield session


_stamps = iter(range(1_760_000_000 * 10**9, 1_800_000_000 * 10**9, 10**6))


def publish(live, seed: int = 0) -> int:
    msg = raw_image(make_image(48, 64, seed=seed), "rgb8")
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(next(_stamps), 10**9)
    return live.publish(msg)


def send(live, seed: int = 0):
    return live.wait_for_output(publish(live, seed), TIMEOUT, "labels")


def configure(live, **params):
    results = live.set_parameters({k.replace("__", "."): v for k, v in params.items()})
    assert all(r.successful for r in results), [r.reason for r in results]


def counter(diag, key: str) -> int:
    return int(diag.values[key])


def manual_resets(diag) -> int:
    reasons = dict(kv.split("=") for kv in diag.values["resets_by_reason"].split(", ") if kv)
    return int(reasons.get("manual", 0))


@pytest.mark.timeout(240)
def test_no_output_of_the_old_class_list_is_published_after_a_class_change_returns(live):
    # episodic from the source on one image: every frame gets the same labels until the classes change
    configure(live, adaptation__schedule="sync", adaptation__mode="episodic", adaptation__steps=2,
              dev__step_delay=DELAY, classes=CLASSES)  # fmt: skip
    try:
        live.wait_for_label_info(lambda m: len(m) == len(CLASSES), TIMEOUT)
        send(live, 1)  # whatever an earlier test left in the node is done: it is idle until `first`
        first = publish(live)
        # the worker is inside `first` (it takes >= 2 DELAY): `second` waits in its slot, replacing nothing
        live.wait_for_diagnostics(lambda d: float(d.values["frame_in_progress_s"]) > 0, TIMEOUT)
        second = publish(live)
        old = live.wait_for_output(first, TIMEOUT)
        assert old.array.max() >= len(NEW_CLASSES)  # the old list's labels show ids the new list does not have
        # `second` was taken the moment `first` was published and needs >= 2 DELAY: the change comes mid-frame
        configure(live, classes=NEW_CLASSES)
        returned = time.monotonic()
        third = publish(live)
        for kind in ("labels", "confidence"):
            live.wait_for_output(third, TIMEOUT, kind)
        info_at = min(t for t, m in list(live.label_infos) if len(m) == len(NEW_CLASSES))
        for kind in ("labels", "confidence"):
            late = [o for o in list(live.outputs[kind].values()) if o.received >= returned]
            assert late, kind
            for out in late:  # every output received after the change returned is of the new list
                assert out.received >= info_at, (kind, out.stamp_ns)  # label_info came first
                if kind == "labels":
                    assert out.array.max() < len(NEW_CLASSES), out.stamp_ns
        assert live.output(second) is None  # the frame in flight was dropped ...
        diag = live.wait_for_diagnostics(lambda d: counter(d, "frames_dropped_by_class_change") >= 1, 30.0,
                                         after=returned)  # ... and counted
        assert diag.values["classes"] == str(len(NEW_CLASSES))
    finally:
        configure(live, dev__step_delay=0.0, classes=CLASSES, adaptation__mode="continual")


@pytest.mark.timeout(240)
def test_resets_by_reason_survive_schedule_and_mode_switches(live):
    configure(live, adaptation__schedule="async", adaptation__mode="continual", dev__step_delay=0.0)
    send(live)
    before = live.wait_for_diagnostics(lambda d: d.values["adaptation_schedule"] == "async", 30.0)
    for _ in range(3):
        assert live.reset().success
    for seed, change in enumerate(({"adaptation__schedule": "sync"}, {"adaptation__mode": "episodic"},
                                   {"adaptation__mode": "continual"}, {"adaptation__schedule": "async"})):
        configure(live, **change)
        sent = time.monotonic()
        send(live, seed)  # a frame between two changes: each is applied on its own, not merged with the next
    # a report that covers the last frame: published after the last switch was complete
    done = counter(before, "frames_processed") + 4
    diag = live.wait_for_diagnostics(lambda d: counter(d, "frames_processed") >= done, 30.0, after=sent)
    assert diag.values["adaptation_schedule"] == "async"
    assert counter(diag, "resets") == counter(before, "resets") + 3
    assert manual_resets(diag) == manual_resets(before) + 3
    assert counter(diag, "frames_received") >= counter(before, "frames_received") + 4


class Camera:
    """Frames at about 10 Hz on a thread while the test watches (the stall watchdog needs input)."""

    def __init__(self, live):
        self.live = live
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seed = 100
        while not self.stop.wait(0.1):
            publish(self.live, seed)
            seed += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10.0)


@pytest.mark.timeout(240)
def test_the_stall_watchdog_expects_the_frame_time_of_the_active_schedule(live):
    # sync: a frame adapts one step of >= DELAY; async: frames are only predicted (the slow step is
    # on the adaptation thread), far faster.  The error factor is 4 (fixture).
    configure(live, adaptation__schedule="sync", adaptation__mode="continual", adaptation__steps=1,
              dev__step_delay=DELAY)  # fmt: skip
    try:
        for seed in range(2):
            send(live, seed)
        configure(live, adaptation__schedule="async")
        for seed in range(15):  # the async frame time is learnt: a sync frame is many of those
            send(live, seed)
        configure(live, adaptation__schedule="sync")
        switched = time.monotonic()
        processed = counter(live.wait_for_diagnostics(after=switched, timeout=30.0), "frames_processed")
        with Camera(live):  # two sync frames finish (>= 2 DELAY) while frames keep arriving
            live.wait_for_diagnostics(lambda d: counter(d, "frames_processed") >= processed + 2
                                      and d.values["adaptation_schedule"] == "sync", TIMEOUT, after=switched)  # fmt: skip
        seen = [d for d in list(live.diagnostics) if d.received >= switched]
        assert any(float(d.values["frame_in_progress_s"]) > 0 for d in seen)  # a sync frame was watched
        stalls = [d.message for d in seen if d.level >= ERROR]
        assert not stalls, stalls
    finally:
        configure(live, adaptation__schedule="sync", adaptation__steps=2, dev__step_delay=0.0)


@pytest.mark.timeout(180)
def test_a_burst_of_reset_calls_is_answered_in_full():
    """ROS's default service queue keeps 10 requests: the 11th of a burst would never be answered."""
    from std_srvs.srv import Trigger

    from mlmp_ros.ros.conversions import array_to_image
    from mlmp_ros.ros.inbox import ReceivedFrame

    burst = 30
    with in_process_node("mlmp_test_service_burst", {"dev.step_delay": 2 * DELAY}) as n:
        # a frame adapting for >= 2 DELAY: the first ~/reset waits for it, the others queue behind it
        counters = n.node.pipelines[""].counters
        n.node.inbox.put_frame("", ReceivedFrame(array_to_image(make_image(48, 64), "rgb8"), time.perf_counter()))
        deadline = time.monotonic() + TIMEOUT
        while counters.busy_since is None:
            assert time.monotonic() < deadline, "the worker did not take the frame"
            time.sleep(0.01)
        client = n.client.create_client(Trigger, n.node.resolve_service_name("~/reset"))
        assert client.wait_for_service(timeout_sec=TIMEOUT)
        answered = threading.Semaphore(0)
        futures = [client.call_async(Trigger.Request()) for _ in range(burst)]
        for future in futures:
            future.add_done_callback(lambda _: answered.release())
        for i in range(burst):
            assert answered.acquire(timeout=TIMEOUT), f"{i} of {burst} calls answered"
        assert all(f.result().success for f in futures)
        assert counters.processed == 1  # the frame finished; the resets came after it
