"""Reading a results store and grouping its records into the report's tables.

One table per data set family and setting; rows are image conditions, columns methods
(with the settings that differ), cells the trials of one (row, column) — see
:mod:`mlmp_ros.bench.report.files` for the layout and :func:`build_tables` for the keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...catalog import METHOD_LABELS, METHOD_NAMES
from ..data.corruptions import CORRUPTIONS, DRAWS, ORIGINAL, SEVERITY
from ..suite.records import DONE, NOT_RUN, RESULT_NEUTRAL, TrialRecord
from ..suite.store import STORE_NAME, ResultStore, StoreError
from .paper_numbers import SPLIT_SIZES

DATASET_LABELS = {
    "voc20": "Pascal VOC 20 (V20)", "voc21": "Pascal VOC 21 (V21)", "context59": "Pascal Context 59 (P59)",
    "context60": "Pascal Context 60 (P60)", "cityscapes": "Cityscapes", "coco_object": "COCO-Object",
    "coco_stuff": "COCO-Stuff", "acdc": "ACDC", "gta5": "GTA-V",
}  # fmt: skip


class ReportError(ValueError):
    """A report cannot be made from the given store."""


@dataclass
class Cell:
    """The trials of one method on one scenario (one setting), or why it did not run."""

    records: list[TrialRecord] = field(default_factory=list)
    reason: str | None = None
    superseded: int = 0  # done records of an older config, left out

    def values(self, metric: str = "mIoU") -> dict[int, float]:
        """Seed -> raw metric."""
        return {r.seed: _metric(r, metric) for r in self.records}

    def mean_std(self, metric: str = "mIoU") -> tuple[float, float] | None:
        vals = list(self.values(metric).values())
        if not vals:
            return None
        return float(np.mean(vals)), float(np.std(vals))


@dataclass
class Table:
    """One data set family under one setting."""

    family: str
    backbone: str
    weights: str
    attention: str
    batch_size: int
    mode: str
    rows: dict[tuple[str, str], str] = field(default_factory=dict)  # (dataset, corruption) -> row label
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=lambda: defaultdict(Cell))
    precision: str = "fp32"
    subset: str | None = None  # e.g. "first 2 frames": not the whole split
    protocol: tuple = ()  # (resize, window, stride)
    methods: list[str] = field(default_factory=list)  # column ids
    column_method: dict[str, str] = field(default_factory=dict)  # column id -> method
    column_label: dict[str, str] = field(default_factory=dict)
    seeds: int = 0  # trials expected per cell: the seeds seen anywhere in the table

    @property
    def slug(self) -> str:
        text = f"{self.family}_{self.backbone}_{self.weights}_{self.attention}_b{self.batch_size}_{self.mode}"
        if self.precision != "fp32" or self.subset:
            text += "_" + hashlib.sha256(repr((self.precision, self.subset, self.protocol)).encode()).hexdigest()[:8]
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)

    @property
    def title(self) -> str:
        text = (
            f"{DATASET_LABELS.get(self.family, self.family)} — {self.backbone} ({self.weights}), "
            f"{self.attention} attention, batch {self.batch_size}, {self.mode}"
        )
        if self.precision != "fp32":
            text += f", {self.precision}"
        if self.subset:
            text += f", {self.subset}"
        return text

    def method_of(self, column: str) -> str:
        return self.column_method.get(column, column)

    def label_of(self, column: str) -> str:
        return self.column_label.get(column) or METHOD_LABELS.get(column, column)

    def records_of(self, column: str) -> list[TrialRecord]:
        """The finished trials of one column, in the order of its cells."""
        return [r for (_, _, c), cell in self.cells.items() if c == column for r in cell.records]

    def done(self) -> list[TrialRecord]:
        return [r for c in self.cells.values() for r in c.records]


def load_records(source: str | os.PathLike[str]) -> list[TrialRecord]:
    """Records of a store file or of a results folder holding ``results.jsonl``."""
    path = Path(source).expanduser()
    if path.is_dir() and not (path / STORE_NAME).is_file():
        raise ReportError(f"{path} holds no {STORE_NAME}; give a results folder written by run or suite, or the file")
    if not path.exists():
        raise ReportError(f"results store {path} does not exist")
    try:
        records = ResultStore(path).read()
    except StoreError as err:
        raise ReportError(str(err)) from None
    if not records:
        raise ReportError(f"{path} holds no finished records yet")
    return records


def family_of(dataset: str) -> str:
    return "acdc" if dataset.startswith("acdc_") else dataset


def row_label(dataset: str, corruption: str) -> str:
    if dataset.startswith("acdc_"):
        condition = dataset[len("acdc_") :]
        return condition if corruption == ORIGINAL else f"{condition}/{corruption}"
    return corruption


def _row_order(key: tuple[str, str]) -> tuple:
    dataset, corruption = key
    rank = 0 if corruption == ORIGINAL else (CORRUPTIONS.index(corruption) + 1 if corruption in CORRUPTIONS else 99)
    return (dataset, rank, corruption)


def _metric(record: TrialRecord, metric: str) -> float:
    metrics = record.metrics or {}
    raw = metrics.get("raw") or {}
    value = raw.get(metric, metrics.get(metric))
    return float("nan") if value is None else float(value)


# Config keys that are table-level (or not a setting of the method) and left out of a column's identity.
# Result-neutral ones (``compile`` too: a compiled and an eager run share a column) never make one.
_NOT_COLUMN = RESULT_NEUTRAL | {
    "model", "weights", "attention", "precision", "adaptation.mode", "adaptation.method", "classes", "resize",
    "window", "stride",
}  # fmt: skip


def _method_settings(record: TrialRecord) -> tuple:
    """The settings of a record's method that change its numbers (its column's identity)."""
    config = record.config
    if isinstance(config, Mapping):
        items = {k: v for k, v in config.items() if k not in _NOT_COLUMN}
    else:  # records of older versions carry no config
        items = {"adaptation.steps": record.steps, "adaptation.lr": record.lr}
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in items.items()))


def _row_variant(record: TrialRecord) -> str:
    """How a row's images differ from the paper's (severity 5, BGR, the reference's draws); '' when they do not."""
    if record.corruption == ORIGINAL:
        return ""
    parts = []
    if record.severity not in (None, SEVERITY):
        parts.append(f"severity {record.severity}")
    if record.channel_order == "rgb":
        parts.append("RGB")
    if record.corruption_draws != DRAWS:
        parts.append("library draws" if record.corruption_draws is None else str(record.corruption_draws))
    return f" ({', '.join(parts)})" if parts else ""


def _subset(record: TrialRecord) -> str | None:
    """'first N frames' when a record scored less than its whole split."""
    frames = record.frames or record.frame_count
    split = record.split_size or SPLIT_SIZES.get(str(record.dataset))
    limit = record.limit
    if limit:
        return f"first {limit} frames"
    if frames and split and frames < split:
        return f"{frames} of {split} frames"
    return None


_TABLE_FIELDS = ("family", "backbone", "weights", "attention", "batch_size", "mode", "precision", "subset", "protocol")


def _table_key(record: TrialRecord) -> tuple:
    """The table a record belongs to: the values of :data:`_TABLE_FIELDS`."""
    protocol = tuple(json.dumps(v) for v in (record.resize, record.window, record.stride))
    return (
        family_of(record.dataset), record.backbone or "?", record.weights or "?", record.attention or "?",
        record.batch_size, record.mode or "?", record.precision or "fp32", _subset(record), protocol,
    )  # fmt: skip


def build_tables(records: Iterable[TrialRecord]) -> list[Table]:
    """Group records into tables, rows, columns and cells keyed on every setting; the newest config of a cell wins."""
    by_table: dict[tuple, Table] = {}
    signatures: dict[tuple, dict[str, list[tuple]]] = defaultdict(lambda: defaultdict(list))
    kept: list[tuple[tuple, TrialRecord, tuple | None]] = []
    for record in records:
        if record.status not in (DONE, NOT_RUN):
            continue
        tkey = _table_key(record)
        if tkey not in by_table:
            by_table[tkey] = Table(**dict(zip(_TABLE_FIELDS, tkey)))
        # A "not run" record of version 1 has no config: it joins its method's column.
        sig = None if record.status == NOT_RUN and record.config is None else _method_settings(record)
        if sig is not None and sig not in signatures[tkey][record.method]:
            signatures[tkey][record.method].append(sig)
        kept.append((tkey, record, sig))
    columns = _name_columns(by_table, signatures)
    grouped, seeds = _place(by_table, signatures, columns, kept)
    for tkey, cells in grouped.items():
        _finish(by_table[tkey], cells, seeds[tkey])
    return sorted(by_table.values(), key=lambda t: (_family_rank(t.family), t.backbone, t.batch_size, t.mode,
                                                     t.precision, t.subset or "", t.protocol))  # fmt: skip


def _name_columns(by_table: dict[tuple, Table], signatures: dict[tuple, dict[str, list[tuple]]]) -> dict[tuple, str]:
    """(table, method, settings) -> column id: the method's name, or with the settings that differ when
    a method ran with several in one table."""
    columns: dict[tuple, str] = {}
    for tkey, per_method in signatures.items():
        table = by_table[tkey]
        for method, sigs in per_method.items():
            label = METHOD_LABELS.get(method, method)
            if len(sigs) == 1:
                columns[tkey, method, sigs[0]] = method
                table.column_method[method], table.column_label[method] = method, label
                continue
            dicts = [dict(s) for s in sigs]
            differ = sorted({k for d in dicts for k in d if len({d.get(k) for d in dicts}) > 1})
            for sig, values in zip(sigs, dicts):
                short = ", ".join(f"{k.removeprefix('adaptation.')}={json.loads(values.get(k, 'null'))}" for k in differ)
                column = f"{method} [{short}]"
                columns[tkey, method, sig] = column
                table.column_method[column], table.column_label[column] = method, f"{label} ({short})"
    return columns


def _place(by_table: dict[tuple, Table], signatures: dict[tuple, dict[str, list[tuple]]],
           columns: dict[tuple, str], kept: list[tuple[tuple, TrialRecord, tuple | None]]):
    """Each record into its table's row and column: (table -> cell key -> records, table -> seeds)."""
    grouped: dict[tuple, dict[tuple, list[TrialRecord]]] = defaultdict(lambda: defaultdict(list))
    seeds: dict[tuple, set] = defaultdict(set)
    for tkey, record, sig in kept:
        if sig is None:
            sigs = signatures[tkey][record.method]
            if not sigs:
                sigs.append(_method_settings(record))
            sig = sigs[0]
        table = by_table[tkey]
        column = columns.get((tkey, record.method, sig))
        if column is None:  # a method whose only records are config-less "not run" ones
            column = columns[tkey, record.method, sig] = record.method
            table.column_method[column] = record.method
        scenario = (record.dataset, record.corruption + _row_variant(record))
        table.rows[scenario] = row_label(record.dataset, record.corruption) + _row_variant(record)
        if column not in table.methods:
            table.methods.append(column)
        grouped[tkey][(*scenario, column)].append(record)
        seeds[tkey].add(record.seed)
    return grouped, seeds


def _finish(table: Table, cells: dict[tuple, list[TrialRecord]], seeds: set) -> None:
    """Cells from their records; rows in the paper's order, columns in the methods' order."""
    table.seeds = len(seeds)
    for ckey, recs in cells.items():
        table.cells[ckey] = _cell(recs)
    table.rows = dict(sorted(table.rows.items(), key=lambda kv: _row_order(kv[0])))
    order = {m: i for i, m in enumerate(METHOD_NAMES)}
    table.methods.sort(key=lambda c: (order.get(table.method_of(c), len(order)), table.method_of(c), c))


def _family_rank(family: str) -> tuple:
    order = list(DATASET_LABELS)
    return (order.index(family) if family in order else len(order), family)


def _cell(records: list[TrialRecord]) -> Cell:
    done = [r for r in records if r.done]
    if not done:
        return Cell(reason=max(records, key=lambda r: r.finished or "").reason or "unknown")
    latest: dict[str, str] = {}
    for r in done:
        h = r.config_hash or ""
        latest[h] = max(latest.get(h, ""), r.finished or "")
    newest = max(latest, key=lambda h: latest[h])
    by_seed: dict[int, dict[str, Any]] = {}
    for r in sorted(done, key=lambda r: r.finished or ""):
        if (r.config_hash or "") == newest:
            by_seed[r.seed] = r
    superseded = len({(r.config_hash, r.seed) for r in done if (r.config_hash or "") != newest})
    failed = [r for r in records if r.status == NOT_RUN and r.seed not in by_seed]
    reason = failed[-1].reason if failed else None
    return Cell(records=list(by_seed.values()), reason=reason, superseded=superseded)


def restored(record: TrialRecord) -> int:
    """Batches of a trial whose adaptation failed and were answered with the last good weights."""
    return sum(n for status, n in (record.adaptation_status or {}).items() if status.startswith("restored"))
