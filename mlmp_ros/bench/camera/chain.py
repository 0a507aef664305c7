"""Bags chained into one camera stream: their names and the check that they can be chained."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..offline.options import RunError

# How a stream is made of bags: chained, or the first bag as a sequence of corruptions (see rate_replay).
SEQUENCES = ("chain", "corruptions", "severity", "mixed")


def segment_name(info: Mapping[str, Any]) -> str:
    """A bag's name in a chained stream: ``dataset/corruption``."""
    return f"{info.get('dataset')}/{info.get('corruption')}"


def check_chain(bags: Sequence[tuple[Any, Mapping[str, Any]]]) -> None:
    """Refuse (``RunError``) a chain of ``(path, info)`` bags whose classes or window protocol differ.

    A stream is scored with one class list and run with one window protocol, so every
    bag must share the first one's; the message names both bags and what differs.
    """
    if not bags:
        raise RunError("a stream needs at least one bag")
    path0, info0 = bags[0]
    for path, info in bags[1:]:
        what = []
        if info.get("class_key") != info0.get("class_key"):
            what.append(f"classes '{info.get('class_key')}' vs '{info0.get('class_key')}'")
        if info.get("protocol") != info0.get("protocol"):
            what.append(f"window protocol {info.get('protocol')} vs {info0.get('protocol')}")
        if what:
            raise RunError(f"cannot chain bag {path} after bag {path0}: {'; '.join(what)}; chained bags must "
                           "share the class list and the window protocol (e.g. cityscapes, acdc and gta5 bags "
                           "chain; voc20 and cityscapes do not)")  # fmt: skip
