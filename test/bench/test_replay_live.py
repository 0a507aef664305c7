"""replay-live against a real node process over loopback DDS reproduces the offline scores."""

from __future__ import annotations

import pytest

from mlmp_ros.bench.datasets import open_dataset
from mlmp_ros.bench.make_bags import make_bag
from mlmp_ros.bench.runner import load_frames, run_trial, segmenter_config
from mlmp_ros.core import Segmenter

from ..conftest import tiny_clip, tiny_config
from .test_runner import write_voc

pytest.importorskip("rclpy")


@pytest.mark.timeout(300)
def test_replay_live_scores_equal_the_offline_run(tmp_path):
    from safetensors.torch import save_file

    from mlmp_ros.bench.replay_live import replay_live

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
