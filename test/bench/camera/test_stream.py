"""``mlmp-bench stream``: chained bags replayed at a camera rate on a fixed simulated clock."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlmp_ros.bench.camera.rate_replay import build_stream, replay_stream
from mlmp_ros.bench.cli.main import main
from mlmp_ros.bench.data.make_bags import make_bag
from mlmp_ros.bench.data.registry import open_dataset
from mlmp_ros.bench.offline.options import RunError, segmenter_config
from mlmp_ros.bench.scoring.metrics import SegmentationMetrics
from mlmp_ros.core import Segmenter

from ...conftest import tiny_clip, tiny_config, torch_threads
from ..suite.test_runner import write_voc

TINY = ["--set", "model=mlmp-tiny-test", "--set", "weights=random", "--set", "device=cpu"]


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("stream")
    write_voc(root / "voc", n=3)
    return [make_bag(open_dataset("voc20", root / "voc"), c, root / "bags" / c, progress=False) for c in ("original", "fog")]


@pytest.fixture(autouse=True)
def _two_threads():
    with torch_threads(2):
        yield


def test_sync_stream_scores_the_labels_on_the_topic(bags):
    stream = build_stream([str(b) for b in bags])
    assert stream.segments == ["voc20/original", "voc20/fog"] and len(stream.frames) == 6
    config = tiny_config(adaptation__steps=2, adaptation__method="tent")
    # 10 Hz; a frame costs 2 steps x 100 ms + 50 ms: frames 0, 2 and 5 are processed
    report = replay_stream(stream, config, rate_hz=10, clock="fixed:50,100", loaded=tiny_clip(0))
    assert [r["frame"] for r in report["processed"]] == [0, 2, 5]
    assert [r["latency"] for r in report["processed"]] == pytest.approx([0.25, 0.30, 0.25])
    assert [t["shown"] for t in report["timeline"]] == [None, None, None, 0, 0, 2]
    assert report["frames_without_labels"] == 3
    # the same scores from a plain episodic segmenter's labels, shown as the stream showed them
    seg = Segmenter(segmenter_config(config, stream.info), loaded=tiny_clip(0))
    own = {k: seg.segment([stream.frames[k].image], output="processing").frames[0].labels for k in (0, 2, 5)}
    expected = SegmentationMetrics(stream.info["num_classes"], stream.info.get("ignore_index", 255))
    for t, frame in zip(report["timeline"], stream.frames):
        pred = own[t["shown"]] if t["shown"] is not None else np.full(frame.labels.shape, 254, np.int32)
        expected.update(pred, frame.labels)
    assert report["miou_camera"] == pytest.approx(expected.compute()["mIoU"])


def test_async_stream_predicts_every_frame_with_older_weights(bags):
    stream = build_stream([str(b) for b in bags])
    config = tiny_config(adaptation__steps=2, adaptation__method="tent", adaptation__schedule="async",
                         adaptation__mode="continual")  # fmt: skip
    report = replay_stream(stream, config, rate_hz=10, clock="fixed:50,100", loaded=tiny_clip(0))
    # predictions take 50 ms: every frame is processed; adaptation (200 ms) runs beside
    assert [r["frame"] for r in report["processed"]] == [0, 1, 2, 3, 4, 5]
    assert [r["latency"] for r in report["processed"]] == pytest.approx([0.05] * 6)
    # job on frame 0 (0.05 -> 0.25) is installed for frame 3, job on frame 2 (0.25 -> 0.45) for frame 5
    assert [r["lag"] for r in report["processed"]] == [None, None, None, 3, 4, 3]
    assert report["frames_without_labels"] == 1
    assert report["adaptation_steps"] == 6  # jobs on frames 0, 2 and 4 (the last one starts at 0.45)
    assert report["resets"] == {}


def test_stream_command_writes_report_and_plot(bags, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["stream", *map(str, bags), *TINY, "--set", "adaptation.steps=1", "--method", "tent",
                 "--schedule", "async", "--mode", "continual", "--set", "adaptation.safeguards.collapse=true",
                 "--rate", "10", "--clock", "fixed:50,100", "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "stream.json").read_text())
    assert report["schedule"] == "async" and report["settings"]["adaptation.safeguards.collapse"] is True
    assert (report["method"], report["mode"]) == ("tent", "continual")
    assert {s["segment"] for s in report["segments"]} == {"voc20/original", "voc20/fog"}
    assert (out / "stream.png").stat().st_size > 1000
    assert "mIoU at camera rate" in capsys.readouterr().out
    assert main(["stream", str(bags[0]), "--clock", "fixed:x", *TINY, "--out", str(out)]) == 2


def test_corruption_sequences_from_one_bag(bags):
    pytest.importorskip("imagecorruptions")
    severity = build_stream([str(bags[0])], sequence="severity", corruption="fog", frames_per_segment=1)
    assert severity.segments == [f"fog-{s}" for s in (1, 2, 3, 4, 5, 4, 3, 2, 1)] and len(severity.frames) == 9
    assert not np.array_equal(severity.frames[0].image, severity.frames[4].image)  # severity 1 vs 5
    plain = build_stream([str(bags[0])])
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(severity.frames, plain.frames))  # labels unchanged
    with pytest.raises(RunError, match="sequence"):
        build_stream([str(bags[0])], sequence="shuffled")


def test_stop_after_scores_the_frames_up_to_the_last_publication(bags):
    stream = build_stream([str(b) for b in bags], frames_per_segment=20)  # the bags' 3 frames cycled
    assert len(stream.frames) == 40 and stream.frames[3].labels is stream.frames[0].labels
    config = tiny_config(adaptation__steps=2, adaptation__method="tent")
    # as above: frame 0 is published at 0.25 s, frame 2 at 0.5 s; stop after two processed frames
    report = replay_stream(stream, config, rate_hz=10, clock="fixed:50,100", loaded=tiny_clip(0), stop_after=2)
    assert [r["frame"] for r in report["processed"]] == [0, 2]
    assert report["frames"] == 6  # camera frames arrived by 0.5 s (0.0 ... 0.5)
    assert [t["shown"] for t in report["timeline"]] == [None, None, None, 0, 0, 2]
    assert [s["segment"] for s in report["segments"]] == ["voc20/original"]


def test_chains_two_paper_layouts_with_one_class_list(tmp_path, bags):
    """Cityscapes then ACDC fog (two layouts, one class list and window protocol) run as one stream
    through ``mlmp-bench stream``; a VOC20 bag after a Cityscapes bag is refused, naming both."""
    from ..data.test_datasets import make_layout

    make_layout("cityscapes", tmp_path / "cityscapes", n=2)
    make_layout("acdc", tmp_path / "acdc", n=2, condition="fog")
    city = make_bag(open_dataset("cityscapes", tmp_path / "cityscapes"), "original", tmp_path / "b" / "city",
                    progress=False)  # fmt: skip
    fog = make_bag(open_dataset("acdc", tmp_path / "acdc", condition="fog"), "original", tmp_path / "b" / "acdc",
                   progress=False)  # fmt: skip
    stream = build_stream([str(city), str(fog)])
    assert stream.segments == ["cityscapes/original", "acdc_fog/original"] and len(stream.frames) == 4
    assert stream.info["class_key"] == "cityscapes"

    out = tmp_path / "out"
    code = main(["stream", str(city), str(fog), *TINY, "--set", "adaptation.steps=1", "--method", "tent",
                 "--rate", "10", "--clock", "fixed:50,100", "--out", str(out), "--no-plot", "--no-progress"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "stream.json").read_text())
    assert [s["segment"] for s in report["segments"]] == ["cityscapes/original", "acdc_fog/original"]
    assert report["frames"] == 4 and [t["segment"] for t in report["timeline"]][1:3] == [
        "cityscapes/original", "acdc_fog/original"]  # fmt: skip

    with pytest.raises(RunError) as refused:
        build_stream([str(city), str(bags[0])])
    message = str(refused.value)
    assert str(city) in message and str(bags[0]) in message
    assert "'voc20' vs 'cityscapes'" in message
