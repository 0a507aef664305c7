"""The data sets the bench knows: one :class:`~.entry.DataSet` entry each, looked up by name.

``make-bags`` offers every registered name, a suite file accepts them, and bags are written
from their readers.  The built-in entries are the MMSegmentation layouts
(:mod:`.datasets`) and the generated world (:mod:`.world`); :func:`register` adds another.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import datasets, world
from .entry import DataSet, DatasetError

REGISTRY: dict[str, DataSet] = {}


def register(entry: DataSet) -> DataSet:
    """Add (or replace) a data set; returns it."""
    REGISTRY[entry.key] = entry
    return entry


def unregister(key: str) -> None:
    REGISTRY.pop(key, None)


for _entry in (*datasets.ENTRIES, world.ENTRY):
    register(_entry)


def names() -> list[str]:
    """Every name of every registered data set, in registration order."""
    return [name for entry in REGISTRY.values() for name in entry.names()]


def find(name: str, condition: str | None = None) -> tuple[DataSet, str, str | None]:
    """(entry, key, condition) of a data set name: ``acdc_fog`` -> (ACDC, 'acdc', 'fog')."""
    key = name.strip().lower()
    condition = condition.strip().lower() if isinstance(condition, str) else condition
    entry = next((e for e in REGISTRY.values() if key == e.key or key in e.variants), None)
    if entry is None:
        family = next((e for e in REGISTRY.values() if e.conditions and key.startswith(f"{e.key}_")), None)
        if family is not None:
            named = key[len(family.key) + 1 :]
            if condition is not None and condition != named:
                raise DatasetError(f"data set '{name}' names condition '{named}' but condition='{condition}'")
            entry, key, condition = family, family.key, named
    if entry is None:
        raise DatasetError(f"unknown data set '{name}'; choose one of: {', '.join(names())}")
    if entry.conditions:
        if condition not in entry.conditions:
            label = entry.key.upper()
            raise DatasetError(
                f"{label} needs a condition, one of {', '.join(entry.conditions)} (got {condition!r}); "
                f"pass condition='{entry.conditions[0]}' or name it '{entry.key}_{entry.conditions[0]}'"
            )
    elif condition is not None:
        raise DatasetError(f"data set '{key}' has no conditions (got condition={condition!r}); only ACDC has")
    return entry, key, condition


def resolve_name(name: str, condition: str | None = None) -> tuple[str, str | None]:
    """Normalise a data set name and condition: ``acdc_fog`` -> ('acdc', 'fog')."""
    _, key, condition = find(name, condition)
    return key, condition


def scenario_name(name: str) -> str:
    """The name a scenario and its bags use: ``acdc`` + ``fog`` -> ``acdc_fog``."""
    key, condition = resolve_name(name)
    return f"{key}_{condition}" if condition else key


def open_dataset(name: str, root: str | os.PathLike[str] | None = None, condition: str | None = None) -> Any:
    """Open data set ``name`` (its folder ``root`` unless it is generated) through its reader."""
    entry, key, condition = find(name, condition)
    if entry.needs_root and not root:
        raise DatasetError(f"data set {key} needs its folder (root)")
    return entry.open(key, Path(root or ".").expanduser(), condition)
