"""Benchmark suites: data sets x corruptions x methods x trials from one YAML file.

A suite names a base core config, per-method overrides, the batch size and trial
seeds, the data set roots and a bags folder (bags are written there on first use as
``<bags>/<dataset>/<corruption>``), and the scenarios.  Each finished trial is
appended to a JSON-lines store at once (flushed and fsynced), so a killed run resumes
where it stopped: a trial whose key (data set, corruption, method, backbone, hash of
the effective config, trial, seed) already has a finished record is not run again,
and a changed config changes the hash, so old results are never silently reused.

A scenario that fails (missing data, a bag that cannot be read, out of memory) is
recorded as "not run: <reason>" and the suite goes on; a later resume tries it again.

The store (``<out>/results.jsonl``) holds one JSON object per line and trial: a
:class:`mlmp_ros.bench.records.TrialRecord` (schema "mlmp-bench-result/2"; version 1
stores still read).  Every record, finished or not, carries ``key``, ``status`` ("done"
or "not run") and ``reason``; the scenario (``dataset``, ``base_dataset``,
``condition``, ``corruption``, ``bag``); how its images were made, from the bag
(``severity``, ``channel_order``, ``corruption_draws``, ``corruption_library``,
``presized``, ``split_size``, ``frame_count``); and every setting that changes a
number (``method``, ``backbone``, ``weights``, ``attention``, ``precision``, ``mode``,
``steps``, ``lr``, ``resize``, ``window``, ``stride``, ``batch_size``, ``shuffle``,
``limit``, ``trial``, ``seed``, ``config_hash`` and the flat effective ``config``).
Finished trials add the runner's results (``frames`` scored, ``batches``, ``metrics``
with per-class ``IoU`` and ``out_of_range_pixels``, ``metrics_state``, ``timing``,
``loss_per_step``, ``layer_weights``, ``adaptation_status``, ``notes``,
``trainable_parameters``, ``class_names``), ``examples`` (an .npz path relative to the
store's folder), ``random_weights``, ``device``, ``started``/``finished``/``wall_s``,
``versions`` and ``host``.  Relative paths in a suite file are relative to the working
directory; a suite file that does not exist there is looked up among the installed
suites (``config/suites``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import yaml

from .. import __version__
from ..core.backbone import LoadedCLIP, load_clip, resolve_device
from ..core.config import Config, ConfigError, flatten
from ..core.segmenter import Segmenter
from .bags import STORAGES, BagError, open_bag
from .corruptions import CHANNEL_ORDERS, CORRUPTIONS, DRAWS, ORIGINAL, SCENARIOS
from .datasets import DatasetError, open_dataset, resolve_name
from .make_bags import make_bag
from .records import SCHEMA, RecordError, TrialRecord
from .runner import (
    BenchFrames,
    RunError,
    RunOptions,
    load_frames,
    run_trial,
    save_examples,
    segmenter_config,
)

STORE_NAME = "results.jsonl"
NOT_RUN = "not run"
DONE = "done"
SKIPPED_PREFIX = "skipped by the suite: "  # reason of trials a suite file skips on purpose
# Settings that do not change a result, left out of the config hash.
_UNHASHED = ("device", "cache_dir", "offline", "flush_denormal", "compile")  # where and how fast, not what
# Settings every scenario takes from its bag.
_FROM_BAG = ("classes", "resize", "window", "stride")
# What a record copies from its bag's description: how the images were made and how many the split has.
_BAG_SETTINGS = (
    "severity", "channel_order", "corruption_draws", "corruption_library", "presized", "split_size", "frame_count",
)  # fmt: skip


class SuiteError(ValueError):
    """A suite file is invalid; the message lists every problem found."""


class StoreError(ValueError):
    """A results store cannot be read or written."""


# --------------------------------------------------------------------- store
class ResultStore:
    """Append-only JSON lines, one record per trial, durable after every append.

    A last line without its newline is what a killed writer leaves; it is ignored
    when reading and cut off before the next append.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path).expanduser()
        if path.is_dir() or not path.suffix:
            path = path / STORE_NAME
        self.path = path
        self._checked = False

    @property
    def folder(self) -> Path:
        return self.path.parent

    def read(self) -> list[dict[str, Any]]:
        """Every complete record, in the order written."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StoreError(f"cannot read the results store {self.path}: {err}") from err
        lines = data.split(b"\n")
        records = []
        for number, line in enumerate(lines[:-1], 1):  # lines[-1] is empty or torn
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise StoreError(
                    f"{self.path}:{number} is not a JSON record ({err.msg}); the store was edited or written by "
                    "two runs at once: remove that line to go on"
                ) from None
            try:
                records.append(TrialRecord.from_json(record).to_json())  # older schemas read as the current one
            except RecordError as err:
                raise StoreError(f"{self.path}:{number} is not an mlmp-bench result: {err}") from None
        return records

    def _cut_torn_tail(self) -> None:
        try:
            with open(self.path, "rb+") as fh:
                data = fh.read()
                if data and not data.endswith(b"\n"):
                    fh.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass

    def append(self, record: Mapping[str, Any] | TrialRecord) -> None:
        """Write one record (in the current schema) and make it durable before returning."""
        record = record if isinstance(record, TrialRecord) else TrialRecord.from_json(record)
        line = json.dumps(record.to_json(), sort_keys=True, allow_nan=True, default=json_default) + "\n"
        try:
            if not self._checked:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._cut_torn_tail()
                self._checked = True
            with open(self.path, "ab") as fh:
                fh.write(line.encode())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise StoreError(f"cannot write the results store {self.path}: {err}") from err


def json_default(value: Any) -> Any:
    """``json.dumps`` ``default`` for NumPy values and arrays and paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a result record")


