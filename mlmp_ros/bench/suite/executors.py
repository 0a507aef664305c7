"""Where trials run: the executor interface, and the local executor (here, one after another).

A session hands an executor the trials of one method on one bag that are not on record yet
(:meth:`TrialExecutor.submit`) and waits for all of them at the end (:meth:`TrialExecutor.finish`).
Each trial comes back through a :class:`TrialSink` (the session: the store's only writer), and
progress text goes to it too; the executor never touches the store or the progress bar.
The Ray executor (:mod:`.ray_executor`) has the same interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..offline.cache import TrialCache
from .trials import TrialDone, TrialJob, run_trials


class TrialSink(Protocol):
    """What an executor reports to: finished trials, trials that did not run, and progress text."""

    def trial_done(self, done: TrialDone) -> None: ...

    def status(self, text: str) -> None: ...


class TrialExecutor:
    """Runs trials; the base of :class:`LocalExecutor` and ``RayExecutor``."""

    def submit(self, sink: TrialSink, jobs: Sequence[TrialJob]) -> None:
        """Hand over the trials of one method on one bag, in order (results may come back later)."""
        raise NotImplementedError

    def finish(self, sink: TrialSink) -> None:
        """Return when every trial handed over has come back."""

    def close(self) -> None:
        """Release what the executor holds (a cluster connection); runs after an interruption too."""


class LocalExecutor(TrialExecutor):
    """Runs each method's trials at once, here, in order, sharing one :class:`TrialCache`."""

    def __init__(self, *, progress: bool = False) -> None:
        self.cache = TrialCache()
        self.progress = progress

    def submit(self, sink: TrialSink, jobs: Sequence[TrialJob]) -> None:
        for done in run_trials(jobs, self.cache, progress=self.progress):
            sink.trial_done(done)
