"""Numeric arguments of run, suite, stream and replay-live: one check, at parsing, before anything
starts (no bag read, no suite loaded, no node launched); exit 2 naming the argument.  And a Ray
address where no cluster answers is refused within the connect time limit (loopback only)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlmp_ros.bench import cli

REPO = Path(__file__).resolve().parents[3]
# Ray is not imported here: it reads its settings from the environment when first imported, and
# test_ray_cluster.py sets them (loopback only) before it imports Ray in this process.
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")

POSITIVE_NUMBER = ["0", "-5", "nan", "inf", "-inf", "fast"]
POSITIVE_INT = ["0", "-2", "1.5", "nan"]
NON_NEGATIVE_INT = ["-1", "2.5", "nan"]
NON_NEGATIVE_NUMBER = ["-1", "nan", "inf"]

# command line before the option, option, refused values
TABLE = [
    (["stream", "bags/a"], "--rate", POSITIVE_NUMBER),
    (["stream", "bags/a"], "--limit", POSITIVE_INT),
    (["stream", "bags/a"], "--frames-per-segment", POSITIVE_INT),
    (["replay-live", "bags/a"], "--rate", POSITIVE_NUMBER),
    (["replay-live", "bags/a"], "--speed", POSITIVE_NUMBER),
    (["replay-live", "bags/a"], "--limit", POSITIVE_INT),
    (["replay-live", "bags/a"], "--timeout", POSITIVE_NUMBER),
    (["run", "bags/a"], "--batch-size", POSITIVE_INT),
    (["run", "bags/a"], "--trials", POSITIVE_INT),
    (["run", "bags/a"], "--limit", POSITIVE_INT),
    (["run", "bags/a"], "--examples", NON_NEGATIVE_INT),
    (["suite", "s.yaml"], "--limit", POSITIVE_INT),
    (["suite", "s.yaml", "--executor", "ray"], "--gpus-per-trial", NON_NEGATIVE_NUMBER),
    (["suite", "s.yaml", "--executor", "ray"], "--cpus-per-trial", POSITIVE_NUMBER),
    (["suite", "s.yaml", "--executor", "ray"], "--max-retries", NON_NEGATIVE_INT),
    (["suite", "s.yaml", "--executor", "ray"], "--connect-timeout", POSITIVE_NUMBER),
]
CASES = [(head, option, value) for head, option, values in TABLE for value in values]


@pytest.fixture
def started(monkeypatch) -> list[str]:
    """What each command would start first, replaced by a recorder."""
    import mlmp_ros.bench.camera.rate_replay as rate_replay
    import mlmp_ros.bench.camera.replay_live as replay_live
    import mlmp_ros.bench.cli.suite_commands as suite_commands
    import mlmp_ros.bench.suite.run as suite_run

    calls: list[str] = []

    def recorder(name):
        def start(*args, **kwargs):
            calls.append(name)
            raise KeyboardInterrupt  # ends the command at once (status 130), whatever it was given
        return start

    monkeypatch.setattr(replay_live, "replay_live", recorder("replay-live node"))
    monkeypatch.setattr(rate_replay, "build_stream", recorder("stream bags"))
    monkeypatch.setattr(suite_run, "run_bags", recorder("run bags"))
    monkeypatch.setattr(suite_commands, "load_suite", recorder("suite file"))
    return calls


@pytest.mark.parametrize(("head", "option", "value"), CASES, ids=[f"{h[0]} {o} {v}" for h, o, v in CASES])
def test_a_bad_number_exits_2_naming_the_argument_before_anything_starts(head, option, value, started, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*head, f"{option}={value}"])
    assert exit_.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err
    assert started == []


@pytest.mark.parametrize(("argv", "what"), [
    (["replay-live", "bags/a", "--rate", "0.5", "--limit", "1", "--timeout", "3"], "replay-live node"),
    (["replay-live", "bags/a", "--speed", "2.5"], "replay-live node"),
    (["stream", "bags/a", "--rate", "30", "--limit", "1", "--frames-per-segment", "1"], "stream bags"),
    (["run", "bags/a", "--batch-size", "1", "--trials", "1", "--limit", "1", "--examples", "0"], "run bags"),
    (["suite", "s.yaml", "--limit", "1", "--executor", "ray", "--gpus-per-trial", "0", "--cpus-per-trial", "0.5",
      "--max-retries", "0", "--connect-timeout", "0.5"], "suite file"),
])  # fmt: skip
def test_good_numbers_reach_the_command(argv, what, started):
    assert cli.main(argv) == 130
    assert started == [what]


@pytest.mark.parametrize("bad", [{"rate_hz": 0}, {"rate_hz": -5.0}, {"rate_hz": float("nan")}, {"speed": 0},
                                 {"speed": -1.0}, {"speed": float("inf")}, {"limit": 0}, {"limit": -2},
                                 {"timeout": 0}, {"rate_hz": 2.0, "paced": True}])  # fmt: skip
def test_replay_live_in_python_checks_the_same_numbers_before_reading_a_bag(bad, monkeypatch, tmp_path):
    import mlmp_ros.bench.camera.replay_live as replay_live
    from mlmp_ros.core.config import Config

    def open_bag(path):
        raise AssertionError("a bag was opened")

    monkeypatch.setattr(replay_live, "open_bag", open_bag)
    with pytest.raises(cli.UsageError, match="|".join(bad)):
        replay_live.replay_live("bags/a", Config(), tmp_path, **bad)


def test_replay_live_plays_at_the_rate_or_the_speed_it_was_told():
    from mlmp_ros.bench.camera.replay_live import _pacing

    assert _pacing(1.0, 0.5, False) == {"rate_hz": 0.5}  # a rate wins over the default speed
    assert _pacing(2.5, None, False) == {"speed": 2.5}
    assert _pacing(None, None, False) == {"speed": 1.0}
    assert _pacing(1.0, None, True) == {"paced": True}


# ----------------------------------------------------------------------------- Ray
SUITE = """\
name: unreachable
core: {model: mlmp-tiny-test, weights: random, device: cpu}
methods: {noadapt: {}}
seeds: [0]
bags: BAGS
out: OUT
roots: {voc20: ROOT}
scenarios:
  - {dataset: voc20, corruptions: [original], methods: [noadapt]}
