"""Markdown of one report table: cells (mean ± std over trials), the published number
beside ours only under the paper's exact protocol, footnotes, method notes and timings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.corruptions import CORRUPTIONS, ORIGINAL
from ..suite.records import TrialRecord
from .paper_numbers import C_AVERAGE, CLEAN, PAPER_NOTES, PaperSetting, paper_has, paper_miou, paper_setting
from .tables import Cell, Table, restored, row_label


def _with_paper(mean: float, std: float, n: int, expected: int, paper: float | None, has_paper: bool) -> str:
    text = f"{mean:.2f} ± {std:.2f}" if math.isfinite(std) else f"{mean:.2f} (means of cells, no common trials)"
    if 0 < n < expected:
        text += f" (n={n})"
    if has_paper:
        text += " · paper –" if paper is None else f" · paper {paper:.2f} (Δ {mean - paper:+.2f})"
    return text


def _setting(records: Sequence[TrialRecord]) -> PaperSetting | None:
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


def table_markdown(table: Table, uncertainty: Sequence[str] = ()) -> list[str]:
    """The paper-shaped table of one data set and setting, with its notes; ``uncertainty``: lines shown right
    after the table (its intervals, :mod:`.uncertainty`)."""
    lines = [f"### {table.title}", ""]
    done = table.done()
    if any(r.random_weights for r in done):
        lines += ["**Random weights: these numbers test the harness and say nothing about the methods.**", ""]
    lines.append(_settings_line(table, done))
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
    lines += _grid(table, notes)
    lines.append("")
    lines += notes.lines()
    lines += list(uncertainty)
    lines += _label_notes(table)
    lines += _method_notes(table)
    lines += _timing_table(table)
    return lines


def _settings_line(table: Table, done: list[TrialRecord]) -> str:
    """Steps and lr, precision, frames scored, protocol and corruption library of the table's trials."""
    steps = sorted({(r.steps, r.lr) for r in done if r.method != "noadapt"}, key=str)
    frames = sorted({r.frames for r in done if r.frames})
    limited = any(r.limit for r in done)
    settings_text = ", ".join(f"{s} steps, lr {lr}" for s, lr in steps) or "no adaptation"
    splits = sorted({r.split_size for r in done if r.split_size})
    libraries = sorted({r.corruption_library for r in done if r.corruption_library})
    protocol = done[0] if done else None
    return (
        f"Settings: {settings_text}; precision {table.precision}; frames scored per scenario: "
        f"{', '.join(map(str, frames)) or '–'}"
        + (f" of {', '.join(map(str, splits))}" if splits else "")
        + (" (a subset of the split)" if limited or table.subset else "")
        + (f"; resize {protocol.resize}, window {protocol.window}, stride {protocol.stride}"
           if protocol is not None and protocol.resize is not None else "")
        + (f"; corruptions: {', '.join(libraries)} with the reference's draws" if libraries else "")
    )  # fmt: skip


def _grid(table: Table, notes: _Footnotes) -> list[str]:
    """The table's header, one line per condition, and the -C average line where all 15 corruptions ran."""
    trials = table.seeds
    header = ["condition", *(table.label_of(m) for m in table.methods)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
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


def _out_of_range(records: Sequence[TrialRecord]) -> int:
    return max((int((r.metrics or {}).get("out_of_range_pixels") or 0) for r in records), default=0)


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
            notes.update(r.notes or {})
            params.add(r.trainable_parameters)
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
        note = next((r.notes.get("token_loss") for r in ran if r.notes), None)
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
        frames = sum(r.frames or 0 for r in recs)
        model = _frame_weighted(recs, lambda t: t["model_s_per_frame"])
        harness = _frame_weighted(recs, lambda t: t["harness_s_per_frame"]["total"])
        segmenter = _frame_weighted(recs, lambda t: t["segmenter_s_per_frame"]["total"])
        restored_count = sum(restored(r) for r in recs)
        batches = sum(r.batches or 0 for r in recs)
        share = model / (segmenter + harness) if segmenter + harness > 0 else float("nan")
        rows.append(
            f"| {table.label_of(method)} | {frames} | {model * 1000:.1f} | {segmenter * 1000:.1f} | "
            f"{harness * 1000:.2f} | {share:.0%} | {restored_count} / {batches} |"
        )
    if not rows:
        return []
    return [
        "",
        "| method | frames | model ms/frame | segmenter ms/frame | harness ms/frame | model share | restored adaptations |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def _frame_weighted(records: Sequence[TrialRecord], get: Any) -> float:
    frames = sum(r.frames or 0 for r in records)
    return sum(get(r.timing) * (r.frames or 0) for r in records) / max(frames, 1)
