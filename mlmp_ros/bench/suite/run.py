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
:class:`mlmp_ros.bench.suite.records.TrialRecord` (schema "mlmp-bench-result/2"; version 1
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
``trainable_parameters``, ``unit_areas`` (each frame's per-class intersection and union, for the
report's bootstrap intervals), ``class_names``), ``examples`` (an .npz path relative to the
store's folder), ``random_weights``, ``device``, ``started``/``finished``/``wall_s``,
``versions`` and ``host``.  Relative paths in a suite file are relative to the working
directory; a suite file that does not exist there is looked up among the installed
suites (``config/suites``).

This module runs suites (:func:`run_suite`) and bags (:func:`run_bags`); beside it are the
suite file (``file``), the store (``store``, ``records``), the session (``session``), the trial
loop (``trials``) and the executors (``executors``, ``ray_executor``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ...core.config import Config
from ..data.bags import open_bag
from ..data.datasets import SegmentationDataset
from ..data.entry import DatasetError
from ..data.make_bags import generation_of, keep_or_make_bag
from ..data.registry import find, open_dataset
from ..offline.options import RunOptions
from .executors import TrialExecutor
from .file import Scenario, Suite
from .records import TrialRecord
from .session import BenchSession, MethodPlan, SessionCounts
from .store import STORE_NAME, ResultStore


def suite_plans(suite: Suite, scenario: Scenario) -> list[MethodPlan]:
    """Each method of a scenario with its config, or its skip reason."""
    return [MethodPlan(m, suite.method_config(m), suite.skip_reason(scenario, m)) for m in scenario.methods]


def ensure_bag(suite: Suite, scenario: Scenario, *, progress: bool = False) -> Path:
    """The scenario's bag, written from the data set when missing; an existing bag must match."""

    def data_set() -> SegmentationDataset:
        root = suite.root_for(scenario.dataset)
        entry, _, _ = find(scenario.dataset)
        if not root and entry.needs_root:
            raise DatasetError(f"no data root for {scenario.dataset}: add it under 'roots' in the suite file")
        return open_dataset(scenario.dataset, root)

    path = suite.bag_path(scenario)
    generated = None if find(scenario.dataset)[0].needs_root else data_set()  # cheap: frames are made on demand
    keep_or_make_bag(path, scenario.dataset, (lambda: generated) if generated is not None else data_set,
                     scenario.corruption, storage=suite.storage, severity=suite.severity,
                     channel_order=suite.channel_order, presize=suite.presize, limit=suite.limit, progress=progress,
                     generation=generation_of(generated) if generated is not None else None,
                     advice="remove it (the suite writes it again) or choose another bags folder "
                     "(a suite writes a generated data set with its defaults)")  # fmt: skip
    return path


def run_suite(
    suite: Suite,
    *,
    resume: bool = True,
    progress: bool = True,
    on_record: Callable[[TrialRecord], None] | None = None,
    executor: TrialExecutor | None = None,
) -> SessionCounts:
    """Run every scenario of ``suite`` into ``<out>/results.jsonl``; returns what was done.

    The trials run here, one after another (:class:`~.executors.LocalExecutor`), unless
    ``executor`` runs them elsewhere (:class:`~.ray_executor.RayExecutor`).
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
        session.finish()
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
        session.finish()
    finally:
        session.close()
    return session.counts, store