def trial_key(dataset: str, corruption: str, method: str, backbone: str, config_hash: str, trial: int, seed: int) -> str:
    """The identity of one trial's result (the resume key)."""
    return f"{dataset}|{corruption}|{method}|{backbone}|{config_hash}|trial{trial}|seed{seed}"


def config_hash(config: Config, options: RunOptions, frames_info: Mapping[str, Any]) -> str:
    """A short hash of everything that decides a trial's numbers except its seed."""
    flat = {k: v for k, v in config.flat().items() if k not in _UNHASHED}
    ids = frames_info.get("image_ids") or []
    payload = {
        "config": flat,
        "batch_size": options.batch_size,
        "shuffle": options.shuffle,
        "data": {
            key: frames_info.get(key)
            for key in ("dataset", "split", "corruption", "severity", "channel_order", "class_key", "ignore_index")
        },
        "frames": frames_info.get("frames"),
        # only when set, so clean images keep the hashes of earlier versions
        **({"corruption_draws": frames_info["corruption_draws"]} if frames_info.get("corruption_draws") else {}),
        "image_ids": hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------- suite
@dataclass(frozen=True)
class Scenario:
    """One data set under one image condition, with the methods run on it."""

    dataset: str  # e.g. voc20, acdc_fog
    corruption: str
    methods: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.corruption}"


@dataclass
class Suite:
    """A parsed suite file (see config/suites/paper87.yaml for every key)."""

    name: str
    core: dict[str, Any]
    methods: dict[str, dict[str, Any]]
    scenarios: list[Scenario]
    roots: dict[str, str] = field(default_factory=dict)
    bags: Path = Path("bench_bags")
    out: Path = Path("bench_results")
    storage: str = "mcap"
    severity: int = 5
    channel_order: str = "bgr"
    presize: bool = True
    limit: int | None = None
    batch_size: int = 2
    seeds: tuple[int, ...] = (0, 1, 2)
    shuffle: bool = True
    examples: int = 3
    skip: list[dict[str, str]] = field(default_factory=list)
    source: Path | None = None
    cluster: dict[str, Any] = field(default_factory=dict)  # per-trial resources with --executor ray (bench.cluster)

    @property
    def options(self) -> RunOptions:
        return RunOptions(self.batch_size, tuple(self.seeds), self.shuffle, self.limit, self.examples)

    def method_config(self, method: str) -> Config:
        """The base core config with the method and its overrides (classes etc. come from each bag)."""
        return method_config(self.core, self.methods.get(method), method)

    def skip_reason(self, scenario: Scenario, method: str) -> str | None:
        for rule in self.skip:
            if _matches(rule.get("dataset"), scenario.dataset) and rule.get("corruption", scenario.corruption) == (
                scenario.corruption
            ) and rule.get("method", method) == method:
                return rule["reason"]
        return None

    def root_for(self, dataset: str) -> str | None:
        base, _ = resolve_name(dataset)
        return self.roots.get(dataset) or self.roots.get(base)

    def bag_path(self, scenario: Scenario) -> Path:
        folder = self.bags / f"first{self.limit}" if self.limit else self.bags
        return folder / scenario.dataset / scenario.corruption

    def counts(self) -> dict[str, int]:
        runs = sum(len(s.methods) for s in self.scenarios)
        return {"scenarios": len(self.scenarios), "method_runs": runs, "trials": runs * len(self.seeds)}


