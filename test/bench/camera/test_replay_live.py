"""replay-live against a real node process over loopback DDS: offline scores, camera-rate scores, settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlmp_ros.bench.data.make_bags import make_bag
from mlmp_ros.bench.data.registry import open_dataset
from mlmp_ros.bench.offline.frames import load_frames
from mlmp_ros.bench.offline.options import segmenter_config
from mlmp_ros.bench.offline.trial import run_trial
from mlmp_ros.bench.scoring.metrics import SegmentationMetrics
from mlmp_ros.core import Segmenter

from ...conftest import tiny_clip, tiny_config
from ..suite.test_runner import write_voc

pytest.importorskip("rclpy")


@pytest.mark.timeout(300)
def test_replay_live_scores_equal_the_offline_run(tmp_path):
    from safetensors.torch import save_file

    from mlmp_ros.bench.camera.replay_live import replay_live

    write_voc(tmp_path / "voc", n=4)
    bag = make_bag(open_dataset("voc20", tmp_path / "voc"), "gaussian_noise", tmp_path / "bags" / "voc20", progress=False)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip(0).model.state_dict().items()}, str(weights))
    config = tiny_config(weights=str(weights), adaptation__steps=2)

    frames = load_frames(bag)
    offline = Segmenter(segmenter_config(config, frames.info))
    expected = run_trial(offline, frames, seed=0, batch_size=1, shuffle=False).metrics

    report = replay_live(bag, config, tmp_path / "live", paced=True, timeout=120)
    assert report["frames_published"] == 4 and report["frames_dropped"] == 0
    assert report["frames_scored"] == 4
    live = report["metrics"]
    assert live["raw"] == expected["raw"]
    assert live["IoU"] == expected["IoU"]
    assert report["latency_median_ms"] > 0
    assert (tmp_path / "live" / "outputs" / "metadata.yaml").is_file()


def read_labels(outputs_bag) -> dict[int, np.ndarray]:
    """The labels the node published, by header stamp, read back from the recorded bag."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Image

    from mlmp_ros.constants import RECORDED_TOPICS
    from mlmp_ros.ros.conversions import image_to_array

    out = {}
    with Reader(outputs_bag) as reader:
        conns = [c for c in reader.connections if c.topic == RECORDED_TOPICS["labels"]]
        for _, stamp, raw in reader.messages(connections=conns):
            out[stamp] = image_to_array(deserialize_message(bytes(raw), Image))
    return out


@pytest.mark.timeout(300)
def test_camera_rate_scores_of_a_slowed_node_use_the_labels_received_before_each_frame(tmp_path):
    """Two chained bags at 10 Hz into a node slowed by dev.step_delay (>= 0.3 s a frame): it drops
    frames, every sent frame is scored with the newest labels received before it was sent, and the
    report's scores equal a recomputation from the outputs bag and the recorded send/receive times."""
    from mlmp_ros.bench.camera.replay_live import replay_live

    write_voc(tmp_path / "voc", n=10)
    bags = [make_bag(open_dataset("voc20", tmp_path / "voc"), c, tmp_path / "bags" / c, progress=False)
            for c in ("original", "fog")]  # fmt: skip
    config = tiny_config(adaptation__steps=2, adaptation__method="tent")
    report = replay_live(bags, config, tmp_path / "live", rate_hz=10, timeout=120,
                         node_parameters={"dev.step_delay": 0.15, "diagnostics.period": 0.5})  # fmt: skip

    assert report["frames_published"] == 20
    assert [s["segment"] for s in report["segments"]] == ["voc20/original", "voc20/fog"]
    timeline, processed = report["timeline"], report["processed"]
    assert len(timeline) == 20 and len(processed) == report["frames_processed"] == report["frames_scored"]
    # slowed: the node drops frames, and frames are shown labels of frames before them
    assert report["frames_dropped"] >= 1
    assert timeline[0]["shown"] is None  # nothing on the topic before the first frame
    assert all(t["shown"] is None or t["shown"] < t["frame"] for t in timeline)
    assert report["label_age_frames_max"] >= 2
    stale = [t for t in timeline if t["shown"] is not None and t["frame"] - t["shown"] >= 2]
    assert stale  # a frame scored with labels at least two frames old
    # the node's counters from /diagnostics: episodic sync, 2 steps per processed frame, no reset
    assert report["node_diagnostics"]["adaptation_schedule"] == "sync"
    assert report["adaptation_steps"] == 2 * report["frames_processed"]
    assert report["resets"] == 0

    # the same scores, recomputed here from the recorded outputs and the send/receive times
    labels = read_labels(tmp_path / "live" / "outputs")
    assert set(labels) == {p["stamp_ns"] for p in processed}
    truth = [lab for b in bags for lab in load_frames(b).labels]
    info = load_frames(bags[0]).info
    nc, ignore = info["num_classes"], info.get("ignore_index", 255)
    camera = SegmentationMetrics(nc, ignore)
    per_segment = {s: SegmentationMetrics(nc, ignore) for s in ("voc20/original", "voc20/fog")}
    for t, gt in zip(timeline, truth):
        on_topic = [p for p in processed if p["received_s"] <= t["sent_s"]]
        newest = max(on_topic, key=lambda p: p["received_s"]) if on_topic else None
        assert t["shown"] == (newest["frame"] if newest else None)
        pred = labels[newest["stamp_ns"]] if newest else np.full(gt.shape, nc, np.int32)
        camera.update(pred, gt)
        per_segment[t["segment"]].update(pred, gt)
    assert report["metrics_camera"]["raw"] == camera.compute()["raw"]
    assert report["miou_camera"] == camera.compute()["mIoU"]
    assert [s["miou_camera"] for s in report["segments"]] == [m.compute()["mIoU"] for m in per_segment.values()]
    assert report["frames_without_labels"] == sum(t["shown"] is None for t in timeline)
    own = SegmentationMetrics(nc, ignore)
    for p in processed:
        own.update(labels[p["stamp_ns"]], truth[p["frame"]])
    assert report["metrics"]["raw"] == own.compute()["raw"]


