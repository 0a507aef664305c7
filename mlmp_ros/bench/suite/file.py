"""Suite files: data sets x corruptions x methods x trials from one YAML file, parsed and checked.

Loads no model and touches no data.  The plain keys (bags, out, storage, severity, channel_order,
presize, limit, batch_size, trials, seeds, shuffle, examples) are declared in :class:`SuiteFile`
and built and checked by the same schema machinery as :class:`mlmp_ros.core.Config`
(core/schema.py); the structured ones (core, methods, scenarios, roots, skip, cluster) are
checked here.  Every problem is named at once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...catalog import METHOD_NAMES
from ...core import schema
from ...core.config import Config, ConfigError, flatten
from ...core.schema import like, setting
from ..data.bags import DEFAULT_STORAGE, STORAGES
from ..data.corruptions import CHANNEL_ORDERS, CORRUPTIONS, ORIGINAL, SCENARIOS, SEVERITY
from ..data.entry import DatasetError
from ..data.registry import REGISTRY, resolve_name, scenario_name
from ..offline.options import RunOptions
from .ray_settings import check_cluster_section

# Settings every scenario takes from its bag.
_FROM_BAG = ("classes", "resize", "window", "stride")


class SuiteError(ValueError):
    """A suite file is invalid; the message lists every problem found."""


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
    # the plain keys, as parsed (their defaults and rules: SuiteFile below)
    roots: dict[str, str]
    bags: Path
    out: Path
    storage: str
    severity: int
    channel_order: str
    presize: bool
    limit: int | None
    batch_size: int
    seeds: tuple[int, ...]
    shuffle: bool
    examples: int
    skip: list[dict[str, str]] = field(default_factory=list)
    source: Path | None = None
    cluster: dict[str, Any] = field(default_factory=dict)  # per-trial resources with --executor ray (bench.suite.ray_executor)

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


@dataclass
class SuiteFile:
    """The top-level keys of a suite file (config/suites/paper87.yaml shows every one).

    Plain keys are declared like the core's settings (core/schema.py) and checked from their
    declarations; the run options are :class:`RunOptions`' own declarations.  The structured
    keys are checked by :func:`parse_suite`.
    """

    name: str | None = setting(None, help="the suite's name (default: the file's name)")
    description: str = setting("", help="free text")
    core: Any = setting(None, help="base core settings (mlmp-bench settings); classes, resize, window and stride "
                        "come from each bag")
    methods: Any = setting(None, help="methods: a list, or a mapping of method -> core overrides")
    scenarios: Any = setting(None, help="a list of {dataset(s), corruptions, methods} entries")
    roots: Any = setting(None, help="data set name -> folder")
    bags: str = setting("bench_bags", help="folder of the bags, written there on first use")
    out: str = setting("bench_results", help="results folder (results.jsonl, examples)")
    storage: str = setting(DEFAULT_STORAGE, help="bag storage", choices=STORAGES)
    severity: int = setting(SEVERITY, help="corruption severity", range="[1, 5]")
    channel_order: str = setting(CHANNEL_ORDERS[0], help="channel order the corruptions see (bgr: as the reference)",
                                 choices=CHANNEL_ORDERS)
    presize: bool = setting(True, help="bags hold images resized to the protocol's size")
    limit: int | None = like(RunOptions, "limit")
    batch_size: int = like(RunOptions, "batch_size")
    trials: int | None = setting(None, help="number of trials, seeds 0..N-1 (or give seeds)", range="[1, inf)")
    seeds: list[int] | None = like(RunOptions, "seeds", default=None)
    shuffle: bool = like(RunOptions, "shuffle")
    examples: int = like(RunOptions, "examples")
    skip: Any = setting(None, help="a list of {dataset, corruption, method, reason} entries not to run")
    cluster: Any = setting(None, help="per-trial resources with --executor ray (bench.suite.ray_executor)")


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


def _parse_core(raw: Any, p: list[str]) -> Mapping[str, Any]:
    core = raw or {}
    if not isinstance(core, Mapping):
        p.append("'core' must be a mapping of core settings (model, weights, device, adaptation, ...)")
        core = {}
    return core


def _parse_methods(raw: Any, p: list[str]) -> dict[str, dict[str, Any]]:
    """method -> its core overrides, from a list of methods or a mapping."""
    raw_methods = raw
    if isinstance(raw_methods, (list, tuple)):
        raw_methods = {m: {} for m in raw_methods}
    if not isinstance(raw_methods, Mapping) or not raw_methods:
        p.append("'methods' must list at least one method (a list, or a mapping of method -> overrides)")
        raw_methods = {}
    methods: dict[str, dict[str, Any]] = {}
    for name, overrides in raw_methods.items():
        if name not in METHOD_NAMES:
            p.append(f"methods: unknown method '{name}'; choose from {', '.join(METHOD_NAMES)}")
        elif overrides is not None and not isinstance(overrides, Mapping):
            p.append(f"methods.{name} must be a mapping of core overrides or empty")
        else:
            methods[str(name)] = dict(overrides or {})
    return methods


def _check_not_from_bag(core: Mapping[str, Any], methods: Mapping[str, Mapping[str, Any]], p: list[str]) -> None:
    """Refuse settings that each bag's data set fixes."""
    for what, mapping in [("core", core), *((f"methods.{m}", o) for m, o in methods.items())]:
        fixed = [k for k in flatten(mapping) if k in _FROM_BAG]
        if fixed:
            p.append(f"{what}: {', '.join(fixed)} come from each bag's data set; remove them")


