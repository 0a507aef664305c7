"""One trial: the job a process runs, the record it yields, and the one loop that runs trials.

A :class:`TrialJob` holds everything a (possibly remote) process needs; :func:`run_trials` runs a
list of them with the frames and the backbone of a :class:`~mlmp_ros.bench.offline.cache.TrialCache`
and hands back, for each, its finished :class:`~.records.TrialRecord` with the kept example arrays,
or why it did not run.  The local and the Ray executor (:mod:`.executors`, :mod:`.ray_executor`)
both run trials through it; the session stays the store's only writer.
"""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from ... import __version__
from ...core.config import Config, ConfigError
from ...core.segmenter import Segmenter
from ..data.bags import BagError
from ..data.entry import DatasetError
from ..data.registry import resolve_name
from ..offline.frames import BenchFrames
from ..offline.options import RunError, RunOptions
from ..offline.trial import run_trial
from .file import SuiteError
from .records import DONE, NOT_RUN, TrialRecord

# What a record copies from its bag's description: how the images were made and how many the split has.
BAG_SETTINGS = (
    "severity", "channel_order", "corruption_draws", "corruption_library", "presized", "split_size", "frame_count",
)  # fmt: skip


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
class Examples:
    """The arrays a finished trial keeps for the report's figures (trial 0 only), saved beside the store."""

    arrays: dict[str, Any] = field(default_factory=dict)
    ids: list[str | None] = field(default_factory=list)


@dataclass
class TrialDone:
    """What running a job gave: its finished record and examples, or the reason it did not run."""

    job: TrialJob
    record: TrialRecord | None = None
    examples: Examples = field(default_factory=Examples)
    reason: str | None = None


def run_trials(jobs: Sequence[TrialJob], cache: Any, *, device: str | None = None,
               progress: bool = False) -> Iterator[TrialDone]:  # fmt: skip
    """Run ``jobs`` (one method on one bag, in order) with ``cache``'s frames and backbone.

    ``device`` runs the segmenter on another device than the config names (the record keeps
    the config).  After a failure the remaining jobs come back with the same reason.
    """
    if not jobs:
        return
    first = jobs[0]
    config = first.config if device is None else first.config.replace(device=device)
    try:
        frames = cache.frames(first.bag, first.options.limit, progress=progress)
        segmenter = Segmenter(config, loaded=cache.loaded_clip(config))
    except Exception as err:  # noqa: BLE001 - recorded, the suite goes on
        yield from (TrialDone(job, reason=reason(err)) for job in jobs)
        return
    try:
        for n, job in enumerate(jobs):
            try:
                record, examples = execute_trial(job, segmenter, frames, progress=progress)
            except Exception as err:  # noqa: BLE001 - recorded, the suite goes on
                yield from (TrialDone(rest, reason=reason(err)) for rest in jobs[n:])
                return
            yield TrialDone(job, record, examples)
    finally:
        segmenter.reset()  # the shared model goes back to its source weights


def execute_trial(job: TrialJob, segmenter: Segmenter, frames: BenchFrames, *, progress: bool = False) -> tuple[TrialRecord, Examples]:
    """Run one trial of ``job`` with a segmenter built from ``job.config``; its finished record and examples."""
    options, identity = job.options, job.identity
    started, t0 = now(), time.perf_counter()
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
    record = new_record(identity, job.method, job.config, options, job.trial, job.seed, key=job.key, status=DONE)
    for name, value in result.record_fields().items():
        setattr(record, name, value)
    record.config_hash = job.digest
    record.class_names = list(frames.info.get("class_names") or [])
    record.random_weights = bool(segmenter.random_weights)
    record.device = str(segmenter.device)
    record.started, record.finished, record.wall_s = started, now(), time.perf_counter() - t0
    return record, Examples(result.examples, list(frames.ids[: options.examples]))


def new_record(identity: Mapping[str, Any], method: str, config: Config, options: RunOptions, trial: int, seed: int,
               *, key: str, status: str, reason: str | None = None) -> TrialRecord:  # fmt: skip
    """A record with the fields every record has, finished or not."""
    return TrialRecord(
        key=key,
        status=status,
        reason=reason,
        dataset=identity["dataset"],
        base_dataset=identity.get("base_dataset") or _base_name(identity["dataset"]),
        condition=identity.get("condition"),
        corruption=identity["corruption"],
        bag=identity.get("bag"),
        **{name: identity.get(name) for name in BAG_SETTINGS},
        method=method,
        backbone=config.model,
        weights=config.weights,
        attention=config.attention,
        precision=config.precision,
        mode=config.adaptation.mode,
        steps=config.adaptation.steps,
        lr=config.adaptation.lr,
        resize=list(config.resize),
        window=config.window,
        stride=config.stride,
        batch_size=options.batch_size,
        shuffle=options.shuffle,
        limit=options.limit,
        trial=trial,
        seed=seed,
        config=config.flat(),
        versions=dict(_versions()),
        host=socket.gethostname(),
    )


def not_run_record(identity: Mapping[str, Any], method: str, config: Config, options: RunOptions, trial: int,
                   seed: int, key: str, reason: str) -> TrialRecord:  # fmt: skip
    """The record of a trial that did not run, and why."""
    record = new_record(identity, method, config, options, trial, seed, key=key, status=NOT_RUN, reason=reason)
    record.started = record.finished = now()
    return record


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


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def reason(err: BaseException) -> str:
    """Why a trial did not run, for its record: the message (and the exception's type unless it is a user error)."""
    text = " ".join(str(err).split()) or type(err).__name__
    known = (DatasetError, BagError, ConfigError, RunError, SuiteError)
    return text if isinstance(err, known) else f"{type(err).__name__}: {text}"
