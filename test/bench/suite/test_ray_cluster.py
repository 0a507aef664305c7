"""`mlmp-bench suite --executor ray` on a real Ray cluster started here, on loopback.

One head node (127.0.0.1, 2 CPUs, its own temp folder, no dashboard, no usage stats,
no token written to ~/.ray) serves every test of the module and is stopped afterwards,
also when a test fails.  This process connects to it once (one Ray job, so its worker
processes import torch once); the driver-kill test runs a second driver as a process.
The suites use the tiny random CLIP on miniature VOC bags.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mlmp_ros.bench import cli
from mlmp_ros.bench.suite.file import SuiteError, load_suite
from mlmp_ros.bench.suite.ray_executor import TASK_NAME, RayExecutor, ray_settings, run_suite_on_ray
from mlmp_ros.bench.suite.ray_settings import ClusterError, RaySettings
from mlmp_ros.bench.suite.records import DONE, NOT_RUN, TrialRecord
from mlmp_ros.bench.suite.run import run_suite
from mlmp_ros.bench.suite.store import ResultStore

from .test_runner import write_voc

REPO = Path(__file__).resolve().parents[3]
RAY = Path(sys.executable).with_name("ray")
pytestmark = [pytest.mark.filterwarnings("ignore:RANDOM WEIGHTS"), pytest.mark.timeout(180)]
# Fields that say when and where a trial ran, not what it computed.
WHEN_WHERE = {"started", "finished", "wall_s", "timing", "host"}


def _pids_under(root: int) -> set[int]:
    """``root`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo.extend(children.get(pid, []))
    return out


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


# Loopback only: Ray otherwise swaps 127.0.0.1 for the machine's address (on Linux this
# variable only decides that); usage stats off; no authentication token on a loopback cluster.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


@dataclasses.dataclass
class Cluster:
    address: str
    head: subprocess.Popen
    env: dict[str, str]

    def trial_workers(self) -> dict[int, str]:
        """Worker processes of this cluster running a trial right now: pid -> trial key."""
        prefix = f"ray::{TASK_NAME} "
        titles = {pid: _title(pid) for pid in _pids_under(self.head.pid)}
        return {pid: t[len(prefix):] for pid, t in titles.items() if t.startswith(prefix)}


@pytest.fixture(scope="module")
def cluster():
    temp = tempfile.mkdtemp(prefix="mlmp-ray-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {
        **os.environ,
        **RAY_ENV,
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "OMP_NUM_THREADS": "1",
        # keep this process's idle workers (torch imported) while the killed driver's job runs
        "RAY_num_workers_soft_limit": "6",
    }
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--port=0", "--num-cpus=2",
         "--num-gpus=0", f"--temp-dir={temp}", "--include-dashboard=false", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    try:
        deadline = time.monotonic() + 60
        address_file = Path(temp, "ray_current_cluster")  # port 0: Ray picks a free one and writes it here
        while not (address_file.is_file() and list(Path(temp).glob("session_*/sockets/raylet"))):
            assert head.poll() is None, head.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not come up within 60 s"
            time.sleep(0.2)
        address = address_file.read_text().strip()
        assert address.startswith("127.0.0.1:"), address  # loopback only
        import ray

        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        yield Cluster(address, head, env)
    finally:
        import ray

        ray.shutdown()
        # Only the processes this fixture started: the head's tree and its process group.
        pids = _pids_under(head.pid)
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in pids - {os.getpid()}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        head.wait(timeout=30)
        head.stderr.close()
        time.sleep(0.2)  # let the killed processes' last writes land before removing their folder
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        subprocess.run(["rm", "-rf", temp], check=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("data")
    write_voc(tmp / "VOC2012", n=4)
    return tmp


def suite_file(folder: Path, data: Path, name: str, **changes) -> Path:
    spec = {
        "name": name,
        "core": {"model": "mlmp-tiny-test", "weights": "random", "device": "auto", "adaptation": {"steps": 2}},
        "methods": {"noadapt": {}, "tent": {}, "mlmp": {"adaptation.lr": 0.01}},
        "seeds": [0, 1],
        "examples": 2,
        "bags": str(data / "bags"),
        "out": str(folder / name),
        "roots": {"voc20": str(data / "VOC2012"), "context59": str(data / "no_such_folder")},
        "scenarios": [
            {"dataset": "voc20", "corruptions": ["original"], "methods": ["noadapt", "mlmp"]},
            {"dataset": "context59", "methods": ["noadapt"]},
        ],
    }
    spec.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def by_key(records: list[TrialRecord]) -> dict[str, TrialRecord]:
    keys = [r.key for r in records]
    assert len(keys) == len(set(keys)), "a trial was recorded twice"
    return {r.key: r for r in records}


def test_ray_records_equal_the_local_executors(cluster: Cluster, data: Path, tmp_path: Path, capfd) -> None:
    local_suite = load_suite(suite_file(tmp_path, data, "local"))
    ray_suite = load_suite(suite_file(tmp_path, data, "ray"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray trial (1 CPU): float sums depend on the thread count
    try:
        local = run_suite(local_suite, progress=False)
    finally:
        torch.set_num_threads(threads)
    counts, summary = run_suite_on_ray(ray_suite, RaySettings(address=cluster.address), progress=True)
    bar = capfd.readouterr().err
    assert "trials:" in bar and "6/6" in bar and "done per node:" in bar and "(127.0.0.1)=4" in bar
    assert (counts.run, counts.reused, counts.not_run) == (local.run, local.reused, local.not_run) == (4, 0, 2)

    a, b = by_key(ResultStore(local_suite.out).read()), by_key(ResultStore(ray_suite.out).read())
    assert set(a) == set(b) and len(a) == 6
    for key, ra in a.items():
        rb = b[key]
        assert {k: v for k, v in ra.to_json().items() if k not in WHEN_WHERE} == {
            k: v for k, v in rb.to_json().items() if k not in WHEN_WHERE
        }, key
        if ra.status == DONE:
            assert (rb.seed, rb.trial) == (ra.seed, ra.trial) and rb.device == "cpu"
            assert rb.metrics["raw"]["mIoU"] == ra.metrics["raw"]["mIoU"] and rb.metrics_state == ra.metrics_state
        else:
            assert "no_such_folder" in rb.reason  # the driver could not make that bag: recorded, not sent
    saved = [r.examples for r in a.values() if r.examples]
    assert len(saved) == 2  # trial 0 of each method
    for rel in saved:
        ea, eb = np.load(local_suite.out / rel), np.load(ray_suite.out / rel)
        assert sorted(ea.files) == sorted(eb.files)
        for name in ea.files:
            np.testing.assert_array_equal(ea[name], eb[name])
    assert sum(summary.nodes.values()) == 4 and len(summary.nodes) == 1 and summary.failed == 0
    assert "127.0.0.1" in next(iter(summary.nodes))

    # resume and reports do not care which executor wrote the store
    again = run_suite(ray_suite, progress=False)
    assert (again.run, again.reused) == (0, 4)


class HiddenBags(RayExecutor):
    """Sends every trial with a bag path that the workers do not have."""

    def submit(self, sink, jobs):
        super().submit(sink, [dataclasses.replace(job, bag=job.bag + "-not-mounted-here") for job in jobs])


def test_a_bag_the_worker_cannot_see_fails_that_trial_with_the_reason(
    cluster: Cluster, data: Path, tmp_path: Path
) -> None:
    suite = load_suite(suite_file(tmp_path, data, "hidden", seeds=[0],
                                  scenarios=[{"dataset": "voc20", "methods": ["noadapt"]}]))  # fmt: skip
    executor = HiddenBags(RaySettings(address=cluster.address))
    try:
        counts = run_suite(suite, progress=False, executor=executor)
    finally:
        executor.close()
    assert (counts.run, counts.not_run) == (0, 1) and executor.summary.failed == 1
    (record,) = ResultStore(suite.out).read()
    assert record.status == NOT_RUN
    assert "-not-mounted-here is not visible on node" in record.reason and "127.0.0.1" in record.reason
    assert "file system that every Ray node mounts" in record.reason


def test_killed_workers_are_retried_within_bounds_and_each_trial_recorded_once(
    cluster: Cluster, data: Path, tmp_path: Path
) -> None:
    """Trial A's worker is killed on its first attempt and on its retry (max_retries 1: lost),
    trial B's once (retried, finished); every other trial goes on."""
    suite = load_suite(suite_file(tmp_path, data, "kill", seeds=[0, 1, 2],
                                  scenarios=[{"dataset": "voc20", "methods": ["tent", "mlmp"]}],
                                  core={"model": "mlmp-tiny-test", "weights": "random", "adaptation": {"steps": 10}}))  # fmt: skip
    budget = [2, 1]  # kills for the first and the second trial seen running
    kills: dict[str, list[int]] = {}
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set() and sum(budget) > sum(map(len, kills.values())):
            for pid, key in cluster.trial_workers().items():
                if key not in kills and len(kills) < len(budget):
                    kills[key] = []
                if key in kills and len(kills[key]) < budget[list(kills).index(key)] and pid not in kills[key]:
                    os.kill(pid, signal.SIGKILL)
                    kills[key].append(pid)
            time.sleep(0.005)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        counts, summary = run_suite_on_ray(suite, RaySettings(address=cluster.address, max_retries=1), progress=False)
    finally:
        stop.set()
        thread.join(10)
    (a, pids_a), (b, pids_b) = kills.items()
    assert len(pids_a) == 2 and len(pids_b) == 1  # A ran again in a new process after its first kill
    by_key(ResultStore(suite.out).read())  # no key twice
    records = {(r.method, f"seed{r.seed}"): r for r in ResultStore(suite.out).read()}  # one per trial
    lost, retried = records[tuple(a.split("|")[2::4])], records[tuple(b.split("|")[2::4])]
    assert len(records) == 6 and (counts.run, counts.not_run) == (5, 1) and (summary.failed, summary.lost) == (1, 1)
    assert lost.status == NOT_RUN and "worker running this trial was lost 2 time(s)" in lost.reason
    assert retried.status == DONE and retried.key == b and retried.loss_per_step
    assert sorted((r.method, r.seed) for r in records.values()) == [
        (m, s) for m in ("mlmp", "tent") for s in (0, 1, 2)
    ]

    resumed = []
    again, _ = run_suite_on_ray(suite, RaySettings(address=cluster.address), progress=False,
                                on_record=lambda r: resumed.append(r.key))  # fmt: skip
    assert (again.run, again.reused) == (1, 5) and resumed == [a]
    done = [r.key for r in ResultStore(suite.out).read() if r.status == DONE]
    assert len(done) == len(set(done)) == 6


def test_rerun_after_the_driver_is_killed_does_no_finished_trial_again(
    cluster: Cluster, data: Path, tmp_path: Path, capsys
) -> None:
    path = suite_file(tmp_path, data, "driver", seeds=[0, 1, 2],
                      scenarios=[{"dataset": "voc20", "methods": ["tent", "mlmp"]}])  # fmt: skip
    store = tmp_path / "driver" / "results.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlmp_ros.bench.cli", "suite", str(path), "--executor", "ray", "--address",
         cluster.address, "--no-progress", "--cpus-per-trial", "2"],  # one worker process to start
        cwd=REPO, env={**cluster.env, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if store.is_file() and store.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-3000:]
    before = ResultStore(store).read()
    assert 1 <= len(before) < 6 and all(r.status == DONE for r in before)

    resumed: list[str] = []
    counts, _ = run_suite_on_ray(load_suite(path), RaySettings(address=cluster.address), progress=False,
                                 on_record=lambda r: resumed.append(r.key))  # fmt: skip
    assert counts.reused == len(before) and counts.run == 6 - len(before)
    assert not set(resumed) & {r.key for r in before}
    after = ResultStore(store).read()
    assert after[: len(before)] == before
    assert len(by_key(after)) == 6 and all(r.status == DONE for r in after)

    # the command's summary (this process's Ray connection is reused)
    assert cli.main(["suite", str(path), "--executor", "ray", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "0 trials run, 6 already in the store, 0 not run" in out and "cluster: 0 node(s) ran trials" in out


def test_resources_are_checked_before_anything_runs(cluster: Cluster, data: Path, tmp_path: Path) -> None:
    suite = load_suite(suite_file(tmp_path, data, "big"))
    with pytest.raises(ClusterError, match="no node of the Ray cluster has 1 CPU and 1 GPU"):
        run_suite_on_ray(suite, ray_settings(suite, address=cluster.address, gpus_per_trial=1), progress=False)
    cuda = load_suite(suite_file(tmp_path, data, "cuda", core={"model": "mlmp-tiny-test", "device": "cuda"}))
    with pytest.raises(ClusterError, match="needs a GPU per trial"):
        ray_settings(cuda)
    with pytest.raises(SuiteError, match="cluster: gpus_per_trial must be a number >= 0"):
        load_suite(suite_file(tmp_path, data, "bad", cluster={"gpus_per_trial": -1, "nodes": 3}))
    assert load_suite(suite_file(tmp_path, data, "ok", cluster={"gpus_per_trial": 0.5})).cluster == {"gpus_per_trial": 0.5}
    assert not (tmp_path / "big").exists()  # refused before any bag or record was written
