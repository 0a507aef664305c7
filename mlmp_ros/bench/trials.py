"""One trial: the job a process runs, its outcome and record, and the executor interface.

A :class:`TrialJob` holds everything a (possibly remote) process needs; :func:`execute_trial`
runs it and builds the finished record; a :class:`TrialExecutor` runs jobs elsewhere
(``bench.cluster``) while the session stays the store's only writer.
"""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..core.config import Config, ConfigError
from ..core.segmenter import Segmenter
from .bags import BagError
from .datasets import DatasetError, resolve_name
from .records import SCHEMA
from .runner import BenchFrames, RunError, RunOptions, run_trial
from .store import DONE
from .suite_file import SuiteError

if TYPE_CHECKING:
    from .session import BenchSession

# What a record copies from its bag's description: how the images were made and how many the split has.
_BAG_SETTINGS = (
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
