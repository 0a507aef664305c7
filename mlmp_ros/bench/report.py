"""Tables, a CSV and plots from a results store, in the shape of the paper's tables.

One table per data set and setting (backbone, weights, attention, batch size, mode,
precision, frames scored of the split): rows are the image conditions ("original"
first, then the corruptions; a corruption made with another severity, channel order or
random draws is a row of its own), columns the methods (a method run with other
settings — steps, lr, templates, … — is a column of its own, labelled with what
differs), cells the mIoU mean ± std over trials (population std, ddof=0), and a last
row with the average over the 15 corruptions when all are present.  Every setting that
changes a number therefore has its own cell.  The paper's published number is printed
beside ours only where the protocol is exactly the paper's
(:func:`mlmp_ros.bench.paper_numbers.paper_setting`); scenarios that did not run show
their reason.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .corruptions import CORRUPTIONS, DRAWS, ORIGINAL
from .paper_numbers import (
    C_AVERAGE,
    CLEAN,
    METHOD_LABELS,
    METHOD_ORDER,
    PAPER_NOTES,
    Setting,
    paper_has,
    paper_miou,
    paper_setting,
)
from .suite import DONE, NOT_RUN, STORE_NAME, ResultStore, StoreError

DATASET_LABELS = {
    "voc20": "Pascal VOC 20 (V20)", "voc21": "Pascal VOC 21 (V21)", "context59": "Pascal Context 59 (P59)",
    "context60": "Pascal Context 60 (P60)", "cityscapes": "Cityscapes", "coco_object": "COCO-Object",
    "coco_stuff": "COCO-Stuff", "acdc": "ACDC", "gta5": "GTA-V",
}  # fmt: skip
CSV_FIELDS = (
    "key", "status", "reason", "dataset", "base_dataset", "condition", "corruption", "method", "backbone",
    "weights", "attention", "precision", "mode", "steps", "lr", "batch_size", "shuffle", "limit", "trial", "seed",
    "severity", "channel_order", "corruption_draws", "corruption_library", "presized", "split_size", "resize",
    "window", "stride", "config_hash", "frames", "out_of_range_pixels", "mIoU", "mAcc", "mDice", "aAcc", "model_s_per_frame", "segmenter_s_per_frame",
    "harness_s_per_frame", "model_fraction", "restored_adaptations", "loss_first_step", "loss_last_step",
    "IoU_per_class", "class_names", "random_weights", "device", "started", "finished", "wall_s", "examples",
)  # fmt: skip


class ReportError(ValueError):
    """A report cannot be made from the given store."""


@dataclass
class Cell:
    """The trials of one method on one scenario (one setting), or why it did not run."""

    records: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    superseded: int = 0  # done records of an older config, left out

    def values(self, metric: str = "mIoU") -> dict[int, float]:
        """Seed -> raw metric."""
        return {r["seed"]: _metric(r, metric) for r in self.records}

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

    def records_of(self, column: str) -> list[dict[str, Any]]:
        return [r for r in self.done() if r.get("_column", r["method"]) == column]

    def done(self) -> list[dict[str, Any]]:
        return [r for c in self.cells.values() for r in c.records]


@dataclass
class ReportFiles:
    markdown: Path
    csv: Path
    plots: list[Path]
    text: str


# ------------------------------------------------------------------ loading
def load_records(source: str | os.PathLike[str]) -> list[dict[str, Any]]:
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


def _metric(record: Mapping[str, Any], metric: str) -> float:
    metrics = record.get("metrics") or {}
    raw = metrics.get("raw") or {}
    value = raw.get(metric, metrics.get(metric))
    return float("nan") if value is None else float(value)


# Config keys that are table-level (or not a setting of the method) and left out of a column's identity.
_NOT_COLUMN = frozenset({
    "model", "weights", "attention", "precision", "adaptation.mode", "adaptation.method", "classes", "resize",
    "window", "stride", "device", "cache_dir", "offline", "flush_denormal",
})  # fmt: skip


def _method_settings(record: Mapping[str, Any]) -> tuple:
    """The settings of a record's method that change its numbers (its column's identity)."""
    config = record.get("config")
    if isinstance(config, Mapping):
        items = {k: v for k, v in config.items() if k not in _NOT_COLUMN}
    else:  # records of older versions carry no config
        items = {"adaptation.steps": record.get("steps"), "adaptation.lr": record.get("lr")}
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in items.items()))


def _row_variant(record: Mapping[str, Any]) -> str:
    """How a row's images differ from the paper's (severity 5, BGR, the reference's draws); '' when they do not."""
    if record.get("corruption") == ORIGINAL:
        return ""
    parts = []
    severity = record.get("severity", 5)
    if severity not in (None, 5):
        parts.append(f"severity {severity}")
    if record.get("channel_order") == "rgb":
        parts.append("RGB")
    if record.get("corruption_draws", DRAWS) != DRAWS:
        parts.append("library draws" if record.get("corruption_draws") is None else str(record["corruption_draws"]))
    return f" ({', '.join(parts)})" if parts else ""


def _subset(record: Mapping[str, Any]) -> str | None:
    """'first N frames' when a record scored less than its whole split."""
    from .paper_numbers import SPLIT_SIZES

    frames = record.get("frames") or record.get("frame_count")
    split = record.get("split_size") or SPLIT_SIZES.get(str(record.get("dataset")))
    limit = record.get("limit")
    if limit:
        return f"first {limit} frames"
    if frames and split and frames < split:
        return f"{frames} of {split} frames"
    return None


def build_tables(records: Iterable[Mapping[str, Any]]) -> list[Table]:
    """Group records into tables, rows, columns and cells keyed on every setting; the newest config of a cell wins."""
    by_table: dict[tuple, Table] = {}
    grouped: dict[tuple, dict[tuple, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    seeds: dict[tuple, set] = defaultdict(set)
    signatures: dict[tuple, dict[str, list[tuple]]] = defaultdict(lambda: defaultdict(list))
    kept: list[tuple[tuple, dict[str, Any], tuple | None]] = []
    for record in records:
        if record.get("status") not in (DONE, NOT_RUN):
            continue
        protocol = tuple(json.dumps(record.get(k)) for k in ("resize", "window", "stride"))
        tkey = (
            family_of(record["dataset"]), record.get("backbone") or "?", record.get("weights") or "?",
            record.get("attention") or "?", record.get("batch_size"), record.get("mode") or "?",
            record.get("precision") or "fp32", _subset(record), protocol,
        )  # fmt: skip
        if tkey not in by_table:
            names = ("family", "backbone", "weights", "attention", "batch_size", "mode", "precision", "subset",
                     "protocol")  # fmt: skip
            by_table[tkey] = Table(**dict(zip(names, tkey)))
        record = dict(record)
        # A "not run" record of version 1 has no config: it joins its method's column.
        sig = None if record.get("status") == NOT_RUN and record.get("config") is None else _method_settings(record)
        if sig is not None and sig not in signatures[tkey][record["method"]]:
            signatures[tkey][record["method"]].append(sig)
        kept.append((tkey, record, sig))
    columns: dict[tuple, dict[tuple, str]] = {}
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
    for tkey, record, sig in kept:
        if sig is None:
            sigs = signatures[tkey][record["method"]]
            if not sigs:
                sigs.append(_method_settings(record))
            sig = sigs[0]
        table = by_table[tkey]
        column = columns.get((tkey, record["method"], sig))
        if column is None:  # a method whose only records are config-less "not run" ones
            column = columns[tkey, record["method"], sig] = record["method"]
            table.column_method[column] = record["method"]
        record["_column"] = column
        scenario = (record["dataset"], record["corruption"] + _row_variant(record))
        table.rows[scenario] = row_label(record["dataset"], record["corruption"]) + _row_variant(record)
        if column not in table.methods:
            table.methods.append(column)
        grouped[tkey][(*scenario, column)].append(record)
        seeds[tkey].add(record.get("seed"))
    for tkey, cells in grouped.items():
        table = by_table[tkey]
        table.seeds = len(seeds[tkey])
        for ckey, recs in cells.items():
            table.cells[ckey] = _cell(recs)
        table.rows = dict(sorted(table.rows.items(), key=lambda kv: _row_order(kv[0])))
        order = {m: i for i, m in enumerate(METHOD_ORDER)}
        table.methods.sort(key=lambda c: (order.get(table.method_of(c), len(order)), table.method_of(c), c))
    return sorted(by_table.values(), key=lambda t: (_family_rank(t.family), t.backbone, t.batch_size, t.mode,
                                                     t.precision, t.subset or "", t.protocol))  # fmt: skip


def _family_rank(family: str) -> tuple:
    order = list(DATASET_LABELS)
    return (order.index(family) if family in order else len(order), family)


def _cell(records: list[dict[str, Any]]) -> Cell:
    done = [r for r in records if r.get("status") == DONE]
    if not done:
        return Cell(reason=max(records, key=lambda r: r.get("finished") or "").get("reason") or "unknown")
    latest: dict[str, str] = {}
    for r in done:
        h = r.get("config_hash") or ""
        latest[h] = max(latest.get(h, ""), r.get("finished") or "")
    newest = max(latest, key=lambda h: latest[h])
    by_seed: dict[int, dict[str, Any]] = {}
    for r in sorted(done, key=lambda r: r.get("finished") or ""):
        if (r.get("config_hash") or "") == newest:
            by_seed[r["seed"]] = r
    superseded = len({(r.get("config_hash"), r["seed"]) for r in done if (r.get("config_hash") or "") != newest})
    failed = [r for r in records if r.get("status") == NOT_RUN and r["seed"] not in by_seed]
    reason = failed[-1].get("reason") if failed else None
    return Cell(records=list(by_seed.values()), reason=reason, superseded=superseded)


# ---------------------------------------------------------------- markdown
def _with_paper(mean: float, std: float, n: int, expected: int, paper: float | None, has_paper: bool) -> str:
    text = f"{mean:.2f} ± {std:.2f}" if math.isfinite(std) else f"{mean:.2f} (means of cells, no common trials)"
    if 0 < n < expected:
        text += f" (n={n})"
    if has_paper:
        text += " · paper –" if paper is None else f" · paper {paper:.2f} (Δ {mean - paper:+.2f})"
    return text


def _setting(records: Sequence[Mapping[str, Any]]) -> Setting | None:
    settings = {paper_setting(r) for r in records}
    return settings.pop() if len(settings) == 1 else None


class _Footnotes:
    def __init__(self) -> None:
        self.reasons: dict[str, int] = {}

    def mark(self, reason: str) -> str:
        number = self.reasons.setdefault(reason, len(self.reasons) + 1)
        return f"[{number}]"

    def lines(self) -> list[str]:
        return [f"- [{n}] not run: {reason}" for reason, n in self.reasons.items()]


def table_markdown(table: Table) -> list[str]:
    """The paper-shaped table of one data set and setting, with its notes."""
    lines = [f"### {table.title}", ""]
    trials = table.seeds
    done = table.done()
    random = any(r.get("random_weights") for r in done)
    if random:
        lines += ["**Random weights: these numbers test the harness and say nothing about the methods.**", ""]
    steps = sorted({(r.get("steps"), r.get("lr")) for r in done if r["method"] != "noadapt"}, key=str)
    frames = sorted({r.get("frames") for r in done if r.get("frames")})
    limited = any(r.get("limit") for r in done)
    settings_text = ", ".join(f"{s} steps, lr {lr}" for s, lr in steps) or "no adaptation"
    splits = sorted({r.get("split_size") for r in done if r.get("split_size")})
    libraries = sorted({r.get("corruption_library") for r in done if r.get("corruption_library")})
    protocol = next(iter(done), {})
    lines.append(
        f"Settings: {settings_text}; precision {table.precision}; frames scored per scenario: "
        f"{', '.join(map(str, frames)) or '–'}"
        + (f" of {', '.join(map(str, splits))}" if splits else "")
        + (" (a subset of the split)" if limited or table.subset else "")
        + (f"; resize {protocol.get('resize')}, window {protocol.get('window')}, stride {protocol.get('stride')}"
           if protocol.get("resize") is not None else "")
        + (f"; corruptions: {', '.join(libraries)} with the reference's draws" if libraries else "")
    )  # fmt: skip
    comparable = _setting(done)
    if comparable is not None:
        lines.append(f"Published numbers (paper, {comparable.description}) are shown beside ours where it has them.")
    else:
        lines.append(
            "No published number is claimed here: the paper's tables use ViT-L/14 (OpenAI weights), NACLIP "
            "attention, the full split, batch 2 (main), batch 1 (single sample) or continual mode."
        )
    lines.append("")

    notes = _Footnotes()
    header = ["condition", *(table.label_of(m) for m in table.methods)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (dataset, corruption), label in table.rows.items():
        row = [label]
        for column in table.methods:
            cell = table.cells.get((dataset, corruption, column))
            clean = CLEAN if corruption == ORIGINAL else None
            row.append(_cell_text(cell, notes, trials, dataset, clean, table.method_of(column)))
        lines.append("| " + " | ".join(row) + " |")
    for dataset in sorted({d for d, _ in table.rows}):
        average = [f"{row_label(dataset, ORIGINAL) + ' ' if dataset.startswith('acdc_') else ''}-C average (15)"]
        if not all((dataset, c) in table.rows for c in CORRUPTIONS):
            continue
        for column in table.methods:
            cells = [table.cells.get((dataset, c, column)) for c in CORRUPTIONS]
            average.append(_average_text(cells, trials, dataset, table.method_of(column)))
        lines.append("| " + " | ".join(average) + " |")
    lines.append("")
    lines += notes.lines()
    lines += _label_notes(table)
    lines += _method_notes(table)
    lines += _timing_table(table)
    return lines


def _cell_text(cell: Cell | None, notes: _Footnotes, trials: int, dataset: str, row: str | None, method: str) -> str:
    if cell is None:
        return ""
    if not cell.records:
        return f"not run {notes.mark(cell.reason or 'unknown')}"
    mean, std = cell.mean_std()
    setting = _setting(cell.records)
    paper = paper_miou(setting, dataset, row, method) if row else None
    has = row is not None and paper_has(setting, dataset, row, method)
    text = _with_paper(mean, std, len(cell.records), trials, paper, has)
    if cell.reason:  # some trials failed
        text += f" · not run {notes.mark(cell.reason)}"
    if cell.superseded:
        text += " ‡"
    if _out_of_range(cell.records):
        text += " ⚠"
    return text


def _out_of_range(records: Sequence[Mapping[str, Any]]) -> int:
    return max((int((r.get("metrics") or {}).get("out_of_range_pixels") or 0) for r in records), default=0)


def _label_notes(table: Table) -> list[str]:
    bad = sorted({(d, c) for (d, c, _), cell in table.cells.items() if _out_of_range(cell.records)})
    if not bad:
        return []
    where = ", ".join(f"{d}/{c}" for d, c in bad)
    return [f"- ⚠ label ids outside the classes in the ground truth of {where} (those pixels are not scored: "
            "check the data set's label mapping)"]  # fmt: skip


def _average_text(cells: Sequence[Cell | None], trials: int, dataset: str, method: str) -> str:
    if any(c is None or not c.records for c in cells):
        return "–"
    per_seed = [c.values() for c in cells]  # type: ignore[union-attr]
    seeds = set.intersection(*(set(v) for v in per_seed))
    if seeds:
        averages = [float(np.mean([v[s] for v in per_seed])) for s in sorted(seeds)]
        mean, std, n = float(np.mean(averages)), float(np.std(averages)), len(averages)
    else:  # no seed ran everywhere: the mean of the cell means, no spread
        mean, std, n = float(np.mean([np.mean(list(v.values())) for v in per_seed])), float("nan"), 0
    records = [r for c in cells for r in c.records]  # type: ignore[union-attr]
    setting = _setting(records)
    has = paper_has(setting, dataset, C_AVERAGE, method)
    return _with_paper(mean, std, n, trials, paper_miou(setting, dataset, C_AVERAGE, method), has)


def _method_notes(table: Table) -> list[str]:
    lines = []
    for column in table.methods:
        notes: dict[str, Any] = {}
        params = set()
        for r in table.records_of(column):
            notes.update(r.get("notes") or {})
            params.add(r.get("trainable_parameters"))
        parts = [f"{k}: {v}" for k, v in sorted(notes.items())]
        if params - {None, 0}:
            parts.append(f"{', '.join(str(p) for p in sorted(params - {None}))} trainable parameters")
        if parts:
            lines.append(f"- {table.label_of(column)}: " + "; ".join(parts))
    if table.family == "cityscapes":
        lines.append(f"- CLIPArTT on Cityscapes: {_clipartt_cityscapes(table)}")
    if any(c.superseded for c in table.cells.values()):
        lines.append("- ‡ older results of another config for this cell are in the store and left out")
    return (["", "Notes:", *lines] if lines else [])


def _clipartt_cityscapes(table: Table) -> str:
    paper = PAPER_NOTES[("cityscapes", "clipartt")]
    cells = [c for (_, _, m), c in table.cells.items() if table.method_of(m) == "clipartt"]
    ran = [r for c in cells for r in c.records]
    if ran:
        note = next((r.get("notes", {}).get("token_loss") for r in ran if r.get("notes")), None)
        how = f" ({note})" if note else ""
        return f"run here{how}; {paper}."
    if cells:
        reasons = sorted({c.reason for c in cells if c.reason})
        return f"not run here ({'; '.join(reasons)}); {paper}."
    return f"not in this store; {paper}."


def _timing_table(table: Table) -> list[str]:
    rows = []
    for method in table.methods:
        recs = table.records_of(method)
        if not recs:
            continue
        frames = sum(r.get("frames") or 0 for r in recs)
        model = _frame_weighted(recs, lambda t: t["model_s_per_frame"])
        harness = _frame_weighted(recs, lambda t: t["harness_s_per_frame"]["total"])
        segmenter = _frame_weighted(recs, lambda t: t["segmenter_s_per_frame"]["total"])
        restored = sum(_restored(r) for r in recs)
        batches = sum(r.get("batches") or 0 for r in recs)
        share = model / (segmenter + harness) if segmenter + harness > 0 else float("nan")
        rows.append(
            f"| {table.label_of(method)} | {frames} | {model * 1000:.1f} | {segmenter * 1000:.1f} | "
            f"{harness * 1000:.2f} | {share:.0%} | {restored} / {batches} |"
        )
    if not rows:
        return []
    return [
        "",
        "| method | frames | model ms/frame | segmenter ms/frame | harness ms/frame | model share | restored adaptations |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def _restored(record: Mapping[str, Any]) -> int:
    """Batches of a trial whose adaptation failed and were answered with the last good weights."""
    return sum(n for status, n in (record.get("adaptation_status") or {}).items() if status.startswith("restored"))


def _frame_weighted(records: Sequence[Mapping[str, Any]], get: Any) -> float:
    frames = sum(r.get("frames") or 0 for r in records)
    return sum(get(r["timing"]) * (r.get("frames") or 0) for r in records) / max(frames, 1)


# -------------------------------------------------------------------- csv
def write_csv(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Every record's metrics, one row per record (per-class IoU as JSON)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in records:
            metrics = r.get("metrics") or {}
            timing = r.get("timing") or {}
            losses = [v for v in (r.get("loss_per_step") or []) if v is not None]
            row = {k: (json.dumps(r[k]) if isinstance(r[k], list) else r[k]) for k in CSV_FIELDS if k in r}
            row.update(
                mIoU=metrics.get("mIoU"),
                mAcc=metrics.get("mAcc"),
                mDice=metrics.get("mDice"),
                aAcc=metrics.get("aAcc"),
                out_of_range_pixels=metrics.get("out_of_range_pixels"),
                model_s_per_frame=timing.get("model_s_per_frame"),
                segmenter_s_per_frame=(timing.get("segmenter_s_per_frame") or {}).get("total"),
                harness_s_per_frame=(timing.get("harness_s_per_frame") or {}).get("total"),
                model_fraction=timing.get("model_fraction"),
                restored_adaptations=_restored(r) if r.get("status") == DONE else None,
                loss_first_step=losses[0] if losses else None,
                loss_last_step=losses[-1] if losses else None,
                IoU_per_class=json.dumps(metrics.get("IoU")) if metrics else None,
                class_names=json.dumps(r.get("class_names")) if r.get("class_names") else None,
            )
            writer.writerow(row)


# ------------------------------------------------------------------ plots
def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path, plots: list[Path]) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plots.append(path)


def plot_miou(table: Table, path: Path, plots: list[Path]) -> None:
    """mIoU per condition, one bar per method, with the trial std as error bars."""
    rows = list(table.rows.items())
    fig = _figure(max(6.0, 0.6 * len(rows) * max(1, len(table.methods)) / 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(table.methods))
    x = np.arange(len(rows))
    for i, method in enumerate(table.methods):
        stats = [table.cells.get((*key, method)) for key, _ in rows]
        pairs = [c.mean_std() if c is not None and c.records else None for c in stats]
        means = [p[0] if p else np.nan for p in pairs]
        stds = [p[1] if p else 0.0 for p in pairs]
        ax.bar(x + (i - (len(table.methods) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               label=table.label_of(method))  # fmt: skip
    ax.set_xticks(x)
    ax.set_xticklabels([label for _, label in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("mIoU (%)")
    ax.set_title(table.title.replace(" — ", "\n"), fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path, plots)


def plot_losses(table: Table, path: Path, plots: list[Path]) -> bool:
    """Mean loss at each adaptation step, one line per method."""
    curves = {}
    for method in table.methods:
        runs = [r.get("loss_per_step") or [] for r in table.records_of(method)]
        length = max((len(c) for c in runs), default=0)
        if not length:
            continue
        curve = []
        for step in range(length):
            vals = [c[step] for c in runs if step < len(c) and c[step] is not None]
            curve.append(float(np.mean(vals)) if vals else np.nan)
        curves[method] = curve
    if not curves:
        return False
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for method, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", markersize=3, label=table.label_of(method))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("adaptation step")
    ax.set_ylabel("loss (mean over batches, conditions, trials)")
    ax.set_title(table.title.replace(" — ", "\n"), fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path, plots)
    return True


def plot_layer_weights(table: Table, path: Path, plots: list[Path]) -> bool:
    """MLMP's entropy-based layer weights: mean and std per layer."""
    recs = [r for r in table.done() if r["method"] == "mlmp" and r.get("layer_weights")]
    recs = [r for r in recs if r.get("_column") == next(c for c in table.methods if table.method_of(c) == "mlmp")]
    if not recs:
        return False
    layers = recs[0]["layer_weights"]["layers"]
    recs = [r for r in recs if r["layer_weights"]["layers"] == layers]
    means = np.array([r["layer_weights"]["mean"] for r in recs])
    stds = np.array([r["layer_weights"]["std"] for r in recs])
    mean = means.mean(0)
    std = np.sqrt(np.maximum((stds**2 + means**2).mean(0) - mean**2, 0.0))  # pooled over runs
    fig = _figure(6.0, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(np.arange(len(layers)), mean, yerr=std, capsize=3, color="tab:green")
    ax.axhline(1.0 / len(layers), color="grey", linestyle="--", linewidth=1, label="uniform")
    ax.set_xticks(np.arange(len(layers)))
    ax.set_xticklabels([str(v) for v in layers])
    ax.set_xlabel("block")
    ax.set_ylabel("entropy weight")
    ax.set_title(f"MLMP layer weights\n{table.title}", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path, plots)
    return True


def label_colours(count: int) -> np.ndarray:
    """(count + 1, 3) float colours; the last one (ignore) is black."""
    from matplotlib import colormaps

    base = [colormaps[name](np.arange(20) / 20.0)[:, :3] for name in ("tab20", "tab20b", "tab20c")]
    colours = np.concatenate(base, 0)
    if count > len(colours):
        extra = np.random.default_rng(0).uniform(0.15, 1.0, (count - len(colours), 3))
        colours = np.concatenate([colours, extra], 0)
    return np.concatenate([colours[:count], np.zeros((1, 3))], 0)


def _colour(labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    idx = np.where(labels < len(colours) - 1, labels, len(colours) - 1)
    return colours[idx]


def plot_examples(table: Table, folder: Path, path: Path, plots: list[Path]) -> bool:
    """Image, ground truth and each method's prediction (blended over the image) on the same frames."""
    for (dataset, corruption), label in table.rows.items():  # noqa: B007 - label titles the figure
        found = {}
        for method in table.methods:
            cell = table.cells.get((dataset, corruption, method))
            rel = next((r.get("examples") for r in (cell.records if cell else []) if r.get("examples")), None)
            if rel and (folder / rel).is_file():
                found[method] = dict(np.load(folder / rel))
        if found:
            break
    else:
        return False
    first = next(iter(found.values()))
    count = len([k for k in first if k.startswith("image_")])
    n_classes = max(len(r.get("class_names") or []) for r in table.done()) or 256
    colours = label_colours(n_classes)
    cols = 2 + len(found)
    fig = _figure(2.2 * cols, 2.2 * count + 0.4)
    for row in range(count):
        image = first[f"image_{row}"].astype(np.float64) / 255.0
        panels = [("image", image), ("ground truth", _colour(first[f"labels_{row}"], colours))]
        for method, arrays in found.items():
            pred = _colour(arrays[f"prediction_{row}"], colours)
            panels.append((table.label_of(method), 0.5 * image + 0.5 * pred))
        for col, (name, picture) in enumerate(panels):
            ax = fig.add_subplot(count, cols, row * cols + col + 1)
            ax.imshow(np.clip(picture, 0, 1), interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(f"{DATASET_LABELS.get(table.family, table.family)} {label} — first frames of the split", fontsize=9)
    _save(fig, path, plots)
    return True


# ------------------------------------------------------------------ report
def make_report(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> ReportFiles:
    """Write ``report.md``, ``results.csv`` and ``plots/*.png`` for a store into ``out``."""
    records = load_records(source)
    store_path = ResultStore(source).path
    out = Path(out).expanduser()
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    tables = build_tables(records)
    done = [r for r in records if r.get("status") == DONE]

    lines = [
        "# mlmp-bench report",
        "",
        (
            f"Store: `{store_path}` — {len(records)} records ({len(done)} finished trials, "
            f"{sum(r.get('status') == NOT_RUN for r in records)} not run); "
            f"written {datetime.now().astimezone().isoformat(timespec='seconds')}."
        ),
        (
            "Cells: mIoU (%) mean ± std over trials (std with ddof=0); `(n=k)` marks cells with fewer trials than "
            "the table's seeds; `· paper x (Δ d)` is the published number and our difference, shown only where the "
            "protocol is exactly the paper's (backbone, weights, attention, batch, mode, every method setting, "
            "precision, severity 5, BGR, the reference's corruption draws, the whole split)."
        ),
        "",
    ]
    plots: list[Path] = []
    for table in tables:
        lines += table_markdown(table)
        figures = []
        slug = table.slug
        if table.done():
            plot_miou(table, plots_dir / f"{slug}_miou.png", plots)
            figures.append(f"{slug}_miou.png")
            if plot_losses(table, plots_dir / f"{slug}_loss.png", plots):
                figures.append(f"{slug}_loss.png")
            if plot_layer_weights(table, plots_dir / f"{slug}_layer_weights.png", plots):
                figures.append(f"{slug}_layer_weights.png")
            if plot_examples(table, store_path.parent, plots_dir / f"{slug}_examples.png", plots):
                figures.append(f"{slug}_examples.png")
        if figures:
            lines += ["", *(f"![{name}](plots/{name})" for name in figures)]
        lines.append("")
    text = "\n".join(lines) + "\n"
    markdown = out / "report.md"
    markdown.write_text(text, encoding="utf-8")
    csv_path = out / "results.csv"
    write_csv(records, csv_path)
    return ReportFiles(markdown, csv_path, plots, text)
