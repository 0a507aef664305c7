"""Running scenarios into one store: shared models, bags made on first use, resume, failures recorded.

A :class:`BenchSession` runs every method and trial of a scenario; a trial already in the store
(same key) is not run again; a scenario that fails becomes "not run: <reason>" records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.backbone import LoadedCLIP, load_clip, resolve_device
from ..core.config import Config
from ..core.segmenter import Segmenter
from .bags import BagError, open_bag
from .corruptions import DRAWS, ORIGINAL
from .datasets import DatasetError, open_dataset
from .make_bags import make_bag
from .runner import BenchFrames, RunOptions, load_frames, save_examples, segmenter_config
from .store import DONE, NOT_RUN, SKIPPED_PREFIX, ResultStore, config_hash, trial_key
from .suite_file import Scenario, Suite
from .trials import (
    _BAG_SETTINGS,
    TrialExecutor,
    TrialJob,
    TrialOutcome,
    _frame_count,
    _now,
    _reason,
    _record_base,
    execute_trial,
)


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

    def _trial_keys(
        self, identity: dict[str, Any], plan: MethodPlan, options: RunOptions, info: Mapping[str, Any]
    ) -> tuple[Config, str, Callable[[int, int], str]]:
        """(the method's config on this bag, its hash, trial/seed -> record key)."""
        config = segmenter_config(plan.config, info, plan.method)
        used = min(options.limit or _frame_count(info), _frame_count(info))
        digest = config_hash(
            config, options, {**info, "frames": used, "image_ids": (info.get("image_ids") or [])[:used]}
        )

        def key(trial: int, seed: int) -> str:
            return trial_key(identity["dataset"], identity["corruption"], plan.method, config.model, digest,
                             trial, seed)

        return config, digest, key

    def _run_trials(
        self,
        identity: dict[str, Any],
        plan: MethodPlan,
        options: RunOptions,
        bag_path: Path,
        todo: list[tuple[int, int]],
        *,
        config: Config,
        digest: str,
        key: Callable[[int, int], str],
        segmenter: Segmenter,
        frames: BenchFrames,
    ) -> None:
        """Run and record the trials in ``todo`` here, in order; after a failure the rest are recorded as not run."""
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
            config, digest, key = self._trial_keys(identity, plan, options, info)
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
        self._run_trials(identity, plan, options, bag_path, todo, config=config, digest=digest, key=key,
                         segmenter=segmenter, frames=frames)  # fmt: skip
        return frames
