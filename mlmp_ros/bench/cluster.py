"""Run a suite's trials on a Ray cluster: ``mlmp-bench suite FILE --executor ray``.

Ray is the engine: every trial not yet on record becomes one Ray task
(``ray.remote`` with ``num_cpus``/``num_gpus`` per trial and ``max_retries``), Ray
places the tasks on the nodes, runs them as resources free up and retries a task whose
worker process or node died; the driver only waits (``ray.wait``) and records.  The
driver (the ``mlmp-bench`` process) stays the only writer of ``results.jsonl`` and the
example files, through the same :class:`~mlmp_ros.bench.suite.BenchSession` as the
local executor, so resume, records and reports are the same whichever executor ran:

- a trial's record is built on the worker by the same function the local executor
  uses (:func:`~mlmp_ros.bench.suite.execute_trial`) and appended by the driver when it
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

import math
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .suite import (
    BenchSession,
    ModelPool,
    SessionCounts,
    Suite,
    TrialExecutor,
    TrialJob,
    TrialOutcome,
    _reason,
    execute_trial,
    run_suite,
)

TASK_NAME = "mlmp_trial"  # a worker running a trial is titled "ray::mlmp_trial <trial key>" (ps, dashboard)
CONNECT_TIMEOUT = 10.0  # seconds for a cluster at the given address to answer
_SETTINGS = {"gpus_per_trial": (int, float), "cpus_per_trial": (int, float), "max_retries": (int,)}


class ClusterError(ValueError):
    """The Ray cluster cannot be used as asked (not installed, not reachable, too small)."""


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class RaySettings:
    """Where the cluster is and what each trial asks of it."""

    address: str | None = None  # None: RAY_ADDRESS, else a Ray instance started here
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    max_retries: int = 2  # re-runs of a trial whose worker died (3 attempts in all)
    connect_timeout: float = CONNECT_TIMEOUT  # seconds for the cluster at ``address`` to answer

    def __post_init__(self) -> None:
        problems = _check_values({key: getattr(self, key) for key in _SETTINGS})
        timeout = self.connect_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (math.isfinite(timeout) and timeout > 0):
            problems.append(f"connect_timeout must be a finite number of seconds > 0, not {timeout!r}")
        if problems:
            raise ClusterError("; ".join(problems))


def _check_values(values: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, value in values.items():
        kinds = _SETTINGS[key]
        if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
            what = "an integer" if kinds == (int,) else "a number"
            problems.append(f"{key} must be {what} >= 0, not {value!r}")
    cpus = values.get("cpus_per_trial")
    if isinstance(cpus, (int, float)) and not isinstance(cpus, bool) and 0 <= cpus < 0.01:
        problems.append("cpus_per_trial must be at least 0.01 (a trial always uses a CPU)")
    return problems


def check_cluster_section(raw: Any) -> list[str]:
    """Problems with a suite file's ``cluster`` mapping (empty list: fine)."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        return ["'cluster' must be a mapping of gpus_per_trial, cpus_per_trial and max_retries"]
    unknown = sorted(set(raw) - set(_SETTINGS))
    problems = [f"cluster: unknown keys {', '.join(map(str, unknown))} (known: {', '.join(_SETTINGS)})"] if unknown else []
    return problems + [f"cluster: {p}" for p in _check_values({k: v for k, v in raw.items() if k in _SETTINGS})]


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
@dataclass
class _WorkerCache:
    """What one Ray worker process keeps between its trials."""

    models: ModelPool = field(default_factory=ModelPool)
    frames_key: tuple | None = None
    frames: Any = None


_CACHE = _WorkerCache()


def run_trial_task(job: TrialJob, threads: int) -> dict[str, Any]:
    """The body of a trial's Ray task: load (or reuse) frames and model, run, return the outcome.

    Errors come back as a reason (recorded as "not run"); a dying process is Ray's to retry.
    """
    import ray
    import torch

    from ..core.segmenter import Segmenter
    from .runner import load_frames

    node_id = ray.get_runtime_context().get_node_id()
    out: dict[str, Any] = {"node": node_id, "hostname": socket.gethostname(), "pid": os.getpid()}
    try:
        torch.set_num_threads(max(1, threads))
        if not os.path.exists(job.bag):
            raise FileNotFoundError(
                f"bag {job.bag} is not visible on node {socket.gethostname()}: put the bags folder on a file system that every Ray "
                "node mounts at the same path"
            )
        config = job.config
        if config.device == "auto" and not ray.get_gpu_ids():
            config = config.replace(device="cpu")  # no GPU declared for this trial: do not take one
        frames_key = (job.bag, job.options.limit, _stamp(job.bag))  # a bag written again is read again
        if _CACHE.frames_key != frames_key:
            _CACHE.frames, _CACHE.frames_key = None, None
            _CACHE.frames = load_frames(job.bag, limit=job.options.limit)
            _CACHE.frames_key = frames_key
        segmenter = Segmenter(config, loaded=_CACHE.models.get(config))
        try:
            outcome = execute_trial(job, segmenter, _CACHE.frames)
        finally:
            segmenter.reset()
        out.update(ok=True, record=outcome.record, examples=outcome.examples, example_ids=outcome.example_ids)
    except Exception as err:  # noqa: BLE001 - the driver records it as "not run"
        out.update(ok=False, reason=_reason(err))
    return out


def _stamp(path: str) -> tuple[int, int]:
    """(newest modification time, total size) of a bag's files."""
    files = [p for p in Path(path).rglob("*") if p.is_file()] if os.path.isdir(path) else [Path(path)]
    stats = [f.stat() for f in files]
    return max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats)