def test_node_overrides_carry_the_streaming_settings():
    from mlmp_ros.bench.camera.replay_live import node_overrides

    config = tiny_config(adaptation__schedule="async", adaptation__every=3, adaptation__budget_ms=250.0,
                         adaptation__safeguards__collapse=True, adaptation__safeguards__ensemble_alpha=0.99)  # fmt: skip
    params = node_overrides(config)
    assert params["adaptation.schedule"] == "async" and params["adaptation.every"] == 3
    assert params["adaptation.budget_ms"] == 250.0
    assert params["adaptation.safeguards.collapse"] is True and params["adaptation.safeguards.ensemble_alpha"] == 0.99


@pytest.mark.timeout(300)
def test_replay_live_command_runs_the_node_with_the_schedule_given(tmp_path, capsys):
    from mlmp_ros.bench.cli.main import main

    write_voc(tmp_path / "voc", n=2)
    bag = make_bag(open_dataset("voc20", tmp_path / "voc"), "original", tmp_path / "bags" / "voc20", progress=False)
    code = main(["replay-live", str(bag), "--paced", "--schedule", "async", "--mode", "continual",
                 "--set", "model=mlmp-tiny-test", "--set", "weights=random", "--set", "device=cpu",
                 "--set", "adaptation.steps=1", "--set", "adaptation.safeguards.collapse=true",
                 "--node-set", "diagnostics.period=0.5", "--out", str(tmp_path / "live")])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "live" / "replay_live.json").read_text())
    assert report["adaptation_schedule"] == "async" and report["settings"]["adaptation.safeguards.collapse"] is True
    assert report["node_diagnostics"]["adaptation_schedule"] == "async"  # what the node itself reports
    assert report["frames_published"] == 2 and report["frames_without_labels"] >= 1
    assert "at camera rate" in capsys.readouterr().out


@pytest.mark.timeout(300)
def test_a_running_node_is_counted_from_the_start_of_each_run(tmp_path):
    """With --no-start-node, steps and resets are the node's counters over this run only."""
    from mlmp_ros.bench.camera.replay_live import replay_live

    from ...ros.ros_helpers import node_session

    write_voc(tmp_path / "voc", n=2)
    bag = make_bag(open_dataset("voc20", tmp_path / "voc"), "original", tmp_path / "bags" / "voc20", progress=False)
    config = tiny_config(adaptation__steps=1)
    with node_session("/replay_ext", {"adaptation.steps": 1, "adaptation.method": "tent", "diagnostics.period": 0.3}):
        runs = [replay_live(bag, config, tmp_path / f"live{i}", paced=True, start_node=False, namespace="/replay_ext",
                            timeout=60) for i in range(2)]  # fmt: skip
    for report in runs:
        assert report["frames_processed"] == 2
        assert report["adaptation_steps"] == 2  # one step per frame, this run's frames only
        assert report["resets"] == 0
    assert int(runs[1]["node_diagnostics"]["adaptation_steps_total"]) == 4  # the node's own count goes on