"""


def test_ray_settings_refuse_a_connect_timeout_that_is_not_a_positive_number():
    from mlmp_ros.bench.suite.ray_settings import ClusterError, RaySettings

    assert RaySettings(address="127.0.0.1:1", connect_timeout=0.5).connect_timeout == 0.5
    for bad in (0, -1.0, float("nan"), float("inf"), "5", True):
        with pytest.raises(ClusterError, match="connect_timeout"):
            RaySettings(connect_timeout=bad)


@needs_ray
def test_an_unreachable_loopback_address_is_refused_within_the_time_limit():
    from mlmp_ros.bench.suite.ray_connect import check_cluster_answers
    from mlmp_ros.bench.suite.ray_settings import ClusterError

    with pytest.raises(ClusterError, match=r"no Ray cluster answers at 127\.0\.0\.1:1 within 2 s"):
        check_cluster_answers("127.0.0.1:1", 2.0)  # nothing listens on port 1: refused at once


def _suite_on_ray(tmp_path: Path, address: str, timeout: float) -> subprocess.CompletedProcess:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.replace("BAGS", str(tmp_path / "bags")).replace("OUT", str(tmp_path / "out"))
                    .replace("ROOT", str(tmp_path / "VOC2012")))  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    # Ray's own ray.init at such an address retries for minutes: the limit here is far above the check's
    return subprocess.run(
        [sys.executable, "-m", "mlmp_ros.bench.cli", "suite", str(path), "--executor", "ray", "--address", address,
         "--connect-timeout", f"{timeout:g}", "--no-progress"],
        capture_output=True, text=True, timeout=150, cwd=REPO, env=env,
    )  # fmt: skip


@needs_ray
@pytest.mark.timeout(400)
def test_suite_on_ray_exits_2_naming_an_address_where_no_cluster_answers(tmp_path):
    refused = _suite_on_ray(tmp_path, "127.0.0.1:1", 2.0)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "no Ray cluster answers at 127.0.0.1:1 within 2 s" in refused.stderr
    assert not (tmp_path / "bags").exists()  # nothing started: not even the bags were written
    # a loopback port that accepts connections but is no Ray cluster: the GCS check's time limit ends it
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        quiet = _suite_on_ray(tmp_path, address, 3.0)
        took = time.monotonic() - started
    assert quiet.returncode == 2, quiet.stderr[-2000:]
    assert f"no Ray cluster answers at {address} within 3 s" in quiet.stderr
    assert took >= 3.0  # it waited for the time limit, then gave up