def method_config(core: Mapping[str, Any], overrides: Mapping[str, Any] | None, method: str) -> Config:
    """A suite's core settings with one method's overrides, as a validated core config."""
    return Config.from_mapping({**flatten(core), **flatten(overrides or {}), "adaptation.method": method})


def _matches(pattern: str | None, dataset: str) -> bool:
    if pattern is None:
        return True
    return pattern == dataset or pattern == resolve_name(dataset)[0]


_TOP_KEYS = {
    "name", "description", "core", "methods", "scenarios", "roots", "bags", "out", "storage", "severity",
    "channel_order", "presize", "limit", "batch_size", "trials", "seeds", "shuffle", "examples", "skip",
    "cluster",
}  # fmt: skip


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and check a suite file; loads no model and touches no data."""
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SuiteError(f"suite file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SuiteError(f"cannot read suite file {path}: {err}") from None
    except yaml.YAMLError as err:
        raise SuiteError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, Mapping):
        raise SuiteError(f"{path} must hold a mapping with at least 'core', 'methods' and 'scenarios'")
    return parse_suite(data, source=path)


def parse_suite(data: Mapping[str, Any], *, source: Path | None = None) -> Suite:
    """Build a :class:`Suite` from a mapping, naming every problem at once."""
    from ..core.methods import METHODS

    where = f"{source}: " if source else ""
    p: list[str] = []
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        p.append(f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(_TOP_KEYS))})")

    core = data.get("core") or {}
    if not isinstance(core, Mapping):
        p.append("'core' must be a mapping of core settings (model, weights, device, adaptation, ...)")
        core = {}
    raw_methods = data.get("methods")
    if isinstance(raw_methods, (list, tuple)):
        raw_methods = {m: {} for m in raw_methods}
    if not isinstance(raw_methods, Mapping) or not raw_methods:
        p.append("'methods' must list at least one method (a list, or a mapping of method -> overrides)")
        raw_methods = {}
    methods: dict[str, dict[str, Any]] = {}
    for name, overrides in raw_methods.items():
        if name not in METHODS:
            p.append(f"methods: unknown method '{name}'; choose from {', '.join(sorted(METHODS))}")
        elif overrides is not None and not isinstance(overrides, Mapping):
            p.append(f"methods.{name} must be a mapping of core overrides or empty")
        else:
            methods[str(name)] = dict(overrides or {})
    for what, mapping in [("core", core), *((f"methods.{m}", o) for m, o in methods.items())]:
        fixed = [k for k in flatten(mapping) if k in _FROM_BAG]
        if fixed:
            p.append(f"{what}: {', '.join(fixed)} come from each bag's data set; remove them")

    def integer(key: str, default: int | None, low: int, high: int | None = None) -> int | None:
        value = data.get(key, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            p.append(f"'{key}' must be an integer {bound}, not {value!r}")
            return default
        return value

    batch_size = integer("batch_size", 2, 1)
    severity = integer("severity", 5, 1, 5)
    limit = integer("limit", None, 1)
    examples = integer("examples", 3, 0)
    trials = integer("trials", None, 1)
    seeds = data.get("seeds")
    if seeds is None:
        seeds = list(range(trials or 3))
    elif not isinstance(seeds, list) or not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                                                          for s in seeds):
        p.append(f"'seeds' must be a list of integers >= 0, not {seeds!r}")
        seeds = [0]
    elif trials is not None and trials != len(seeds):
        p.append(f"'trials' is {trials} but {len(seeds)} seeds are listed")
    elif len(set(seeds)) != len(seeds):
        p.append(f"'seeds' must differ, got {seeds}")
    storage = data.get("storage", "mcap")
    if storage not in STORAGES:
        p.append(f"'storage' must be one of {', '.join(STORAGES)}, not {storage!r}")
    channel_order = data.get("channel_order", "bgr")
    if channel_order not in CHANNEL_ORDERS:
        p.append(f"'channel_order' must be one of {', '.join(CHANNEL_ORDERS)}, not {channel_order!r}")
    for key in ("shuffle", "presize"):
        if not isinstance(data.get(key, True), bool):
            p.append(f"'{key}' must be true or false")
    roots = data.get("roots") or {}
    if not isinstance(roots, Mapping) or any(not isinstance(v, str) for v in roots.values()):
        p.append("'roots' must map data set names to folders")
        roots = {}
    for name in roots:
        try:
            if name != "acdc":
                resolve_name(name)
        except DatasetError as err:
            p.append(f"roots: {err}")

    scenarios = _parse_scenarios(data.get("scenarios"), methods, p)
    skip = _parse_skip(data.get("skip"), p)
    from .cluster import check_cluster_section

    p.extend(check_cluster_section(data.get("cluster")))

    if not p:
        for method, overrides in methods.items():
            try:
                method_config(core, overrides, method)
            except ConfigError as err:
                p.append(f"core config for {method}: {err}")
    if p:
        raise SuiteError(where + "; ".join(p))
    return Suite(
        name=str(data.get("name") or (source.stem if source else "suite")),
        core=dict(core),
        methods=methods,
        scenarios=scenarios,
        roots={str(k): str(v) for k, v in roots.items()},
        bags=Path(str(data.get("bags", "bench_bags"))).expanduser(),
        out=Path(str(data.get("out", "bench_results"))).expanduser(),
        storage=storage,
        severity=severity,
        channel_order=channel_order,
        presize=data.get("presize", True),
        limit=limit,
        batch_size=batch_size,
        seeds=tuple(seeds),
        shuffle=data.get("shuffle", True),
        examples=examples,
        skip=skip,
        source=source,
        cluster=dict(data.get("cluster") or {}),
    )


def _parse_scenarios(raw: Any, methods: Mapping[str, Any], p: list[str]) -> list[Scenario]:
    if not isinstance(raw, list) or not raw:
        p.append("'scenarios' must be a list of {dataset(s), corruptions, methods} entries")
        return []
    out: list[Scenario] = []
    seen: set[tuple[str, str]] = set()
    for n, entry in enumerate(raw, 1):
        if not isinstance(entry, Mapping):
            p.append(f"scenario {n} must be a mapping")
            continue
        extra = set(entry) - {"dataset", "datasets", "corruptions", "methods"}
        if extra:
            p.append(f"scenario {n}: unknown keys {', '.join(sorted(extra))}")
        names = entry.get("datasets", entry.get("dataset"))
        names = [names] if isinstance(names, str) else names
        if not names or not isinstance(names, list):
            p.append(f"scenario {n}: give 'dataset' or a 'datasets' list")
            continue
        corruptions = entry.get("corruptions", [ORIGINAL])
        if corruptions == "all":
            corruptions = list(SCENARIOS)
        elif corruptions == "corrupted":
            corruptions = list(CORRUPTIONS)
        elif isinstance(corruptions, str):
            corruptions = [corruptions]
        bad = [c for c in corruptions if c not in SCENARIOS]
        if bad:
            p.append(f"scenario {n}: unknown corruptions {', '.join(map(str, bad))} (use 'all' or names of {SCENARIOS})")
            continue
        chosen = entry.get("methods") or list(methods)
        missing = [m for m in chosen if m not in methods]
        if missing:
            p.append(f"scenario {n}: methods {', '.join(missing)} are not in the suite's 'methods'")
            continue
        for name in names:
            try:
                key, condition = resolve_name(str(name))
            except DatasetError as err:
                p.append(f"scenario {n}: {err}")
                continue
            dataset = f"{key}_{condition}" if condition else key
            for corruption in corruptions:
                if (dataset, corruption) in seen:
                    p.append(f"scenario {n}: {dataset}/{corruption} is listed twice")
                seen.add((dataset, corruption))
                out.append(Scenario(dataset, corruption, tuple(m for m in methods if m in chosen)))
    return out


def _parse_skip(raw: Any, p: list[str]) -> list[dict[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        p.append("'skip' must be a list of {dataset, corruption, method, reason} entries")
        return []
    rules = []
    for n, rule in enumerate(raw, 1):
        if not isinstance(rule, Mapping) or not rule.get("reason") or set(rule) - {"dataset", "corruption",
                                                                                   "method", "reason"}:
            p.append(f"skip {n}: needs a 'reason' and may name dataset, corruption and method")
            continue
        rules.append({str(k): str(v) for k, v in rule.items()})
    return rules


def apply_overrides(
    suite: Suite,
    *,
    out: str | None = None,
    bags: str | None = None,
    roots: Mapping[str, str] | None = None,
    limit: int | None = None,
    core: Mapping[str, Any] | None = None,
) -> Suite:
    """A copy of ``suite`` with command-line changes, checked again."""
    changes: dict[str, Any] = {}
    if out is not None:
        changes["out"] = Path(out).expanduser()
    if bags is not None:
        changes["bags"] = Path(bags).expanduser()
    if roots:
        changes["roots"] = {**suite.roots, **roots}
    if limit is not None:
        if limit < 1:
            raise SuiteError(f"limit must be a positive number of images, not {limit}")
        changes["limit"] = limit
    if core:
        fixed = [k for k in core if k in _FROM_BAG]
        if fixed:
            raise SuiteError(f"{', '.join(fixed)} come from each bag's data set and cannot be set")
        changes["core"] = {**flatten(suite.core), **dict(core)}
        for method in suite.methods:
            try:
                method_config(changes["core"], suite.methods[method], method)
            except ConfigError as err:
                raise SuiteError(f"core config for {method}: {err}") from None
    return dataclasses.replace(suite, **changes)


def describe_suite(suite: Suite) -> str:
    """The scenario list and counts, as printed by ``suite --list``."""
    lines = [f"suite {suite.name}: {len(suite.scenarios)} scenarios"]
    width = max(len(s.name) for s in suite.scenarios)
    for n, s in enumerate(suite.scenarios, 1):
        lines.append(f"{n:3d}  {s.name:<{width}}  {', '.join(s.methods)}")
    c = suite.counts()
    seeds = ", ".join(map(str, suite.seeds))
    lines.append(
        f"{c['scenarios']} scenarios, {c['method_runs']} method runs, {c['trials']} trials "
        f"(seeds {seeds}; batch {suite.batch_size}; limit {suite.limit or 'none'})"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- execution
class ModelPool:
    """Loads each backbone once and shares it between methods (weights are reset after each)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._loaded: LoadedCLIP | None = None

    def get(self, config: Config) -> LoadedCLIP:
        key = (config.model, config.weights, config.cache_dir, config.offline, config.device)
        if key != self._key:
            self._loaded = None
            torch.manual_seed(0)  # random test weights are the same in every process
            self._loaded = load_clip(
                config.model,
                config.weights,
                cache_dir=config.cache_dir or None,
                offline=config.offline,
                device=resolve_device(config.device),
            )
            self._key = key
        return self._loaded


