"""core/threads.py: work on a thread that ends, and the OpenMP pool it leaves behind (none)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mlmp_ros.core.threads import in_passing_thread

REPO = Path(__file__).resolve().parents[2]


def test_the_result_comes_back_from_a_thread_that_has_ended():
    seen = []

    def work(x, *, y):
        seen.append(threading.current_thread())
        return x + y

    assert in_passing_thread(work, 2, y=3) == 5
    assert seen[0] is not threading.current_thread() and not seen[0].is_alive()


def test_the_exception_is_raised_in_the_caller_as_it_was():
    error = ValueError("bad weights")

    def fail():
        raise error

    with pytest.raises(ValueError) as caught:
        in_passing_thread(fail)
    assert caught.value is error


# Counted in a fresh process: torch's OpenMP pool threads are native threads of the process.
POOL_CHECK = """
import json, os, time, torch
from mlmp_ros.core.threads import in_passing_thread
torch.set_num_threads(4)
tasks = lambda: len(os.listdir("/proc/self/task"))
work = lambda: torch.randn(512, 512) @ torch.randn(512, 512) + torch.randn(1 << 22).exp().sum()
before = tasks()
in_passing_thread(work)
deadline = time.monotonic() + 10  # released pool threads take a moment to end
while tasks() > before and time.monotonic() < deadline:
    time.sleep(0.05)
passing = tasks()
work()
print(json.dumps({"before": before, "after_passing": passing, "after_main": tasks()}))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc (Linux)")
def test_work_on_a_passing_thread_leaves_no_thread_pool_behind():
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "4"}
    out = subprocess.run([sys.executable, "-c", POOL_CHECK], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    counts = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert counts["after_passing"] == counts["before"], counts  # the pool ended with its thread
    assert counts["after_main"] > counts["before"], counts  # the same work here keeps a pool (the check can fail)
