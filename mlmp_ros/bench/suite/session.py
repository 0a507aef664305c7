"""Running scenarios into one store: resume, failures recorded, trials handed to an executor.

A :class:`BenchSession` runs every method and trial of a scenario through its executor; a
trial already in the store (same key) is not run again; a scenario that fails becomes
"not run: <reason>" records.  The session is the store's only writer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ...core.config import Config
from ..data.bags import open_bag
from ..offline.frames import save_examples
from ..offline.options import RunOptions, segmenter_config
from .executors import LocalExecutor, TrialExecutor
from .records import NOT_RUN, SKIPPED_PREFIX, TrialRecord
from .store import ResultStore, config_hash, trial_key
from .trials import BAG_SETTINGS, TrialDone, TrialJob, not_run_record, reason


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


def frame_count(info: Mapping[str, Any]) -> int:
    return int(info.get("frame_count") or len(info.get("image_ids") or []))


class BenchSession:
    """Runs scenarios into one store: resume, per-scenario failures, progress, examples."""

    def __init__(self, store: ResultStore, *, resume: bool = True, progress: bool = True, total_trials: int = 0,
                 on_record: Callable[[TrialRecord], None] | None = None,
                 executor: TrialExecutor | None = None) -> None:  # fmt: skip
        self.executor = executor if executor is not None else LocalExecutor(progress=progress)
        self.store = store
        self.progress = progress
        self.on_record = on_record
        self.counts = SessionCounts()
        records = store.read() if resume else []
        self._done = {r.key for r in records if r.done}
        self._not_run = {(r.key, r.reason) for r in records if r.status == NOT_RUN}
        self._plans: dict[str, MethodPlan] = {}  # job key -> its method's plan (for "not run" records)
        self.bar = tqdm(total=total_trials, desc="trials", unit="trial", disable=not progress, dynamic_ncols=True)

    def close(self) -> None:
        self.bar.close()

    def finish(self) -> None:
        """Wait for the executor's last trials."""
        self.executor.finish(self)

    # ------------------------------------------------------------ records (TrialSink)
    def trial_done(self, done: TrialDone) -> None:
        """Record a trial that came back from the executor: finished, or why it did not run."""
        if done.record is None:
            job = done.job
            plan = self._plans.get(job.key) or MethodPlan(job.method, job.config)
            self._not_run_records(job.identity, plan, job.options, done.reason or "unknown", [(job.trial, job.seed)])
            return
        record = done.record
        if done.examples.arrays:
            rel = Path("examples", record.dataset, record.corruption,
                       f"{record.method}-{record.config_hash}-seed{record.seed}.npz")  # fmt: skip
            save_examples(self.store.folder / rel, done.examples.arrays, done.examples.ids)
            record.examples = rel.as_posix()
        self._write(record)
        self.bar.update(1)

    def status(self, text: str) -> None:
        if self.progress:
            self.bar.set_postfix_str(text, refresh=True)

    def _write(self, record: TrialRecord) -> None:
        self.store.append(record)
        self.counts.keys.add(record.key)
        if record.done:
            self._done.add(record.key)
            self.counts.run += 1
        else:
            self._not_run.add((record.key, record.reason))
            self.counts.not_run += 1
        if self.on_record is not None:
            self.on_record(record)

    def _not_run_records(self, identity: dict[str, Any], plan: MethodPlan, options: RunOptions, why: str,
                         trials: Sequence[tuple[int, int]] | None = None) -> None:  # fmt: skip
        """One "not run" record per trial (all trials unless ``trials`` names some)."""
        for trial, seed in trials if trials is not None else enumerate(options.seeds):
            key = trial_key(identity["dataset"], identity["corruption"], plan.method, plan.config.model, "-", trial, seed)
            self.bar.update(1)
            if (key, why) in self._not_run:
                self.counts.keys.add(key)
                continue  # the same reason is on record already
            self._write(not_run_record(identity, plan.method, plan.config, options, trial, seed, key, why))

    # ------------------------------------------------------------ running
    def run_scenario(self, dataset: str, corruption: str, plans: Sequence[MethodPlan], options: RunOptions,
                     bag: Callable[[], Path], label: str = "") -> None:  # fmt: skip
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
                self._not_run_records(identity, plan, options, reason(err))
            return
        identity.update(base_dataset=info.get("base_dataset"), condition=info.get("condition"), bag=str(bag_path))
        identity.update({key: info.get(key) for key in BAG_SETTINGS})
        for plan in runnable:
            self.status(f"{label}{dataset}/{corruption} {plan.method}")
            self._run_method(identity, plan, options, bag_path, info)

    def _run_method(self, identity: dict[str, Any], plan: MethodPlan, options: RunOptions, bag_path: Path,
                    info: Mapping[str, Any]) -> None:  # fmt: skip
        """Hand the trials of one method not on record yet to the executor."""
        todo: list[tuple[int, int]] = list(enumerate(options.seeds))
        try:
            jobs = self._jobs(identity, plan, options, bag_path, info)
        except Exception as err:  # noqa: BLE001 - recorded, the suite goes on
            self._not_run_records(identity, plan, options, reason(err), todo)
            return
        self.counts.keys.update(job.key for job in jobs)
        jobs = [job for job in jobs if job.key not in self._done]
        reused = len(options.seeds) - len(jobs)
        self.counts.reused += reused
        self.bar.update(reused)
        self._plans.update((job.key, plan) for job in jobs)
        if jobs:
            self.executor.submit(self, jobs)

    def _jobs(self, identity: dict[str, Any], plan: MethodPlan, options: RunOptions, bag_path: Path,
              info: Mapping[str, Any]) -> list[TrialJob]:  # fmt: skip
        """Every trial of one method on one bag, keyed by the method's config on this bag."""
        config = segmenter_config(plan.config, info, plan.method)
        used = min(options.limit or frame_count(info), frame_count(info))
        digest = config_hash(
            config, options, {**info, "frames": used, "image_ids": (info.get("image_ids") or [])[:used]}
        )
        bag = str(Path(bag_path).resolve())

        def key(trial: int, seed: int) -> str:
            return trial_key(identity["dataset"], identity["corruption"], plan.method, config.model, digest, trial, seed)

        return [
            TrialJob(dict(identity), plan.method, config, options, bag, trial, seed, key(trial, seed), digest)
            for trial, seed in enumerate(options.seeds)
        ]