# ------------------------------------------------------------------ driver side
def _import_ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    try:
        import ray
    except ImportError:
        raise ClusterError("--executor ray needs Ray: pip install 'mlmp_ros[cluster]' (on every node)") from None
    return ray


def _connect(ray: Any, settings: RaySettings) -> None:
    """``ray.init``: to the cluster at the address (RAY_ADDRESS when none is given), once it has answered
    within ``settings.connect_timeout``; else a Ray instance started here."""
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_cluster_answers(address, settings.connect_timeout)
    try:
        if settings.address:
            ray.init(address=settings.address, log_to_driver=False, logging_level="WARNING")
        else:
            ray.init(log_to_driver=False, logging_level="WARNING", include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ClusterError(
            f"cannot use the Ray cluster at {address or 'this machine'}: {' '.join(str(err).split())} (start one "
            "with `ray start --head`, then pass --address HOST:PORT or auto)"
        ) from None


def check_cluster_answers(address: str, timeout: float) -> None:
    """Raise :class:`ClusterError` unless a Ray cluster answers at ``address`` within ``timeout`` seconds:
    its port accepts a connection, and (``HOST:PORT`` or ``auto``) its GCS tells its cluster id."""
    endpoint = _endpoint(address)
    if endpoint is None:
        return  # an address Ray resolves itself and could not here ("auto" with none started): Ray says why
    host, port = endpoint
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
        why = "" if "://" in address else _gcs_silence(f"{host}:{port}", timeout - (time.monotonic() - started))
    except OSError as err:
        why = f"{host}:{port}: {err.strerror or err}"
    if why:
        raise ClusterError(
            f"no Ray cluster answers at {address} within {timeout:g} s ({why}); start one with `ray start --head` "
            "and pass its address (--address HOST:PORT, or auto for the one started on this machine), or allow "
            "more time with --connect-timeout"
        )


def _endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a cluster address: HOST:PORT, ray://HOST:PORT, or auto (the cluster started here)."""
    text = address.strip()
    if text == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            text = canonicalize_bootstrap_address("auto") or ""
        except Exception:  # noqa: BLE001 - none started here, or another Ray: ray.init reports it
            return None
    host, sep, port = text.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _gcs_silence(address: str, timeout: float) -> str:
    """'' when the Ray GCS at ``address`` gave its cluster id within ``timeout`` seconds, else why not.

    The client runs on a daemon thread: Ray's own connection attempt has no time limit."""
    try:
        from ray._raylet import GcsClient
    except ImportError:  # a Ray without this client: the port check is all
        return ""
    outcome: list[str] = []

    def ask() -> None:
        try:
            GcsClient(address=address).cluster_id  # noqa: B018 - the question is whether it answers
            outcome.append("")
        except Exception as err:  # noqa: BLE001 - the reason goes into the message
            outcome.append(" ".join(str(err).split()) or type(err).__name__)

    thread = threading.Thread(target=ask, name="ray-gcs-check", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    return outcome[0] if outcome else "the port is open but no Ray GCS answered"


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
        self.ray = ray = _import_ray()
        self._own_connection = not ray.is_initialized()  # else: this process's connection, as it is
        if self._own_connection:
            _connect(ray, settings)
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
    def submit(self, session: BenchSession, job: TrialJob) -> None:
        task = self._task.options(name=f"{TASK_NAME} {job.key}", **self._task_options)
        ref = task.remote(job, max(1, int(self.settings.cpus_per_trial)))
        self._pending[ref] = job
        self._collect(session, timeout=0)

    def finish(self, session: BenchSession) -> None:
        while self._pending:
            self._collect(session, timeout=None)
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

    def _collect(self, session: BenchSession, timeout: float | None) -> None:
        refs = list(self._pending)
        if not refs:
            return
        ready, _ = self.ray.wait(refs, num_returns=1 if timeout is None else len(refs), timeout=timeout)
        for ref in ready:
            self._record(session, ref)

    def _record(self, session: BenchSession, ref: Any) -> None:
        job = self._pending.pop(ref)
        try:
            out = self.ray.get(ref)
        except self.ray.exceptions.RayError as err:  # the worker died on every attempt, or its node did
            self.summary.failed += 1
            self.summary.lost += 1
            attempts = self.settings.max_retries + 1
            session.trial_not_run(
                job, f"the Ray worker running this trial was lost {attempts} time(s) ({type(err).__name__}: "
                f"{' '.join(str(err).split())[:300]})"
            )
            return
        label = self._label(out["node"], out["hostname"])
        if out["ok"]:
            self._done_on[label] += 1
            self.summary.nodes[label] = self._done_on[label]
            session.record_trial(TrialOutcome(out["record"], out["examples"], out["example_ids"]))
        else:
            self.summary.failed += 1
            session.trial_not_run(job, f"{out['reason']} (on {label})")
        if session.progress:
            nodes = " ".join(f"{name}={n}" for name, n in sorted(self._done_on.items()))
            session.bar.set_postfix_str(f"running {len(self._pending)}; done per node: {nodes}", refresh=True)

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
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[SessionCounts, ClusterSummary]:
    """:func:`~mlmp_ros.bench.suite.run_suite` with every trial a Ray task; returns counts and the summary."""
    executor = RayExecutor(settings)
    try:
        counts = run_suite(suite, resume=resume, progress=progress, on_record=on_record, executor=executor)
    finally:
        executor.close()
    return counts, executor.summary
