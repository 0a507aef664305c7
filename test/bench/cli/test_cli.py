"""The mlmp-bench command line: help for every subcommand, one-line errors, and a
make-bags -> run -> report round trip with the tiny random CLIP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlmp_ros.bench.cli.main import build_parser, main

from ..suite.test_runner import write_voc

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.filterwarnings("ignore:RANDOM WEIGHTS")
SUBCOMMANDS = ("make-bags", "run", "suite", "report")
TINY = ["--set", "model=mlmp-tiny-test", "--set", "weights=random", "--set", "device=cpu"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "mlmp_ros.bench.cli", *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def one_error_line(capsys, argv: list[str]) -> str:
    """Run main() in process; the error must be exactly one line and no traceback."""
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("mlmp-bench: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_help_for_every_subcommand(capsys) -> None:
    parser = build_parser()
    assert set(SUBCOMMANDS) <= set(parser._subparsers._group_actions[0].choices)
    for command in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: mlmp-bench {command}") and "--help" in out
    result = subprocess.run([Path(sys.executable).parent / "mlmp-bench", "--help"], capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert result.returncode == 0 and all(c in result.stdout for c in SUBCOMMANDS)


def test_suite_list_counts_87_without_loading_a_model() -> None:
    code = (
        "import sys; from mlmp_ros.bench.cli import main; rc = main(['suite', 'config/suites/paper87.yaml', '--list']);"
        "assert 'open_clip' not in sys.modules, 'a model library was imported'; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("87 scenarios, 507 method runs, 1521 trials")


def test_user_errors_are_one_clear_line(capsys, tmp_path: Path) -> None:
    line = one_error_line(capsys, ["make-bags", "voc20", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert "not a folder" in line and "VOC2012" in line
    line = one_error_line(capsys, ["make-bags", "voc20", str(tmp_path), "-c", "fgo", "--out", str(tmp_path)])
    assert "unknown corruption fgo" in line
    (tmp_path / "notabag").mkdir()
    line = one_error_line(capsys, ["run", str(tmp_path / "notabag"), "--out", str(tmp_path / "r")])
    assert "metadata.yaml" in line
    line = one_error_line(capsys, ["run", str(tmp_path / "notabag"), "--set", "adaptation.steps=-1"])
    assert "adaptation.steps must be >= 0" in line
    line = one_error_line(capsys, ["run", str(tmp_path / "notabag"), "--set", "adaptation.stpes=2"])
    assert "unknown setting 'adaptation.stpes'" in line
    line = one_error_line(capsys, ["run", str(tmp_path / "notabag"), "--config", str(tmp_path / "missing.yaml")])
    assert "config file not found" in line
    (tmp_path / "bad.yaml").write_text("core: [unclosed\n")
    line = one_error_line(capsys, ["suite", str(tmp_path / "bad.yaml"), "--list"])
    assert "not valid YAML" in line
    line = one_error_line(capsys, ["report", str(tmp_path)])
    assert "holds no results.jsonl" in line
    # and in a real process, through the installed entry point
    result = subprocess.run([Path(sys.executable).parent / "mlmp-bench", "run", str(tmp_path / "nothing")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_make_bags_run_report_round_trip(capsys, tmp_path: Path) -> None:
    write_voc(tmp_path / "VOC2012", n=4)
    bags = tmp_path / "bags"
    assert main(["make-bags", "voc20", str(tmp_path / "VOC2012"), "-c", "original,fog", "--out", str(bags),
                 "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"wrote  {bags / 'voc20' / 'original'}" in out and f"wrote  {bags / 'voc20' / 'fog'}" in out
    assert main(["make-bags", "voc20", str(tmp_path / "VOC2012"), "-c", "fog", "--out", str(bags)]) == 0
    assert "kept" in capsys.readouterr().out
    line = one_error_line(capsys, ["make-bags", "voc20", str(tmp_path / "VOC2012"), "-c", "fog", "--severity", "3",
                                   "--out", str(bags)])  # fmt: skip
    assert "severity 5 (wanted 3)" in line

    results = tmp_path / "results"
    argv = ["run", str(bags / "voc20/original"), str(bags / "voc20/fog"), "-m", "noadapt,tent", *TINY,
            "--set", "adaptation.steps=1", "--seeds", "7", "--out", str(results), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in ("voc20/original noadapt", "voc20/original tent", "voc20/fog noadapt", "voc20/fog tent"):
        assert f"{name} (mlmp-tiny-test, batch 2, episodic): mIoU " in out
    assert "4 trials run, 0 already in" in out
    records = [json.loads(line) for line in (results / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["seed"] for r in records} == {7}
    assert all(r["status"] == "done" and r["frames"] == 4 for r in records)

    assert main(argv) == 0
    assert "0 trials run, 4 already in" in capsys.readouterr().out
    single = ["run", str(bags / "voc20/fog"), "-m", "tent", *argv[5:], "-b", "1", "--no-shuffle", "--mode", "continual"]
    assert main(single) == 0
    out = capsys.readouterr().out
    assert "1 trial run, 0 already in" in out  # a new setting, kept beside the first
    assert "voc20/fog tent (mlmp-tiny-test, batch 1, continual): mIoU" in out and "batch 2" not in out

    assert main(["report", str(results)]) == 0
    assert "report: " in capsys.readouterr().out
    report = (results / "report" / "report.md").read_text()
    assert "batch 2, episodic" in report and "batch 1, continual" in report
    assert (results / "report" / "results.csv").is_file()


def test_every_subcommand_is_there_without_rclpy_and_a_broken_one_is_an_error() -> None:
    """replay-live and stream are listed where rclpy cannot be imported (they load it when they run); a
    command module that fails to import stops mlmp-bench with the error instead of leaving the command out."""
    code = (
        "import sys\n"
        "sys.modules['rclpy'] = None\n"  # import rclpy -> ImportError
        "from mlmp_ros.bench.cli.main import build_parser\n"
        "(sub,) = build_parser()._subparsers._group_actions\n"
        "print(sorted(sub.choices))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'replay-live'" in out.stdout and "'stream'" in out.stdout
    broken = "import sys; sys.modules['mlmp_ros.bench.cli.camera_commands'] = None\nfrom mlmp_ros.bench.cli import main\n"
    out = subprocess.run([sys.executable, "-c", broken], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "ModuleNotFoundError: import of mlmp_ros.bench.cli.camera_commands" in out.stderr


@pytest.mark.parametrize("error", [ValueError("an internal value"), OSError("an internal file")])
def test_internal_errors_show_their_traceback_user_errors_one_line(error, monkeypatch, capsys) -> None:
    import mlmp_ros.bench.cli.data_commands as data_commands
    from mlmp_ros.bench.argument_checks import UsageError

    def fails(args):
        raise error

    monkeypatch.setattr(data_commands, "settings_table", lambda cls, *shown: fails(None))
    with pytest.raises(type(error), match="an internal"):  # not "mlmp-bench: error: ..." and status 2
        main(["settings"])

    def user_error(cls, *shown):
        raise UsageError("a value the user gave")

    monkeypatch.setattr(data_commands, "settings_table", user_error)
    assert one_error_line(capsys, ["settings"]) == "mlmp-bench: error: a value the user gave"


def test_arguments_come_from_the_declarations(capsys) -> None:
    from mlmp_ros.bench.cli.arguments import declared
    from mlmp_ros.bench.offline.options import RunOptions
    from mlmp_ros.bench.suite.file import SuiteFile
    from mlmp_ros.core.config import Config

    (sub,) = build_parser()._subparsers._group_actions
    run = {a.dest: a for a in sub.choices["run"]._actions}
    assert tuple(run["mode"].choices) == declared(Config, "adaptation.mode").meta.choices and run["mode"].default is None
    assert run["batch_size"].default == RunOptions().batch_size and run["examples"].default == RunOptions().examples
    assert run["batch_size"].help.startswith(declared(RunOptions, "batch_size").meta.help)
    make = {a.dest: a for a in sub.choices["make-bags"]._actions}
    for name in ("storage", "severity", "channel_order"):
        assert make[name].default == declared(SuiteFile, name).default
    assert tuple(make["storage"].choices) == declared(SuiteFile, "storage").meta.choices
    assert list(make["severity"].choices) == [1, 2, 3, 4, 5]
    stream = {a.dest: a for a in sub.choices["stream"]._actions}
    assert tuple(stream["schedule"].choices) == declared(Config, "adaptation.schedule").meta.choices


@pytest.mark.parametrize("command", ["stream", "replay-live", "make-bags", "run", "suite", "report", "settings"])
def test_help_texts_are_whole_sentences(command) -> None:
    (sub,) = build_parser()._subparsers._group_actions
    description = sub.choices[command].description
    assert description and description.rstrip().endswith("."), description
