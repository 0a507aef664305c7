"""benchmarks/stream_intervals.py: camera-rate mIoU with intervals over frames, from per-frame areas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from mlmp_ros.bench.scoring.intervals import paired_pooled_difference, pooled_miou, pooled_miou_interval

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "stream_intervals.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_intervals_over_frames_and_blocks_come_from_the_frame_areas(tmp_path):
    rng = np.random.default_rng(1)
    union = rng.integers(50, 100, (30, 3))
    base = rng.integers(0, 50, (30, 3))
    better = np.minimum(base + 10, union)
    runs = {
        name: {"miou_camera": round(pooled_miou(i, union), 2), "segments": [{"segment": "fog"}, {"segment": "night"}],
               "frame_areas": {"inter": i.tolist(), "union": union.tolist()}}
        for name, i in (("noadapt", base), ("mlmp async continual + safeguards", better))
    }  # fmt: skip
    src = tmp_path / "stream.json"
    src.write_text(json.dumps({"runs": runs, "what": "test"}))
    out = tmp_path / "intervals.json"
    done = _run(src, "--block", 5, "--equal-segments", "--out", out)
    assert done.returncode == 0, done.stderr
    got = json.loads(out.read_text())["runs"]["mlmp async continual + safeguards"]
    expect = pooled_miou_interval(better, union)
    assert got["frames"]["miou"]["low"] == expect.low and got["frames"]["miou"]["high"] == expect.high
    diff = paired_pooled_difference((better, union), (base, union))
    assert got["frames"]["vs_noadapt"]["value"] == diff.value and got["frames"]["vs_noadapt"]["verdict"] == "gains"
    blocks = got["blocks_of_5"]
    assert blocks["miou"]["n"] == 6 and blocks["miou"]["value"] == expect.value  # pooled: blocks change only the units
    night = got["segments"]["night"]  # frames 15-29, in blocks of 5
    assert night["frames"] == [15, 29] and night["miou"]["n"] == 3
    assert night["miou"]["value"] == pooled_miou(better[15:], union[15:])


def test_a_result_without_frame_areas_is_refused_in_one_line(tmp_path):
    src = tmp_path / "old.json"
    src.write_text(json.dumps({"runs": {"noadapt": {"miou_camera": 35.5}}}))
    done = _run(src)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "run stream_bench.py with --frame-areas" in done.stderr and len(done.stderr.strip().splitlines()) == 1
