"""Run a suite's trials on a Ray cluster: ``mlmp-bench suite FILE --executor ray``.

Ray is the engine: every trial not yet on record becomes one Ray task
(``ray.remote`` with ``num_cpus``/``num_gpus`` per trial and ``max_retries``), Ray
places the tasks on the nodes, runs them as resources free up and retries a task whose
worker process or node died; the driver only waits (``ray.wait``) and records.  The
driver (the ``mlmp-bench`` process) stays the only writer of ``results.jsonl`` and the
example files, through the same :class:`~mlmp_ros.bench.suite.session.BenchSession` as the
local executor, so resume, records and reports are the same whichever executor ran:

- a trial's record is built on the worker by the same function the local executor
  uses (:func:`~mlmp_ros.bench.suite.trials.run_trials`) and appended by the driver when it
  arrives, once; a retried task returns one result, so it is recorded once;
- a trial that fails (a bag the worker cannot see, a model that does not load, a
  worker lost more than ``max_retries`` times) gets a "not run" record with the reason
  and the others go on;
- a killed driver takes its running tasks with it; the same command again resumes
  from the store and runs only the trials not on record.

Data: the driver writes missing bags (as the local executor does) and reads their
descriptions; the workers read the frames themselves from the same absolute path, so
the bags folder must be on a file system every node mounts at the same path.  Each
worker process keeps the last bag's decoded frames and the last model, so trials of
one scenario that land on the same worker decode and load once.

Resources: ``--gpus-per-trial`` / ``--cpus-per-trial`` (or the suite file's
``cluster: {gpus_per_trial, cpus_per_trial, max_retries}``).  A trial with no GPU
declared runs on the CPU even if the node has one (``device: auto``); ``device:
cuda`` needs GPUs declared.  Ray is imported only here, and only when used.

Connecting: ``ray.init`` has no time limit (at an address where nothing listens it
retries for minutes), so the driver first checks, within ``--connect-timeout`` seconds
(default 10), that the address accepts a connection and that a Ray GCS answers there, and
otherwise stops with the address in the message.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..offline.cache import TrialCache
from .executors import TrialExecutor, TrialSink
from .file import Suite
from .ray_connect import connect, import_ray
from .ray_settings import ClusterError, RaySettings
from .records import TrialRecord
from .run import run_suite
from .session import SessionCounts
from .trials import TrialDone, TrialJob, reason, run_trials

TASK_NAME = "mlmp_trial"  # a worker running a trial is titled "ray::mlmp_trial <trial key>" (ps, dashboard)


def ray_settings(
    suite: Suite,
    *,
    address: str | None = None,
    gpus_per_trial: float | None = None,
    cpus_per_trial: float | None = None,
    max_retries: int | None = None,
    connect_timeout: float | None = None,
) -> RaySettings:
    """The suite file's ``cluster`` section with command-line values on top; checks the devices."""
    given = {"gpus_per_trial": gpus_per_trial, "cpus_per_trial": cpus_per_trial, "max_retries": max_retries,
             "connect_timeout": connect_timeout}
    values = {**suite.cluster, **{k: v for k, v in given.items() if v is not None}}
    settings = RaySettings(address=address or None, **values)
    if not settings.gpus_per_trial:
        cuda = sorted({m for m in suite.methods if str(suite.method_config(m).device).startswith("cuda")})
        if cuda:
            raise ClusterError(
                f"device cuda ({', '.join(cuda)}) needs a GPU per trial: pass --gpus-per-trial (e.g. 1, or 0.5 to "
                "share a GPU between two trials) or set device: auto"
            )
    return settings


# ------------------------------------------------------------------ worker side
_CACHE = TrialCache()  # what one Ray worker process keeps between its trials


def run_trial_task(job: TrialJob, threads: int) -> dict[str, Any]:
    """The body of a trial's Ray task: the trial loop of every executor, on one job, in this worker.

    Errors come back as a reason (recorded as "not run"); a dying process is Ray's to retry.
    """
    import ray
    import torch

    node_id = ray.get_runtime_context().get_node_id()
    out: dict[str, Any] = {"node": node_id, "hostname": socket.gethostname(), "pid": os.getpid()}
    try:
        torch.set_num_threads(max(1, threads))
        if not os.path.exists(job.bag):
            raise FileNotFoundError(
                f"bag {job.bag} is not visible on node {socket.gethostname()}: put the bags folder on a file system "
                "that every Ray node mounts at the same path"
            )
        # no GPU declared for this trial: do not take one
        device = "cpu" if job.config.device == "auto" and not ray.get_gpu_ids() else None
        (out["done"],) = run_trials([job], _CACHE, device=device)
    except Exception as err:  # noqa: BLE001 - the driver records it as "not run"
        out["done"] = TrialDone(job, reason=reason(err))
    return out


# ------------------------------------------------------------------ driver side
@dataclass
class ClusterSummary:
    """What the cluster did in one run."""

    nodes: dict[str, int] = field(default_factory=dict)  # "hostname (ip)" -> trials finished there
    failed: int = 0  # trials recorded "not run" by a worker or after their retries
    lost: int = 0  # of those, trials whose worker died on every attempt
    wall_s: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        per_node = ", ".join(f"{name}: {n}" for name, n in sorted(self.nodes.items())) or "none"
        return (
            f"cluster: {len(self.nodes)} node(s) ran trials ({per_node}); {self.failed} failed there"
            f"{f' ({self.lost} lost their worker on every attempt)' if self.lost else ''}; {self.wall_s:.1f} s; "
            f"cluster resources: {self._resources()}"
        )


    def _resources(self) -> str:
        return ", ".join(f"{k} {v / 1e9:.1f} GB" if k == "memory" else f"{k} {v:g}" for k, v in sorted(self.resources.items()))


