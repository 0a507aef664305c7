"""The class-change gate: no label of a class list the consumers were told is gone is published.

A change of ``classes`` is *accepted* by the parameter callback (from then on consumers may act on
the new class map) and *applied* by the worker between frames (the segmenter labels with the new
list, and ``label_info`` is published first).  While the two differ, results finished by the
worker were labelled under the old list: they are dropped and counted, for every camera.
Nothing here calls ROS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

# Settings that change what a label id means.
LABEL_SETTINGS = ("classes",)


def label_meaning(values: dict[str, Any]) -> dict[str, str]:
    """The values of :data:`LABEL_SETTINGS` among flat ``values`` (all or changes), comparable."""
    return {name: repr(values[name]) for name in LABEL_SETTINGS if name in values}


class LabelGate:
    """See the module docs."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._accepted = self._applied = label_meaning(values)

    def accept(self, values: dict[str, Any], then: Callable[[], None]) -> None:
        """A change of flat ``values`` is accepted; ``then`` runs under the gate's lock (so no result of
        the old meaning is published after it returns)."""
        with self._lock:
            self._accepted = {**self._accepted, **label_meaning(values)}
            then()

    def applied(self, changes: dict[str, Any]) -> None:
        """The worker's segmenter labels with ``changes`` now."""
        with self._lock:
            self._applied = {**self._applied, **label_meaning(changes)}

    def model_loaded(self, values: dict[str, Any]) -> None:
        """A model was (re)loaded with flat ``values``: what it labels with is applied."""
        with self._lock:
            self._applied = label_meaning(values)

    def current(self) -> bool:
        with self._lock:
            return self._applied == self._accepted

    def publish_if_current(self, publish: Callable[[], None]) -> bool:
        """Run ``publish`` if no change is pending (under the lock); False when the result is stale."""
        with self._lock:
            if self._applied != self._accepted:
                return False
            publish()
        return True
