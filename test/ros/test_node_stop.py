"""Long frames: a stuck worker shows in /diagnostics, and SIGINT / SIGTERM during a frame of more
than 30 s end the node promptly, with exit status 0 and no false error lines.

The frames are made slow with the test-only parameter ``dev.step_delay`` (seconds of sleep
before every adaptation step), so the tests do not depend on the machine's speed.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import numpy as np

from .ros_helpers import make_image, node_session

TIMEOUT = 90.0
STOP_BOUND = 25.0  # the node used to wait 30 s for the frame and then abort (exit 134)


def keep_publishing(live, stop: threading.Event, period: float = 0.3) -> threading.Thread:
    """A camera that keeps sending frames (the node only stalls while input arrives)."""
    def run():
        i = 0
        while not stop.is_set():
            try:
                live.publish(make_image(48, 64, seed=i))
            except Exception:  # noqa: BLE001 - the session is closing
                return
            i += 1
            stop.wait(period)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def stop_with(live, sig: int) -> tuple[int, float, str]:
    """Send ``sig`` to the node; its exit code, seconds to exit and its log."""
    proc = live.node.process
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(STOP_BOUND + 20)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait(10)
    return code, time.monotonic() - sent, live.node.log()


def check_clean_exit(code: int, took: float, log: str) -> None:
    assert code == 0, f"exit status {code}\n{log[-3000:]}"
    assert took < STOP_BOUND, f"took {took:.1f} s to stop\n{log[-3000:]}"
    for bad in ("[ERROR]", "terminate called", "Traceback", "context is invalid"):
        assert bad not in log, f"'{bad}' in the log\n{log[-3000:]}"


def test_a_stuck_worker_is_reported_and_sigint_stops_it_cleanly():
    params = {"adaptation.steps": 2, "diagnostics.period": 0.5,
              "diagnostics.stall_warn_factor": 3.0, "diagnostics.stall_error_factor": 8.0}
    with node_session("mlmp_test_stall", params) as live:
        frames = [(1_700_000_000 * 10**9 + i, make_image(48, 64, seed=i)) for i in range(3)]
        result = live.play(frames, paced=True, timeout=TIMEOUT)
        assert result.processed == 3
        diag = live.wait_for_diagnostics(lambda d: d.values["expected_frame_ms"] != "", timeout=10.0)
        assert diag.level <= 1 and "no frame finished" not in diag.message
        expected = float(diag.values["expected_frame_ms"]) / 1e3
        # Every step now sleeps long enough for the frame to take 60 s or more.
        delay = max(30.0, 10 * expected)
        assert live.set_parameters({"dev.step_delay": delay})[0].successful
        stop = threading.Event()
        camera = keep_publishing(live, stop)
        try:
            warn = live.wait_for_diagnostics(lambda d: "no frame finished" in d.message, timeout=delay)
            assert warn.level >= 1
            error = live.wait_for_diagnostics(lambda d: d.level == 2 and "no frame finished" in d.message,
                                              timeout=delay)
            assert float(error.values["frame_in_progress_s"]) > 8.0 * float(error.values["expected_frame_ms"]) / 1e3
            assert float(error.values["time_since_last_output_s"]) >= float(error.values["frame_in_progress_s"]) - 1.0
            assert int(error.values["frames_received"]) > 3  # input kept arriving
            # Now stop it in the middle of the long frame.
            code, took, log = stop_with(live, signal.SIGINT)
        finally:
            stop.set()
            camera.join(5.0)
        check_clean_exit(code, took, log)


def test_sigterm_during_a_frame_of_more_than_30_s_ends_the_node_cleanly():
    # Two steps of 20 s: a frame of at least 40 s.
    params = {"adaptation.steps": 2, "diagnostics.period": 0.5, "dev.step_delay": 20.0}
    with node_session("mlmp_test_sigterm", params) as live:
        sent = time.monotonic()
        live.publish(make_image(48, 64, seed=1))
        diag = live.wait_for_diagnostics(lambda d: float(d.values["frame_in_progress_s"]) > 0.5, timeout=TIMEOUT,
                                         after=sent)
        assert diag.values["frames_processed"] == "0"
        code, took, log = stop_with(live, signal.SIGTERM)
        check_clean_exit(code, took, log)
        assert not live.outputs["labels"]  # the cancelled frame was not published
        assert np.isfinite(took)