class RayExecutor(TrialExecutor):
    """Submits each trial as a Ray task and records the outcomes as they arrive (see module docs)."""

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.ray = ray = import_ray()
        self._own_connection = not ray.is_initialized()  # else: this process's connection, as it is
        if self._own_connection:
            connect(ray, settings)
        self.summary = ClusterSummary(resources={k: float(v) for k, v in ray.cluster_resources().items()
                                                 if k in ("CPU", "GPU", "memory")})  # fmt: skip
        self._check_fits()
        self._task = ray.remote(run_trial_task)
        self._task_options = {
            "num_cpus": settings.cpus_per_trial,
            "num_gpus": settings.gpus_per_trial,
            "max_retries": settings.max_retries,
            "retry_exceptions": False,  # a trial's own error is recorded, not retried; a lost worker is retried
        }
        self._pending: dict[Any, TrialJob] = {}
        self._labels: dict[str, str] = {}
        self._addresses: dict[str, str] = {}
        self._done_on: Counter[str] = Counter()
        self._t0 = time.perf_counter()

    def _check_fits(self) -> None:
        """Refuse a per-trial demand no node can meet (Ray would wait for it forever)."""
        s = self.settings
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        if not any(r.get("CPU", 0) >= s.cpus_per_trial and r.get("GPU", 0) >= s.gpus_per_trial for r in nodes):
            have = "; ".join(f"CPU {r.get('CPU', 0):g}, GPU {r.get('GPU', 0):g}" for r in nodes) or "no live node"
            raise ClusterError(
                f"no node of the Ray cluster has {s.cpus_per_trial:g} CPU and {s.gpus_per_trial:g} GPU for a trial "
                f"(nodes: {have}); lower --cpus-per-trial / --gpus-per-trial or add nodes"
            )

    # ---------------------------------------------------------------- executor
    def submit(self, sink: TrialSink, jobs: Sequence[TrialJob]) -> None:
        for job in jobs:
            task = self._task.options(name=f"{TASK_NAME} {job.key}", **self._task_options)
            ref = task.remote(job, max(1, int(self.settings.cpus_per_trial)))
            self._pending[ref] = job
            self._collect(sink, timeout=0)

    def finish(self, sink: TrialSink) -> None:
        while self._pending:
            self._collect(sink, timeout=None)
        self.summary.wall_s = time.perf_counter() - self._t0

    def close(self) -> None:
        """Cancel what is still running (an interrupted driver) and disconnect."""
        for ref in list(self._pending):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort: the driver is going away
                pass
        self._pending.clear()
        if self._own_connection and self.ray.is_initialized():
            self.ray.shutdown()

    def _collect(self, sink: TrialSink, timeout: float | None) -> None:
        refs = list(self._pending)
        if not refs:
            return
        ready, _ = self.ray.wait(refs, num_returns=1 if timeout is None else len(refs), timeout=timeout)
        for ref in ready:
            self._record(sink, ref)

    def _record(self, sink: TrialSink, ref: Any) -> None:
        job = self._pending.pop(ref)
        try:
            out = self.ray.get(ref)
        except self.ray.exceptions.RayError as err:  # the worker died on every attempt, or its node did
            self.summary.failed += 1
            self.summary.lost += 1
            attempts = self.settings.max_retries + 1
            why = (f"the Ray worker running this trial was lost {attempts} time(s) ({type(err).__name__}: "
                   f"{' '.join(str(err).split())[:300]})")  # fmt: skip
            sink.trial_done(TrialDone(job, reason=why))
            return
        done: TrialDone = out["done"]
        label = self._label(out["node"], out["hostname"])
        if done.record is not None:
            self._done_on[label] += 1
            self.summary.nodes[label] = self._done_on[label]
        else:
            self.summary.failed += 1
            done.reason = f"{done.reason} (on {label})"
        sink.trial_done(done)
        nodes = " ".join(f"{name}={n}" for name, n in sorted(self._done_on.items()))
        sink.status(f"running {len(self._pending)}; done per node: {nodes}")

    def _label(self, node_id: str, hostname: str) -> str:
        """"hostname (node ip)" of a node, told apart by its id where two look the same."""
        if node_id not in self._labels:
            if node_id not in self._addresses:
                self._addresses = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in self.ray.nodes()}
            label = f"{hostname} ({self._addresses.get(node_id, '?')})"
            taken = set(self._labels.values())
            self._labels[node_id] = label if label not in taken else f"{label} {node_id[:8]}"
        return self._labels[node_id]


def run_suite_on_ray(
    suite: Suite,
    settings: RaySettings,
    *,
    resume: bool = True,
    progress: bool = True,
    on_record: Callable[[TrialRecord], None] | None = None,
) -> tuple[SessionCounts, ClusterSummary]:
    """:func:`~mlmp_ros.bench.suite.run.run_suite` with every trial a Ray task; returns counts and the summary."""
    executor = RayExecutor(settings)
    try:
        counts = run_suite(suite, resume=resume, progress=progress, on_record=on_record, executor=executor)
    finally:
        executor.close()
    return counts, executor.summary
