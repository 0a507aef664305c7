"""What a data set registers: its names, its reader, whether it needs a root, and its make-bags options.

A data set is one :class:`DataSet` entry plus its reader (see :mod:`.registry` for the list and
docs/development/extending.md for adding one).  A reader returns an object with the interface of
:class:`~mlmp_ros.bench.data.datasets.SegmentationDataset`: ``name``, ``base_name``,
``condition``, ``split``, ``class_key``, ``class_names``, ``num_classes``, ``ignore_index``,
``protocol_resize``, ``window``, ``stride``, ``ids``, ``len()`` and samples by index (``index``,
``id``, ``image`` RGB uint8, ``labels``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class DatasetError(ValueError):
    """A data set name is unknown, or its folder does not hold the layout its reader expects."""


class ArgumentGroup(Protocol):
    """What :meth:`BagOptions.add_arguments` is given: ``parser.add_argument_group(title)`` (argparse
    names no public type for it); only ``add_argument`` is used."""

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action: ...


class BagOptions(Protocol):
    """Options a data set adds to ``mlmp-bench make-bags`` (e.g. the world's generated streams)."""

    title: str

    def add_arguments(self, group: ArgumentGroup) -> None:
        """Add the options (each with a default of None or '' so that "not given" is visible)."""

    def given(self, args: argparse.Namespace) -> list[str]:
        """The flags of these options set on the command line."""

    def jobs(self, args: argparse.Namespace, name: str, corruptions: Sequence[str]) -> list[tuple[Any, str]]:
        """(data set, corruption) pairs to write as bags."""


Reader = Callable[[str, Path, "str | None"], Any]  # (name, root, condition) -> data set


@dataclass(frozen=True)
class DataSet:
    """One registered data set (a family: ACDC with its conditions is one entry)."""

    key: str  # e.g. voc20, acdc, world
    open: Reader
    help: str  # one line for make-bags' help
    needs_root: bool = True  # False: generated, no folder
    conditions: tuple[str, ...] = ()  # named ``<key>_<condition>`` (ACDC)
    variants: tuple[str, ...] = ()  # further names it answers to, each a data set of its own (world streams)
    bag_options: BagOptions | None = None

    def names(self) -> tuple[str, ...]:
        """Every name a scenario or make-bags may use for it."""
        return (self.key, *(f"{self.key}_{c}" for c in self.conditions), *self.variants)
