"""The generated world as a registered data set: held-out scenes (``world``) and streams whose shift
sets in over time (``world_stream_<shift>``); no data root.  The reader is
:class:`mlmp_ros.world.dataset.WorldDataset` (imported when a bag is written: it loads torch)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...world.shifts import SHIFTS
from ..argument_checks import UsageError, positive_int
from .entry import ArgumentGroup, DataSet

DEFAULT_SIZE = "640x480"


def open_world(name: str, root: Path, condition: str | None = None, **options: Any) -> Any:
    from ...world.dataset import WorldDataset

    return WorldDataset(name, **options)


def _frame_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size takes WxH (e.g. 640x480), got '{text}'") from None
    if width < 32 or height < 32:
        raise UsageError(f"--size must be at least 32x32, got {text}")
    return width, height


def stream_shifts(text: str) -> list[str]:
    """'all' or shift names separated by commas -> the shifts."""
    shifts = list(SHIFTS) if text.strip() == "all" else [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in shifts if s not in SHIFTS]
    if bad:
        raise UsageError(f"unknown stream shift {', '.join(bad)}; use 'all' or names from: {', '.join(SHIFTS)}")
    return shifts


class WorldBagOptions:
    """make-bags options of the world: streams to write beside the scenes, count, frame size, seed."""

    title = "world (generated scenes and streams)"
    flags = {"streams": "--streams", "count": "--count", "size": "--size", "seed": "--seed"}

    def add_arguments(self, group: ArgumentGroup) -> None:
        group.add_argument("--streams", default="", help="also write world streams: 'all' or shifts separated by "
                           f"commas ({', '.join(SHIFTS)}) as <out>/world_stream_<shift>/original")  # fmt: skip
        group.add_argument("--count", type=positive_int, help="scenes (default 40) or frames per stream (default 60)")
        group.add_argument("--size", help=f"frame size WxH (default {DEFAULT_SIZE})")
        group.add_argument("--seed", type=int, help="first scene seed / stream seed (default: the held-out seeds)")

    def given(self, args: argparse.Namespace) -> list[str]:
        return [flag for key, flag in self.flags.items() if getattr(args, key, None) not in (None, "")]

    def jobs(self, args: argparse.Namespace, name: str, corruptions: Sequence[str]) -> list[tuple[Any, str]]:
        """The data set under each corruption, then each stream asked for (clean)."""
        width, height = _frame_size(args.size or DEFAULT_SIZE)
        common = {"count": args.count, "height": height, "width": width, "seed": args.seed}
        jobs = [(open_world(name, Path("."), **common), c) for c in corruptions]
        shifts = stream_shifts(args.streams or "")
        return jobs + [(open_world(f"world_stream_{s}", Path("."), **common), "original") for s in shifts]


ENTRY = DataSet(
    key="world",
    open=open_world,
    help="world / world_stream_<shift> (generated, no root)",
    needs_root=False,
    variants=tuple(f"world_stream_{s}" for s in SHIFTS),
    bag_options=WorldBagOptions(),
)
