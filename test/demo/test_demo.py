"""mlmp-demo (the README's first command) on the bundled stream: a real node process over loopback DDS."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mlmp_ros.bench.data.messages import msg_to_image, stamp_ns, typestore
from mlmp_ros.demo.arguments import node_parameters, parse_args
from mlmp_ros.demo.main import main as demo
from mlmp_ros.demo.sample_stream import sample_frames

WORLD_FLOOR = 18.0  # the clean first frame of this 3-frame stream: measured (NoAdapt / adapted) on a demo run


def test_the_demo_segments_every_frame_of_the_bundled_stream_and_writes_its_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the node shares 2 cores with this process
    out = tmp_path / "demo"
    code = demo(["--model", "mlmp-tiny-test", "--weights", "random", "--device", "cpu", "--paced",
                      "--set", "adaptation.steps=2", "--set", "classes=[cat, person, rocket]", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "RUNNING ON RANDOM WEIGHTS" in printed and "mlmp-demo summary" in printed

    frames = list(sample_frames())
    assert len(frames) == 8 and all(f.shape == (480, 640, 3) for _, f in frames)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_weights"] is True
    assert summary["node_parameters"]["adaptation.steps"] == 2
    assert summary["node_parameters"]["classes"] == ["cat", "person", "rocket"]
    assert (summary["frames_published"], summary["frames_processed"], summary["frames_dropped"]) == (8, 8, 0)
    # What the node ran, from its own diagnostics (the last report that saw a frame), not its log wording.
    node = {k: str(v) for k, v in summary["node_diagnostics"].items()}
    assert (node["adaptation_method"], node["adaptation_mode"], node["adaptation_steps"]) == ("mlmp", "episodic", "2")
    assert (node["classes"], node["model"]) == ("3", "mlmp-tiny-test")
    assert summary["output_messages"] == 16

    # One overlay per frame: the photograph beside its segmentation, a legend below.
    assert len(summary["overlays"]) == 8
    first = cv2.cvtColor(cv2.imread(summary["overlays"][0]), cv2.COLOR_BGR2RGB)
    assert first.shape[1] == 2 * 640 and first.shape[0] > 480
    np.testing.assert_array_equal(first[:480, :640], frames[0][1])

    # The outputs bag reads back: labels (mono8, 3 classes) and confidence for each frame, same stamps.
    from rosbags.rosbag2 import Reader

    store = typestore()
    by_topic: dict[str, list] = {}
    with Reader(out / "outputs") as reader:
        for conn, _, raw in reader.messages():
            by_topic.setdefault(conn.topic, []).append(store.deserialize_cdr(raw, conn.msgtype))
    labels, confidence = by_topic["/segmentation/labels"], by_topic["/segmentation/confidence"]
    assert len(labels) == len(confidence) == 8
    assert [stamp_ns(m) for m in labels] == [stamp_ns(m) for m in confidence]
    for msg in labels:
        assert (msg.encoding, msg.height, msg.width) == ("mono8", 480, 640)
        assert msg_to_image(msg).max() < 3
    assert all(m.encoding == "32FC1" for m in confidence)


def test_a_malformed_set_is_refused_with_the_reason(capsys):
    with pytest.raises(SystemExit) as exit_:
        node_parameters(parse_args(["--set", "adaptation.steps"]))
    assert exit_.value.code == 2 and "--set takes key=value" in capsys.readouterr().err


def test_without_real_weights_the_demo_runs_noadapt_and_the_adapted_configuration_side_by_side(tmp_path, monkeypatch, capsys):
    """No CLIP weights here (offline): the world model on a world stream into two nodes at once, scored live."""
    from mlmp_ros.robot import ROBOT_ADAPTATION
    from mlmp_ros.world import PALETTE
    from mlmp_ros.world.camera_stream import WorldStream

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "demo"
    code = demo(["--offline", "--device", "cpu", "--paced", "--frames", "3", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "RUNNING ON RANDOM WEIGHTS" not in printed and "world model" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_weights"] is False and summary["weights"] == "world"
    runs = summary["runs"]
    assert list(runs) == ["noadapt", "adapted"]
    assert runs["noadapt"]["node_parameters"]["adaptation.method"] == "noadapt"
    adapted = runs["adapted"]["node_parameters"]
    assert {k: adapted[k] for k in ROBOT_ADAPTATION} == ROBOT_ADAPTATION and adapted["model"] == "mlmp-world"
    # What each node ran, from its own diagnostics.
    assert str(runs["noadapt"]["node_diagnostics"]["adaptation_method"]) == "noadapt"
    assert str(runs["adapted"]["node_diagnostics"]["adaptation_method"]) == ROBOT_ADAPTATION["adaptation.method"]
    world = summary["world"]
    assert world["shift"] == "fog" and world["frames"] == 3
    for tag, run in runs.items():
        assert (run["frames_published"], run["frames_processed"]) == (3, 3), tag  # paced: nothing dropped
        frames = run["per_frame"]
        assert [f["severity"] for f in frames] == [0.0, 0.43, 1.0]  # the fog sets in
        assert frames[0]["run"] == frames[0]["miou"]  # the run so far at frame 0 is frame 0
        assert frames[-1]["run"] == pytest.approx(run["run_miou"], abs=0.06)  # ... and at the end, the run
        assert frames[0]["miou"] >= WORLD_FLOOR, (tag, frames)
        for f in frames:  # one console line per frame and run, with the same figures
            assert f"{tag:8s} frame {f['frame']:3d}" in printed and f"(run so far {f['run']:5.1f})" in printed
    # Overlays: camera | NoAdapt | adapted | ground truth, each run's score below.
    assert len(summary["overlays"]) == 3
    stream = WorldStream(world["stream_seed"], 3, shift="fog")
    first = cv2.cvtColor(cv2.imread(summary["overlays"][0]), cv2.COLOR_BGR2RGB)
    assert first.shape[1] == 4 * 640 and first.shape[0] > 480
    np.testing.assert_array_equal(first[40:480, :640], stream.frame(0).image[40:])
    np.testing.assert_array_equal(first[40:480, 1920:], PALETTE[stream.frame(0).labels[40:]])
    for tag, col in (("noadapt", 1), ("adapted", 2)):  # each run's panel is its labels from its outputs bag
        labels = _first_labels(Path(runs[tag]["outputs_bag"]), "/segmentation/labels")
        np.testing.assert_array_equal(first[40:480, col * 640 : (col + 1) * 640], PALETTE[labels[40:]])


def _first_labels(bag: Path, topic: str) -> np.ndarray:
    from rosbags.rosbag2 import Reader

    store = typestore()
    with Reader(bag) as reader:
        msgs = [store.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages() if c.topic == topic]
    msgs.sort(key=stamp_ns)
    return msg_to_image(msgs[0])
