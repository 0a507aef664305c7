"""Every argument checked before anything starts (issue 27, item 3): mlmp-demo and every mlmp-bench
sub-command refuse a bad value with one line naming the argument and what it allows, exit status 2,
before a model loads, a node process starts or an output folder is made; unknown options are refused;
settings a command cannot honour are refused with the reason; no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlmp_ros.bench.cli.main import main as bench
from mlmp_ros.demo.main import main as demo

BIN = Path(sys.executable).parent

DEMO_CASES = {
    "--rate -5": "--rate", "--rate 0": "--rate", "--rate nan": "--rate", "--method foo": "--method",
    "--steps -1": "--steps", "--device tpu": "--device", "--params /nonexistent.yaml": "--params",
    "--loops 0": "--loops", "--frames 0": "--frames", "--shift snowstorm": "--shift", "--timeout 0": "--timeout",
    "--foo": "--foo", "--set adaptation.steps=-2": "adaptation.steps", "--set nosuch=1": "nosuch",
    "--set diagnostics.period=0": "diagnostics.period", "--set adaptation.steps": "--set",
    f"--params {Path(__file__).parents[1] / 'config' / 'suites' / 'world.yaml'}": "not a node parameter file",
}  # fmt: skip


@pytest.mark.parametrize(("argv", "named"), DEMO_CASES.items(), ids=[k.split("/")[0] for k in DEMO_CASES])
def test_demo_refuses_a_bad_argument_before_starting(argv: str, named: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as exit_:
        demo([*argv.split(), "--out", str(out)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and err.startswith("mlmp-demo: error:"), err
    assert not out.exists()  # nothing started: no output folder, no node log


def test_demo_refusal_through_the_console_script_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run([BIN / "mlmp-demo", "--steps", "-1", "--out", str(tmp_path / "d")], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "mlmp-demo: error: --steps: adaptation.steps must be >= 0, not -1"
    assert result.stdout == "" and not (tmp_path / "d").exists()


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bags")
    assert bench(["make-bags", "world", "--count", "1", "--size", "64x48", "--out", str(folder), "--no-progress"]) == 0
    return folder / "world" / "original"


BENCH_CASES = [
    (["run", "{bag}", "--set", "classes=[a, b]"], "come from each bag"),
    (["run", "{bag}", "--set", "resize=[100]"], "--set resize"),
    (["run", "{bag}", "--set", "window=64"], "--set window"),
    (["run", "{bag}", "--method", "foo"], "--method: unknown method foo"),
    (["run", "{bag}", "--batch-size", "0"], "--batch-size"),
    (["run", "{bag}", "--foo"], "unrecognized arguments: --foo"),
    (["run", "{bag}", "--config", "/nonexistent.yaml"], "/nonexistent.yaml"),
    (["stream", "{bag}", "--rate", "nan"], "--rate"),
    (["stream", "{bag}", "--clock", "fixed:-1,2"], "--clock"),
    (["stream", "{bag}", "--corruption", "snowstorm"], "--corruption"),
    (["stream", "{bag}", "--method", "tent,mlmp"], "one method"),
    (["stream", "{bag}", "--set", "stride=32"], "--set stride"),
    (["replay-live", "{bag}", "--params", "/nonexistent.yaml"], "--params"),
    (["replay-live", "{bag}", "--timeout", "-1"], "--timeout"),
    (["replay-live", "{bag}", "--set", "classes=[a]"], "--set classes"),
    (["suite", "world", "--limit", "0"], "--limit"),
    (["suite", "world", "--set", "classes=[a]"], "classes"),
    (["make-bags", "world", "--out", "{tmp}", "--size", "10x10"], "--size"),
    (["make-bags", "world", "--out", "{tmp}", "--count", "0"], "--count"),
    (["settings", "--x"], "unrecognized arguments"),
]


@pytest.mark.parametrize(("argv", "named"), BENCH_CASES, ids=[" ".join(a[:1] + a[2:]) for a, _ in BENCH_CASES])
def test_bench_refuses_a_bad_argument_in_one_line(argv: list[str], named: str, bag: Path, tmp_path: Path, capsys) -> None:
    args = [a.format(bag=bag, tmp=tmp_path / "out") for a in argv]
    try:
        code = bench(args)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_missing_bag_is_named_without_internal_functions(tmp_path: Path, capsys) -> None:
    assert bench(["run", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "make-bags" in err and "mlmp_ros." not in err and "make_bag" not in err
