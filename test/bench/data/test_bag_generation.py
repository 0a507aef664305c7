"""A bag is what its name and metadata say (issue 27, item 2): every generation parameter is recorded,
an existing bag that differs in any is refused naming the fields (exit 2), --force rewrites it, and a
suite on a folder holding such a bag refuses it instead of scoring other frames than it reports."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlmp_ros.bench.cli.main import main
from mlmp_ros.bench.data.bags import open_bag
from mlmp_ros.bench.suite.store import ResultStore

pytestmark = pytest.mark.filterwarnings("ignore:RANDOM WEIGHTS")


def make_bags(*args: str) -> int:
    return main(["make-bags", "world", "--no-progress", *args])


def test_world_bag_records_every_generation_parameter(tmp_path: Path) -> None:
    assert make_bags("--count", "2", "--size", "64x48", "--seed", "7", "--out", str(tmp_path)) == 0
    info = open_bag(tmp_path / "world" / "original").info
    assert info["generation"] == {"count": 2, "size": "64x48", "seed": 7, "shift": None}
    assert info["frame_count"] == 2 and info["storage"] == "mcap" and info["presized"] is True


@pytest.mark.parametrize(
    ("again", "named"),
    [
        (["--count", "3"], "count 2 (wanted 3)"),
        (["--size", "96x64"], "size '64x48' (wanted '96x64')"),
        (["--seed", "5"], "seed 7 (wanted 5)"),
    ],
)
def test_a_differing_bag_is_refused_naming_the_field(tmp_path: Path, capsys, again: list[str], named: str) -> None:
    base = {"--count": "2", "--size": "64x48", "--seed": "7"}
    assert make_bags(*[x for kv in base.items() for x in kv], "--out", str(tmp_path)) == 0
    capsys.readouterr()
    wanted = {**base, again[0]: again[1]}
    assert make_bags(*[x for kv in wanted.items() for x in kv], "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert named in err and "--force" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    # --force rewrites it as asked
    assert make_bags(*[x for kv in wanted.items() for x in kv], "--out", str(tmp_path), "--force") == 0
    assert "wrote" in capsys.readouterr().out
    info = open_bag(tmp_path / "world" / "original").info
    assert info["generation"]["count"] == int(wanted["--count"]) and info["generation"]["seed"] == int(wanted["--seed"])
    assert info["generation"]["size"] == wanted["--size"]
    assert not [p for p in (tmp_path / "world").iterdir() if p.name.startswith(".")]  # no leftovers


def test_stream_shift_and_the_same_command_again(tmp_path: Path, capsys) -> None:
    args = ["--count", "2", "--size", "64x48", "--streams", "fog", "--out", str(tmp_path)]
    assert make_bags(*args) == 0
    info = open_bag(tmp_path / "world_stream_fog" / "original").info
    assert info["generation"]["shift"] == "fog" and info["generation"]["count"] == 2
    capsys.readouterr()
    assert make_bags(*args) == 0  # the same command again keeps both
    assert capsys.readouterr().out.count("kept") == 2


def test_suite_refuses_a_bag_of_other_generation(tmp_path: Path, capsys) -> None:
    """make-bags --count 4 then a suite on the same folder: the suite wants the data set's defaults (40
    scenes); it must not score the 4 frames as if they were the data set, but name the difference."""
    assert make_bags("--count", "4", "--size", "64x48", "--out", str(tmp_path / "bags")) == 0
    suite = {
        "name": "t", "core": {"model": "mlmp-tiny-test", "weights": "random", "device": "cpu"},
        "methods": ["noadapt"], "seeds": [0], "bags": str(tmp_path / "bags"), "out": str(tmp_path / "out"),
        "scenarios": [{"dataset": "world", "corruptions": ["original"]}],
    }  # fmt: skip
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    capsys.readouterr()
    assert main(["suite", str(path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "count 4 (wanted 40)" in out and "size '64x48' (wanted '640x480')" in out
    (record,) = ResultStore(tmp_path / "out" / "results.jsonl").read()
    assert not record.done and "count 4" in (record.reason or "")
