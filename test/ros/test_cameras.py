"""Several cameras, one model, over DDS: each camera's labels are the offline Segmenter's on its
frames (world model), continual adaptation on one camera leaves the other's weights alone unless
shared, per-camera resets and diagnostics.  (The promises every camera shares with the single
camera are tested for both in test_promises.py; the inbox's round robin in test_inbox.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from std_srvs.srv import Trigger

from mlmp_ros.ros.live import LiveSession
from mlmp_ros.world import CLASSES, render_scene
from mlmp_ros.world.model import world_config, world_settings
from mlmp_ros.world.shifts import apply_shift
from mlmp_ros.world.train import HELD_OUT_SEED

from .ros_helpers import CLASSES as TINY_CLASSES
from .ros_helpers import PARAMS_FILE, TINY, camera_sessions, close_sessions, make_image

SEED = HELD_OUT_SEED + 500_000
TIMEOUT = 120.0


def _start(namespace: str, parameters: dict, cameras: list[str], params_file=PARAMS_FILE) -> list[LiveSession]:
    return camera_sessions(namespace, cameras, parameters, params_file=params_file)


def test_two_cameras_one_node_each_labelled_as_the_offline_segmenter_does_batched_too():
    import torch

    from mlmp_ros.core import Segmenter

    scenes = {"front": [render_scene(SEED + i, 240, 320) for i in range(2)],
              "rear": [render_scene(SEED + 10 + i, 240, 320) for i in range(2)]}
    torch.set_num_threads(1)
    seg = Segmenter(world_config(**{"adaptation.method": "noadapt"}))
    offline = {cam: [seg.segment([s.image]).frames[0].labels for s in frames] for cam, frames in scenes.items()}
    # fp32 as the offline Segmenter (the node's own default, precision auto, may take bf16)
    # A rate cap of one pass every 4 s: the second pair of frames waits for it together, and is batched.
    params = {**world_settings(), "device": "cpu", "adaptation.method": "noadapt", "precision": "fp32",
              "input.max_rate_hz": 0.25, "diagnostics.period": 0.5}
    sessions = _start("/mlmp_test_two_cameras", params, ["front", "rear"])
    try:
        for live in sessions:
            assert live.wait_for_label_info(lambda m: len(m) == len(CLASSES), TIMEOUT) == dict(enumerate(CLASSES))
        for i in range(2):
            stamps = {live.camera: live.publish(scenes[live.camera][i].image) for live in sessions}  # together
            for live in sessions:
                out = live.wait_for_output(stamps[live.camera], TIMEOUT)
                assert (out.height, out.width) == (240, 320)
                np.testing.assert_array_equal(out.array, offline[live.camera][i], err_msg=live.camera)
        for live in sessions:
            d = live.wait_for_diagnostics(lambda d: int(d.values["frames_processed"]) >= 2, TIMEOUT)
            assert d.values["camera"] == live.camera and d.values["input_topic"].endswith(f"{live.camera}/image")
            assert d.values["last_frame_status"] == "batched x2"  # the second pair went through one pass
    finally:
        close_sessions(sessions)


def _fogged(i: int) -> np.ndarray:
    return apply_shift(make_image(60, 80, seed=i), "fog", 0.8, np.random.default_rng(i))


def _shift(live: LiveSession, frames: int) -> float:
    d = live.wait_for_diagnostics(lambda d: int(d.values["frames_processed"]) >= frames, TIMEOUT)
    return float(d.values["adaptation_weight_shift"])


@pytest.mark.parametrize("share", ["none", "cameras"])
def test_continual_adaptation_on_one_camera_leaves_the_other_alone_unless_shared(share):
    params = {**TINY, "classes": TINY_CLASSES, "adaptation.mode": "continual", "adaptation.steps": 1,
              "adaptation.lr": 0.01, "adaptation.share": share, "diagnostics.period": 0.2}
    sessions = _start(f"/mlmp_test_cameras_{share}", params, ["front", "rear"])
    front, rear = sessions
    try:
        front.wait_for_output(front.publish(_fogged(0)), TIMEOUT)  # the fog reaches the front camera first
        first = _shift(front, 1)
        front.wait_for_output(front.publish(_fogged(1)), TIMEOUT)
        adapted = _shift(front, 2)
        assert 0 < first != adapted
        assert _shift(rear, 0) == (0.0 if share == "none" else pytest.approx(adapted))
        rear.wait_for_output(rear.publish(_fogged(0)), TIMEOUT)  # the same first frame on the rear camera
        if share == "none":  # from the source, as the front camera's first frame was; front untouched
            assert _shift(rear, 1) == pytest.approx(first, rel=1e-4) and _shift(front, 2) == adapted
            answer = front._call(Trigger, f"{front.node_fqn}/front/reset", Trigger.Request(), TIMEOUT)
            assert answer.success and "front" in answer.message
            assert _shift(front, 2) == 0.0 and _shift(rear, 1) == pytest.approx(first, rel=1e-4)
        else:  # one state: the rear frame went on from the front camera's weights
            shared = _shift(rear, 1)
            assert shared != pytest.approx(first, rel=1e-4) and _shift(front, 2) == pytest.approx(shared)
            assert rear.reset().success  # ~/reset: every camera (here the one shared state)
            assert _shift(rear, 1) == 0.0 and _shift(front, 2) == 0.0
    finally:
        close_sessions(sessions)


def test_the_robot_defaults_run_several_cameras_each_adapting_on_its_own_thread():
    """No parameter file: the packaged robot file (async, continual, safeguards), per camera."""
    params = {**TINY, "classes": TINY_CLASSES, "adaptation.steps": 1, "diagnostics.period": 0.2}
    sessions = _start("/mlmp_test_cameras_robot", params, ["left", "right"], params_file=None)
    try:
        for live in sessions:
            assert live.get_parameters(["adaptation.schedule"]) == {"adaptation.schedule": "async"}
        for i in range(3):
            for live in sessions:
                out = live.wait_for_output(live.publish(_fogged(i)), TIMEOUT)
                assert (out.height, out.width) == (60, 80)
        for live in sessions:
            d = live.wait_for_diagnostics(lambda d: int(d.values["frames_processed"]) >= 3, TIMEOUT)
            assert d.values["adaptation_schedule"] == "async" and d.values["adaptation_shared"] == "False"
    finally:
        close_sessions(sessions)


def test_enable_switches_every_camera():
    from std_srvs.srv import SetBool

    sessions = _start("/mlmp_test_cameras_enable", {**TINY, "classes": TINY_CLASSES, "adaptation.steps": 1},
                      ["left", "right"])
    front = sessions[0]
    topics = [f"/mlmp_test_cameras_enable/{c}/image" for c in ("left", "right")]
    try:
        off = front._call(SetBool, f"{front.node_fqn}/enable", SetBool.Request(data=False), TIMEOUT)
        assert off.success
        front.wait_until(lambda: all(front.ros.count_subscribers(t) == 0 for t in topics), 30.0, "unsubscribed")
        on = front._call(SetBool, f"{front.node_fqn}/enable", SetBool.Request(data=True), TIMEOUT)
        assert on.success
        front.wait_until(lambda: all(front.ros.count_subscribers(t) == 1 for t in topics), 30.0, "subscribed")
        for live in sessions:
            live.wait_for_output(live.publish(make_image(60, 80)), TIMEOUT)
    finally:
        close_sessions(sessions)