def _parse_seeds(spec: Any, p: list[str]) -> list[int]:
    seeds = spec.seeds
    if seeds is None:
        seeds = list(range(spec.trials or 3))
    elif spec.trials is not None and spec.trials != len(seeds):
        p.append(f"'trials' is {spec.trials} but {len(seeds)} seeds are listed")
    return seeds


def _parse_roots(raw: Any, p: list[str]) -> Mapping[str, str]:
    roots = raw or {}
    if not isinstance(roots, Mapping) or any(not isinstance(v, str) for v in roots.values()):
        p.append("'roots' must map data set names to folders")
        roots = {}
    for name in roots:
        try:
            if name not in REGISTRY:  # a family's key (e.g. acdc) names the root of all its conditions
                resolve_name(name)
        except DatasetError as err:
            p.append(f"roots: {err}")
    return roots


def _check_method_configs(core: Mapping[str, Any], methods: Mapping[str, Mapping[str, Any]], p: list[str]) -> None:
    """Each method's full core config must build (checked only when everything else is right)."""
    for method, overrides in methods.items():
        try:
            method_config(core, overrides, method)
        except ConfigError as err:
            p.append(f"core config for {method}: {err}")


def parse_suite(data: Mapping[str, Any], *, source: Path | None = None) -> Suite:
    """Build a :class:`Suite` from a mapping, naming every problem at once."""
    where = f"{source}: " if source else ""
    p: list[str] = []
    spec = schema.build(SuiteFile, data, p, unknown="key")  # unknown keys and wrong types
    p += schema.problems(spec)  # choices, ranges and checks of the plain keys

    core = _parse_core(spec.core, p)
    methods = _parse_methods(spec.methods, p)
    _check_not_from_bag(core, methods, p)
    seeds = _parse_seeds(spec, p)
    roots = _parse_roots(spec.roots, p)
    scenarios = _parse_scenarios(spec.scenarios, methods, p)
    skip = _parse_skip(spec.skip, p)
    p.extend(check_cluster_section(spec.cluster))

    if not p:
        _check_method_configs(core, methods, p)
    if p:
        raise SuiteError(where + "; ".join(p))
    return Suite(
        name=str(spec.name or (source.stem if source else "suite")),
        core=dict(core),
        methods=methods,
        scenarios=scenarios,
        roots={str(k): str(v) for k, v in roots.items()},
        bags=Path(spec.bags).expanduser(),
        out=Path(spec.out).expanduser(),
        storage=spec.storage,
        severity=spec.severity,
        channel_order=spec.channel_order,
        presize=spec.presize,
        limit=spec.limit,
        batch_size=spec.batch_size,
        seeds=tuple(seeds),
        shuffle=spec.shuffle,
        examples=spec.examples,
        skip=skip,
        source=source,
        cluster=dict(spec.cluster or {}),
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
                dataset = scenario_name(str(name))
            except DatasetError as err:
                p.append(f"scenario {n}: {err}")
                continue
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
        problem = schema.check_value(SuiteFile, "limit", limit)
        if problem:
            raise SuiteError(problem)
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
