"""Benchmark results a reproducer can trust: bags that prove their integrity and identity,
suites that fail loudly, label maps checked, suite files found from any folder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mlmp_ros.bench.cli.main import main
from mlmp_ros.bench.data.bags import BagError, open_bag
from mlmp_ros.bench.data.entry import DatasetError
from mlmp_ros.bench.data.make_bags import make_bag
from mlmp_ros.bench.data.registry import open_dataset
from mlmp_ros.bench.suite.records import DONE
from mlmp_ros.bench.suite.store import ResultStore

from .suite.test_runner import write_voc

pytestmark = pytest.mark.filterwarnings("ignore:RANDOM WEIGHTS")
TINY = ["--set", "model=mlmp-tiny-test", "--set", "weights=random", "--set", "device=cpu"]


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    write_voc(tmp_path / "VOC2012", n=3)
    return tmp_path / "VOC2012"


def flip_pixel_bytes(db3: Path, frame: int, count: int = 50) -> None:
    """Flip bytes inside the pixel data of image message ``frame`` of a SQLite3 bag."""
    with sqlite3.connect(db3) as db:
        topic = db.execute("SELECT id FROM topics WHERE name = '/camera/image_raw'").fetchone()[0]
        rows = db.execute("SELECT id, data FROM messages WHERE topic_id = ? ORDER BY timestamp", (topic,)).fetchall()
        row_id, data = rows[frame]
        data = bytearray(data)
        for i in range(len(data) - 200, len(data) - 200 + count):
            data[i] ^= 0xFF
        db.execute("UPDATE messages SET data = ? WHERE id = ?", (bytes(data), row_id))


def test_flipped_bytes_are_refused_naming_the_frame(voc: Path, tmp_path: Path, capsys) -> None:
    bag = make_bag(open_dataset("voc20", voc), "original", tmp_path / "bag", storage="sqlite3", progress=False)
    assert len(list(open_bag(bag))) == 3  # sound: every checksum holds
    flip_pixel_bytes(next(bag.glob("*.db3")), frame=1)
    frames = iter(open_bag(bag))
    next(frames)
    with pytest.raises(BagError, match=r"frame 1 \(image id 2008_000001\) at stamp \d+ ns does not match its checksum"):
        next(frames)
    # run scores nothing: exit 1, the reason names the frame
    code = main(["run", str(bag), "-m", "noadapt", *TINY, "--out", str(tmp_path / "r"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1 and "not run: bag" in out and "frame 1 (image id 2008_000001)" in out and "checksum" in out
    records = ResultStore(tmp_path / "r" / "results.jsonl").read()
    assert records and not [r for r in records if r.status == DONE]


def test_damaged_mcap_chunk_never_yields_numbers(voc: Path, tmp_path: Path) -> None:
    """500 flipped bytes inside a compressed chunk: an error, never frames."""
    bag = make_bag(open_dataset("voc20", voc), "original", tmp_path / "bag", progress=False)
    mcap = next(bag.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + 500):
        data[i] ^= 0x5A
    mcap.write_bytes(bytes(data))
    with pytest.raises(BagError):
        list(open_bag(bag))


def test_replay_live_verifies_before_starting_a_node(voc: Path, tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    from mlmp_ros.bench.camera.replay_live import replay_live

    from ..conftest import tiny_config

    bag = make_bag(open_dataset("voc20", voc), "original", tmp_path / "bag", storage="sqlite3", progress=False)
    flip_pixel_bytes(next(bag.glob("*.db3")), frame=2)
    with pytest.raises(BagError, match=r"frame 2 \(image id 2008_000002\).*checksum"):
        replay_live(bag, tiny_config(), tmp_path / "live", paced=True, timeout=30)
    assert not (tmp_path / "live" / "node.log").exists()  # refused before a node was started


def test_bag_identity_includes_limit_presize_and_storage(voc: Path, tmp_path: Path, capsys) -> None:
    root, bags = str(voc), tmp_path / "bags"
    assert main(["make-bags", "voc20", root, "--limit", "2", "--out", str(bags), "--no-progress"]) == 0
    info = open_bag(bags / "voc20" / "original").info
    assert (info["limit"], info["frame_count"], info["split_size"], info["storage"]) == (2, 2, 3, "mcap")
    capsys.readouterr()
    # The 2-frame bag is never kept for a request of the whole split, another storage or no presize.
    for extra, part in (([], "limit 2 (wanted None)"), (["--storage", "sqlite3", "--limit", "2"], "storage 'mcap'"),
                        (["--no-presize", "--limit", "2"], "presized True (wanted False)")):  # fmt: skip
        code = main(["make-bags", "voc20", root, "--out", str(bags), "--no-progress", *extra])
        err = capsys.readouterr().err
        assert code == 2 and part in err and "does not match" in err, err
    assert main(["make-bags", "voc20", root, "--limit", "2", "--out", str(bags), "--no-progress"]) == 0
    assert "kept" in capsys.readouterr().out
    # a limit at or above the split's size is the whole split: the same bag
    whole = tmp_path / "whole"
    assert main(["make-bags", "voc20", root, "--limit", "10", "--out", str(whole), "--no-progress"]) == 0
    assert open_bag(whole / "voc20" / "original").info["limit"] is None
    assert main(["make-bags", "voc20", root, "--out", str(whole), "--no-progress"]) == 0
    assert "kept" in capsys.readouterr().out


def suite_yaml(tmp_path: Path, voc: Path, **changes) -> Path:
    spec = {
        "name": "trust",
        "core": {"model": "mlmp-tiny-test", "weights": "random", "device": "cpu", "adaptation": {"steps": 1}},
        "methods": ["noadapt", "tent"],
        "seeds": [0],
        "examples": 0,
        "bags": str(tmp_path / "bags"),
        "out": str(tmp_path / "results"),
        "roots": {"voc20": str(voc), "context59": str(tmp_path / "missing")},
        "scenarios": [{"dataset": "voc20", "methods": ["noadapt"]}, {"dataset": "context59", "methods": ["noadapt"]}],
        "skip": [{"dataset": "voc20", "method": "tent", "reason": "kept short"}],
    }
    spec.update(changes)
    path = tmp_path / "trust.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_suite_exits_non_zero_and_prints_each_reason(voc: Path, tmp_path: Path, capsys) -> None:
    path = suite_yaml(tmp_path, voc)
    assert main(["suite", str(path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("not run: context59/original noadapt"))
    assert "missing" in line  # the reason itself, naming the folder
    assert "1 trial run" in out
    # the same suite without the failing scenario succeeds; a skip is listed, not a failure
    path = suite_yaml(tmp_path, voc, scenarios=[{"dataset": "voc20", "methods": ["noadapt", "tent"]}])
    assert main(["suite", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "skipped: voc20/original tent (1 trial): skipped by the suite: kept short" in out


def test_suite_refuses_a_partial_bag_for_a_full_run(voc: Path, tmp_path: Path, capsys) -> None:
    """make-bags --limit 2 into the suite's folder, then a suite on the whole split: never run on 2 frames."""
    bags = tmp_path / "bags"
    assert main(["make-bags", "voc20", str(voc), "--limit", "2", "--out", str(bags), "--no-progress"]) == 0
    path = suite_yaml(tmp_path, voc, scenarios=[{"dataset": "voc20", "methods": ["noadapt"]}])
    assert main(["suite", str(path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "not run: voc20/original noadapt" in out and "limit 2 (wanted None)" in out
    done = [r for r in ResultStore(tmp_path / "results" / "results.jsonl").read() if r.status == DONE]
    assert not done


def test_label_map_of_another_size_is_an_error(voc: Path, tmp_path: Path) -> None:
    label = voc / "SegmentationClass" / "2008_000002.png"
    with Image.open(label) as im:
        im.resize((im.width + 8, im.height)).save(label)
    with pytest.raises(DatasetError, match=r"label map .*2008_000002.png is \d+x\d+ but its image .* is \d+x\d+"):
        make_bag(open_dataset("voc20", voc), "original", tmp_path / "bag", progress=False)
    assert not (tmp_path / "bag").exists()


def test_out_of_range_label_ids_warned_and_marked_in_the_report(voc: Path, tmp_path: Path, capsys) -> None:
    label = voc / "SegmentationClass" / "2008_000000.png"
    with Image.open(label) as im:
        palette = im.getpalette()
        ids = np.array(im)
    ids[10:14, 10:14] = 40  # VOC has ids 0..20 and 255; VOC20 maps k -> k-1, so 40 -> 39, out of 0..19
    out_image = Image.fromarray(ids)
    out_image.putpalette(palette)
    out_image.save(label)
    bags = tmp_path / "bags"
    assert main(["make-bags", "voc20", str(voc), "--out", str(bags), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "2008_000000.png has 16 pixels with ids 39 outside 0..19" in err
    results = tmp_path / "results"
    assert main(["run", str(bags / "voc20" / "original"), "-m", "noadapt", *TINY, "--seeds", "0", "--out",
                 str(results), "--no-progress"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "label ids outside the classes" in captured.err
    assert main(["report", str(results)]) == 0
    report = (results / "report" / "report.md").read_text()
    assert "⚠" in report and "label ids outside the classes" in report


@pytest.mark.parametrize("spelling", ["paper87", "paper87.yaml", "config/suites/paper87.yaml"])
def test_suite_files_resolve_from_any_folder(tmp_path: Path, spelling: str) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "mlmp_ros.bench.cli", "suite", spelling, "--list"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("87 scenarios")


def test_documents_pointed_to_are_in_the_repository() -> None:
    repo = Path(__file__).resolve().parents[2]
    texts = [repo / "README.md", *repo.glob("config/**/*.yaml"), *repo.glob("mlmp_ros/**/*.py"),
             *repo.glob("benchmarks/*.py"), *repo.glob("docs/**/*.md")]  # fmt: skip
    missing = []
    for path in texts:
        text = path.read_text(encoding="utf-8")
        for name in ("MLMP_SPEC.md", "BENCHMARK.md", "ROS_NODE.md", "ARCHITECTURE.md", "shared/"):
            if name in text and not (name.endswith(".md") and list(repo.rglob(name))):
                missing.append(f"{path.relative_to(repo)} -> {name}")
    assert not missing, missing


def test_mcap_chunks_carry_real_crcs(voc: Path, tmp_path: Path) -> None:
    """rosbags writes chunk CRC 0 ("not computed"); the bag's chunks carry their real CRC-32."""
    import struct

    from mcap.reader import make_reader

    bag = make_bag(open_dataset("voc20", voc), "gaussian_noise", tmp_path / "bag", progress=False)
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    crcs, offset = [], 8  # records follow the 8-byte magic: opcode, u64 length, body
    while offset < len(data) and data[offset] != 0x02:  # up to the footer
        (length,) = struct.unpack_from("<Q", data, offset + 1)
        if data[offset] == 0x06:  # chunk: start, end, uncompressed size, then the CRC
            crcs.append(struct.unpack_from("<I", data, offset + 9 + 24)[0])
        offset += 9 + length
    assert crcs and all(crcs), crcs
    with open(mcap, "rb") as fh:  # an independent MCAP reader checks them
        assert len(list(make_reader(fh, validate_crcs=True).iter_messages())) == 1 + 2 * 3
    assert len(list(open_bag(bag))) == 3