def ensure_bag(
    suite: Suite,
    scenario: Scenario,
    *,
    progress: bool = False,
) -> Path:
    """The scenario's bag, written from the data set when missing; an existing bag must match."""
    path = suite.bag_path(scenario)
    if path.exists():
        check_bag_matches(path, scenario.dataset, scenario.corruption, suite.severity, suite.channel_order,
                          presize=suite.presize, storage=suite.storage, limit=suite.limit)  # fmt: skip
        return path
    root = suite.root_for(scenario.dataset)
    generated = scenario.dataset == "world" or scenario.dataset.startswith("world_stream_")  # mlmp_ros.world
    if not root and not generated:
        raise DatasetError(f"no data root for {scenario.dataset}: add it under 'roots' in the suite file")
    dataset = open_dataset(scenario.dataset, root or ".")
    return make_bag(
        dataset,
        scenario.corruption,
        path,
        storage=suite.storage,
        severity=suite.severity,
        channel_order=suite.channel_order,
        presize=suite.presize,
        limit=suite.limit,
        progress=progress,
    )


_UNSET = object()


def check_bag_matches(
    path: Path,
    dataset: str,
    corruption: str,
    severity: int,
    channel_order: str,
    *,
    presize: bool | None = None,
    storage: str | None = None,
    limit: int | object | None = _UNSET,
) -> None:
    """Refuse to reuse a bag written for another data set, corruption setting, size, storage or frame count.

    ``presize``, ``storage`` and ``limit`` are compared when given (``limit=None`` asks
    for the whole split).  A bag written before these were recorded is refused too, as is
    one whose corruptions were drawn otherwise than the reference draws them.
    """
    info = open_bag(path).info
    wanted: dict[str, Any] = {"dataset": dataset, "corruption": corruption}
    if corruption != ORIGINAL:
        wanted.update(severity=severity, channel_order=channel_order, corruption_draws=DRAWS)
    if presize is not None:
        wanted["presized"] = presize
    if storage is not None:
        wanted["storage"] = storage
    if limit is not _UNSET:
        split = info.get("split_size")
        wanted["limit"] = None if limit is not None and isinstance(split, int) and limit >= split else limit
    wrong = [
        f"{k} {info[k]!r} (wanted {v!r})" if k in info else f"no recorded {k} (wanted {v!r})"
        for k, v in wanted.items()
        if k not in info or info[k] != v
    ]
    if wrong:
        raise BagError(
            f"bag {path} does not match what is asked: {', '.join(wrong)}; remove it (it is rebuilt from the data "
            "set) or choose another bags folder"
        )


