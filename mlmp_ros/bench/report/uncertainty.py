"""Uncertainty of every number a report compares: 95% bootstrap intervals over scenes.

Each finished trial records every frame's per-class intersection and union (``unit_areas``, bag
order).  A cell's mIoU is pooled over its units (the scenes of a data set, the frames of a stream;
the areas of a cell's trials added unit by unit) with a bootstrap interval that resamples the units
(:func:`~mlmp_ros.bench.scoring.intervals.pooled_miou_interval`), and each method's difference from
NoAdapt on the same condition is paired: the same units resampled on both sides
(:func:`~mlmp_ros.bench.scoring.intervals.paired_pooled_difference`), worded by
:meth:`~mlmp_ros.bench.scoring.intervals.Interval.verdict` ("gains" / "loses" only when the interval
excludes zero, else "no measurable difference").  Records written before ``unit_areas`` existed give
"interval unavailable".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..scoring.intervals import LEVEL, RESAMPLES, Interval, paired_pooled_difference, pooled_miou_interval
from ..scoring.unit_areas import decode_unit_areas
from .tables import Cell, Table

BASELINE = "noadapt"
UNAVAILABLE = "interval unavailable"
OLD_RECORDS = "its trials were recorded before per-scene areas were stored; run them again for an interval"


@dataclass
class CellInterval:
    """A cell's pooled mIoU with its interval, and its paired difference from NoAdapt (None: not compared)."""

    units: int
    unit: str
    miou: Interval | None = None
    difference: Interval | None = None
    note: str | None = None  # why an interval is unavailable

    CSV_FIELDS = ("units", "cell_mIoU_pooled", "mIoU_ci95_low", "mIoU_ci95_high", "vs_noadapt", "vs_noadapt_ci95_low",
                  "vs_noadapt_ci95_high", "vs_noadapt_verdict", "interval_note")  # fmt: skip

    def csv_fields(self) -> dict[str, Any]:
        m, d = self.miou, self.difference
        return {
            "units": self.units or None, "cell_mIoU_pooled": m.value if m else None,
            "mIoU_ci95_low": m.low if m else None, "mIoU_ci95_high": m.high if m else None,
            "vs_noadapt": d.value if d else None, "vs_noadapt_ci95_low": d.low if d else None,
            "vs_noadapt_ci95_high": d.high if d else None, "vs_noadapt_verdict": d.verdict() if d else None,
            "interval_note": self.note,
        }  # fmt: skip


def unit_name(dataset: str) -> str:
    """What a data set's units are: the frames of a stream, the scenes of the world, the images of a split."""
    if dataset.startswith("world_stream_"):
        return "frames"
    return "scenes" if dataset == "world" else "images"


def cell_areas(cell: Cell | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(intersection, union) ``[units, classes]`` of a cell, its trials added unit by unit; None when a trial
    carries no areas or the trials' units differ."""
    if cell is None or not cell.records:
        return None
    arrays = [decode_unit_areas(r.unit_areas) for r in cell.records]
    if any(a is None for a in arrays) or len({a[0].shape for a in arrays}) != 1:  # type: ignore[index]
        return None
    return sum(a for a, _ in arrays), sum(b for _, b in arrays)


def baseline_column(table: Table) -> str | None:
    return next((c for c in table.methods if table.method_of(c) == BASELINE), None)


def table_intervals(table: Table) -> dict[tuple[str, str, str], CellInterval]:
    """Every finished cell's interval, and its paired difference from the NoAdapt column of its row."""
    base_column = baseline_column(table)
    out: dict[tuple[str, str, str], CellInterval] = {}
    for (dataset, corruption), _ in table.rows.items():
        base = cell_areas(table.cells.get((dataset, corruption, base_column))) if base_column else None
        for column in table.methods:
            cell = table.cells.get((dataset, corruption, column))
            if cell is None or not cell.records:
                continue
            out[dataset, corruption, column] = _cell_interval(cell, dataset, base if column != base_column else None)
    return out


def _cell_interval(cell: Cell, dataset: str, base: tuple[np.ndarray, np.ndarray] | None) -> CellInterval:
    areas = cell_areas(cell)
    if areas is None:
        return CellInterval(0, unit_name(dataset), note=OLD_RECORDS)
    result = CellInterval(len(areas[0]), unit_name(dataset), miou=pooled_miou_interval(*areas))
    if base is not None and base[0].shape == areas[0].shape:
        result.difference = paired_pooled_difference(areas, base)
    return result


def interval_markdown(table: Table, intervals: dict[tuple[str, str, str], CellInterval]) -> list[str]:
    """The table's intervals: one line per condition, a cell per method, then each method's verdicts."""
    if not intervals:
        return []
    base_column = baseline_column(table)
    header = ["condition", *(table.label_of(m) for m in table.methods)]
    paired = (", and Δ, the paired difference from NoAdapt on the same units, worded 'gains' or 'loses' only where "
              "its interval excludes zero:") if base_column else "; no NoAdapt column, so no paired differences:"
    lines = [
        "",
        f"Uncertainty: pooled mIoU with its {LEVEL:.0%} bootstrap confidence interval over the condition's units "
        f"(scenes; frames for streams; a cell's trials added unit by unit; scipy.stats.bootstrap, BCa, {RESAMPLES} "
        f"resamples){paired}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for (dataset, corruption), label in table.rows.items():
        units = next((i for (d, c, _), i in intervals.items() if (d, c) == (dataset, corruption) and i.units), None)
        name = f"{label} ({units.units} {units.unit})" if units else label
        cells = [_interval_text(intervals.get((dataset, corruption, m))) for m in table.methods]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    lines += _verdict_lines(table, intervals, base_column)
    return lines


def _interval_text(interval: CellInterval | None) -> str:
    if interval is None:
        return ""
    if interval.miou is None:
        return UNAVAILABLE
    text = interval.miou.text(2)  # "[n/a]" for a single unit: nothing to resample
    if interval.difference is not None:
        d = interval.difference
        text += f"; Δ {d.text(2, signed=True)} {d.verdict()}"
    return text


def _verdict_lines(table: Table, intervals: dict[tuple[str, str, str], CellInterval], base: str | None) -> list[str]:
    """'MLMP vs NoAdapt: gains on 2, loses on 1, no measurable difference on 5 of 8 conditions.'"""
    lines = []
    for column in table.methods:
        if column == base or base is None:
            continue
        verdicts = Counter(i.difference.verdict() for (_, _, c), i in intervals.items()
                           if c == column and i.difference is not None)  # fmt: skip
        total = sum(verdicts.values())
        if not total:
            continue
        parts = [f"{word} on {verdicts[word]}" for word in ("gains", "loses", "no measurable difference") if verdicts[word]]
        lines.append(f"- {table.label_of(column)} vs NoAdapt: {', '.join(parts)} of {total} "
                     f"condition{'s' if total != 1 else ''}")  # fmt: skip
    unavailable = sum(1 for i in intervals.values() if i.miou is None)
    if unavailable:
        lines.append(f"- {UNAVAILABLE} for {unavailable} cell{'s' if unavailable != 1 else ''}: {OLD_RECORDS}")
    return [""] + lines if lines else []