@dataclass
class MethodPlan:
    """One method of a scenario: its core config (before the bag's classes) or why it is not run."""

    method: str
    config: Config
    skip_reason: str | None = None


@dataclass
class SessionCounts:
    """What a session did: trials run, found in the store, not run, and the keys it covered."""

    run: int = 0
    reused: int = 0
    not_run: int = 0
    keys: set[str] = field(default_factory=set)


class BenchSession:
    """Runs scenarios into one store: resume, per-scenario failures, progress, examples."""

    def __init__(
        self,
        store: ResultStore,
        *,
        resume: bool = True,
        progress: bool = True,
        total_trials: int = 0,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        executor: TrialExecutor | None = None,
    ) -> None:
        from tqdm import tqdm

        self.executor = executor
        self.store = store
        self.progress = progress
        self.on_record = on_record
        self.models = ModelPool()
        self.counts = SessionCounts()
        records = store.read() if resume else []
        self._done = {r["key"] for r in records if r.get("status") == DONE}
        self._not_run = {(r["key"], r.get("reason")) for r in records if r.get("status") == NOT_RUN}
        self.bar = tqdm(total=total_trials, desc="trials", unit="trial", disable=not progress, dynamic_ncols=True)

    def close(self) -> None:
        self.bar.close()

    # ------------------------------------------------------------ records
    def _write(self, record: dict[str, Any]) -> None:
        self.store.append(record)
        self.counts.keys.add(record["key"])
        if record["status"] == DONE:
            self._done.add(record["key"])
            self.counts.run += 1
        else:
            self._not_run.add((record["key"], record.get("reason")))
            self.counts.not_run += 1
        if self.on_record is not None:
            self.on_record(record)

    def _not_run_records(
        self,
        identity: dict[str, Any],
        plan: MethodPlan,
        options: RunOptions,
        reason: str,
        trials: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        """One "not run" record per trial (all trials unless ``trials`` names some)."""
        for trial, seed in trials if trials is not None else enumerate(options.seeds):
            key = trial_key(identity["dataset"], identity["corruption"], plan.method, plan.config.model, "-", trial, seed)
            self.bar.update(1)
            if (key, reason) in self._not_run:
                self.counts.keys.add(key)
                continue  # the same reason is on record already
            now = _now()
            record = {
                **_record_base(identity, plan.method, plan.config, options, trial, seed),
                "key": key,
                "status": NOT_RUN,
                "reason": reason,
                "started": now,
                "finished": now,
            }
            self._write(record)

    def record_trial(self, outcome: TrialOutcome) -> None:
        """Save a finished trial's examples beside the store and append its record (the only writer)."""
        record = outcome.record
        if outcome.examples:
            rel = Path("examples", record["dataset"], record["corruption"],
                       f"{record['method']}-{record['config_hash']}-seed{record['seed']}.npz")
            save_examples(self.store.folder / rel, outcome.examples, outcome.example_ids)
            record["examples"] = rel.as_posix()
        self._write(record)
        self.bar.update(1)

    def trial_not_run(self, job: TrialJob, reason: str) -> None:
        """A "not run" record for one trial that an executor could not finish."""
        plan = MethodPlan(job.method, job.config)
        self._not_run_records(job.identity, plan, job.options, reason, [(job.trial, job.seed)])

    # ------------------------------------------------------------ running
    def run_scenario(
        self,
        dataset: str,
        corruption: str,
        plans: Sequence[MethodPlan],
        options: RunOptions,
        bag: Callable[[], Path],
        label: str = "",
    ) -> None:
        """Every method and trial of one scenario; failures become "not run" records."""
        identity: dict[str, Any] = {"dataset": dataset, "corruption": corruption}
        runnable = []
        for plan in plans:
            if plan.skip_reason:
                self._not_run_records(identity, plan, options, f"{SKIPPED_PREFIX}{plan.skip_reason}")
            else:
                runnable.append(plan)
        if not runnable:
            return
        try:
            bag_path = bag()
            info = open_bag(bag_path).info
        except Exception as err:  # noqa: BLE001 - one scenario must never stop the suite
            for plan in runnable:
                self._not_run_records(identity, plan, options, _reason(err))
            return
        identity.update(base_dataset=info.get("base_dataset"), condition=info.get("condition"), bag=str(bag_path))
        identity.update({key: info.get(key) for key in _BAG_SETTINGS})
        frames: BenchFrames | None = None
        for plan in runnable:
            if self.progress:
                self.bar.set_postfix_str(f"{label}{dataset}/{corruption} {plan.method}", refresh=True)
            frames = self._run_method(identity, plan, options, bag_path, info, frames)

    def _run_method(
        self,
        identity: dict[str, Any],
        plan: MethodPlan,
        options: RunOptions,
        bag_path: Path,
        info: Mapping[str, Any],
        frames: BenchFrames | None,
    ) -> BenchFrames | None:
        """The trials of one method not on record yet; returns the decoded frames for the next method."""
        todo: list[tuple[int, int]] = list(enumerate(options.seeds))
        try:
            config = segmenter_config(plan.config, info, plan.method)
            used = min(options.limit or _frame_count(info), _frame_count(info))
            digest = config_hash(
                config, options, {**info, "frames": used, "image_ids": (info.get("image_ids") or [])[:used]}
            )

            def key(trial: int, seed: int) -> str:
                return trial_key(identity["dataset"], identity["corruption"], plan.method, config.model, digest,
                                 trial, seed)

            self.counts.keys.update(key(t, s) for t, s in todo)
            todo = [(t, s) for t, s in todo if key(t, s) not in self._done]
            reused = len(options.seeds) - len(todo)
            self.counts.reused += reused
            self.bar.update(reused)
            if not todo:
                return frames
            if self.executor is not None:  # the executor runs them and hands back outcomes (bench.cluster)
                for trial, seed in todo:
                    self.executor.submit(self, TrialJob(dict(identity), plan.method, config, options,
                                                        str(Path(bag_path).resolve()), trial, seed, key(trial, seed),
                                                        digest))
                return frames
            if frames is None:
                frames = load_frames(bag_path, limit=options.limit, progress=self.progress)
            segmenter = Segmenter(config, loaded=self.models.get(config))
        except Exception as err:  # noqa: BLE001 - recorded, the suite goes on
            self._not_run_records(identity, plan, options, _reason(err), todo)
            return frames
        try:
            while todo:
                trial, seed = todo[0]
                job = TrialJob(identity, plan.method, config, options, str(bag_path), trial, seed, key(trial, seed),
                               digest)
                try:
                    outcome = execute_trial(job, segmenter, frames, progress=self.progress)
                except Exception as err:  # noqa: BLE001 - recorded, the suite goes on
                    self._not_run_records(identity, plan, options, _reason(err), todo)
                    break
                self.record_trial(outcome)
                todo.pop(0)
        finally:
            segmenter.reset()  # the shared model goes back to its source weights
        return frames


@dataclass(frozen=True)
class TrialJob:
    """One trial: everything a process needs to run it and build its record (executors pickle it)."""

    identity: dict[str, Any]  # dataset, corruption, base_dataset, condition, bag (as recorded)
    method: str
    config: Config  # the segmenter's config: the bag's classes and protocol applied
    options: RunOptions
    bag: str  # where the frames are read from
    trial: int
    seed: int
    key: str
    digest: str  # config hash


@dataclass
class TrialOutcome:
    """A finished trial: its record, and the example arrays the store's writer saves beside it."""

    record: dict[str, Any]
    examples: dict[str, Any]
    example_ids: list[str | None]


class TrialExecutor:
    """Runs trials somewhere else (see bench.cluster.RayExecutor); the session stays the only writer.

    ``submit`` hands over one trial; ``finish`` waits for all of them. Each outcome goes back
    through ``session.record_trial(outcome)`` or ``session.trial_not_run(job, reason)``.
    """

    def submit(self, session: BenchSession, job: TrialJob) -> None:
        raise NotImplementedError

    def finish(self, session: BenchSession) -> None:
        raise NotImplementedError


def execute_trial(job: TrialJob, segmenter: Segmenter, frames: BenchFrames, *, progress: bool = False) -> TrialOutcome:
    """Run one trial of ``job`` with a segmenter built from ``job.config`` and build its finished record."""
    options, identity = job.options, job.identity
    started, t0 = _now(), time.perf_counter()
    result = run_trial(
        segmenter,
        frames,
        seed=job.seed,
        batch_size=options.batch_size,
        shuffle=options.shuffle,
        examples=options.examples if job.trial == 0 else 0,
        progress=progress,
        desc=f"{identity['dataset']}/{identity['corruption']} {job.method} seed {job.seed}",
    )
    record = {
        **_record_base(identity, job.method, job.config, options, job.trial, job.seed),
        **result.to_record(),
        "key": job.key,
        "status": DONE,
        "config_hash": job.digest,
        "config": job.config.flat(),
        "class_names": list(frames.info.get("class_names") or []),
        "random_weights": bool(segmenter.random_weights),
        "device": str(segmenter.device),
        "started": started,
        "finished": _now(),
        "wall_s": time.perf_counter() - t0,
        "examples": None,
    }
    return TrialOutcome(record, result.examples, list(frames.ids[: options.examples]))


def _frame_count(info: Mapping[str, Any]) -> int:
    return int(info.get("frame_count") or len(info.get("image_ids") or []))


def _record_base(
    identity: Mapping[str, Any], method: str, config: Config, options: RunOptions, trial: int, seed: int
) -> dict[str, Any]:
    """The fields every record has, finished or not."""
    return {
        "schema": SCHEMA,
        "dataset": identity["dataset"],
        "base_dataset": identity.get("base_dataset") or _base_name(identity["dataset"]),
        "condition": identity.get("condition"),
        "corruption": identity["corruption"],
        "bag": identity.get("bag"),
        "method": method,
        "backbone": config.model,
        "weights": config.weights,
        "attention": config.attention,
        "precision": config.precision,
        "mode": config.adaptation.mode,
        "steps": config.adaptation.steps,
        "lr": config.adaptation.lr,
        "batch_size": options.batch_size,
        "shuffle": options.shuffle,
        "limit": options.limit,
        **{key: identity.get(key) for key in _BAG_SETTINGS},
        "resize": list(config.resize),
        "window": config.window,
        "stride": config.stride,
        "trial": trial,
        "seed": seed,
        "config_hash": None,
        "config": config.flat(),
        "versions": dict(_versions()),
        "host": socket.gethostname(),
    }


def _base_name(dataset: str) -> str:
    try:
        return resolve_name(dataset)[0]
    except DatasetError:
        return dataset


@lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"mlmp_ros": __version__, "python": platform.python_version()}
    for dist in ("torch", "open_clip_torch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    known = (DatasetError, BagError, ConfigError, RunError, SuiteError)
    return text if isinstance(err, known) else f"{type(err).__name__}: {text}"


def suite_plans(suite: Suite, scenario: Scenario) -> list[MethodPlan]:
    """Each method of a scenario with its config, or its skip reason."""
    return [MethodPlan(m, suite.method_config(m), suite.skip_reason(scenario, m)) for m in scenario.methods]


def run_suite(
    suite: Suite,
    *,
    resume: bool = True,
    progress: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    executor: TrialExecutor | None = None,
) -> SessionCounts:
    """Run every scenario of ``suite`` into ``<out>/results.jsonl``; returns what was done.

    The trials run here, one after another, unless ``executor`` runs them (bench.cluster).
    """
    store = ResultStore(suite.out / STORE_NAME)
    total = suite.counts()["trials"]
    session = BenchSession(store, resume=resume, progress=progress, total_trials=total, on_record=on_record,
                           executor=executor)  # fmt: skip
    try:
        for n, scenario in enumerate(suite.scenarios, 1):
            session.run_scenario(
                scenario.dataset,
                scenario.corruption,
                suite_plans(suite, scenario),
                suite.options,
                lambda s=scenario: ensure_bag(suite, s, progress=progress),
                label=f"[{n}/{len(suite.scenarios)}] ",
            )
        if executor is not None:
            executor.finish(session)
    finally:
        session.close()
    return session.counts


def run_bags(
    bags: Iterable[str | os.PathLike[str]],
    config: Config,
    methods: Sequence[str],
    options: RunOptions,
    out: str | os.PathLike[str],
    *,
    resume: bool = True,
    progress: bool = True,
) -> tuple[SessionCounts, ResultStore]:
    """Run existing bags (``mlmp-bench run``) into ``<out>/results.jsonl``."""
    store = ResultStore(Path(out) / STORE_NAME)
    bag_list = [Path(b) for b in bags]
    infos = [open_bag(b).info for b in bag_list]  # every bag is checked before any model loads
    plans = [MethodPlan(m, config.replace(**{"adaptation.method": m})) for m in methods]
    total = len(bag_list) * len(plans) * len(options.seeds)
    session = BenchSession(store, resume=resume, progress=progress, total_trials=total)
    try:
        for path, info in zip(bag_list, infos):
            session.run_scenario(
                str(info.get("dataset")), str(info.get("corruption")), plans, options, lambda p=path: p
            )
    finally:
        session.close()
    return session.counts, store
