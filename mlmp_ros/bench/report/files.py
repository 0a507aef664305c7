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
(:func:`mlmp_ros.bench.report.paper_numbers.paper_setting`); scenarios that did not run show
their reason.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..suite.records import NOT_RUN, TrialRecord
from ..suite.store import ResultStore
from .markdown import table_markdown
from .plots import plot_examples, plot_layer_weights, plot_losses, plot_miou
from .tables import ReportError, Table, build_tables, load_records, restored
from .uncertainty import CellInterval, interval_markdown, table_intervals

CSV_FIELDS = (
    "key", "status", "reason", "dataset", "base_dataset", "condition", "corruption", "method", "backbone",
    "weights", "attention", "precision", "mode", "steps", "lr", "batch_size", "shuffle", "limit", "trial", "seed",
    "severity", "channel_order", "corruption_draws", "corruption_library", "presized", "split_size", "resize",
    "window", "stride", "config_hash", "frames", "out_of_range_pixels", "mIoU", "mAcc", "mDice", "aAcc", "model_s_per_frame", "segmenter_s_per_frame",
    "harness_s_per_frame", "model_fraction", "restored_adaptations", "loss_first_step", "loss_last_step",
    "IoU_per_class", "class_names", "random_weights", "device", "started", "finished", "wall_s", "examples",
    *CellInterval.CSV_FIELDS,
)  # fmt: skip


@dataclass
class ReportFiles:
    markdown: Path
    csv: Path
    plots: list[Path]
    text: str


# -------------------------------------------------------------------- csv
_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(TrialRecord))


def write_csv(records: Sequence[TrialRecord], path: Path, cells: Mapping[int, CellInterval] | None = None) -> None:
    """Every record's metrics, one row per record (per-class IoU as JSON); ``cells``: the interval of the
    cell each record belongs to, by ``id(record)`` (the same figures on every trial of a cell)."""
    cells = cells or {}
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in records:
            metrics = r.metrics or {}
            timing = r.timing or {}
            losses = [v for v in (r.loss_per_step or []) if v is not None]
            values = {k: getattr(r, k) for k in CSV_FIELDS if k in _RECORD_FIELDS}
            row = {k: (json.dumps(v) if isinstance(v, list) else v) for k, v in values.items()}
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
                restored_adaptations=restored(r) if r.done else None,
                loss_first_step=losses[0] if losses else None,
                loss_last_step=losses[-1] if losses else None,
                IoU_per_class=json.dumps(metrics.get("IoU")) if metrics else None,
                class_names=json.dumps(r.class_names) if r.class_names else None,
            )
            if id(r) in cells:
                row.update(cells[id(r)].csv_fields())
            writer.writerow(row)


# ------------------------------------------------------------------ report
def make_report(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> ReportFiles:
    """Write ``report.md``, ``results.csv`` and ``plots/*.png`` for a store into ``out``."""
    records = load_records(source)
    store_path = ResultStore(source).path
    out = Path(out).expanduser()
    plots_dir = out / "plots"
    try:
        plots_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"cannot create the report folder {plots_dir}: {err}") from err
    tables = build_tables(records)
    done = [r for r in records if r.done]
    intervals = {id(table): table_intervals(table) for table in tables}
    by_record = {id(r): interval for table in tables for key, interval in intervals[id(table)].items()
                 for r in table.cells[key].records}  # fmt: skip

    lines = [
        "# mlmp-bench report",
        "",
        (
            f"Store: `{store_path}` — {len(records)} records ({len(done)} finished trials, "
            f"{sum(r.status == NOT_RUN for r in records)} not run); "
            f"written {datetime.now().astimezone().isoformat(timespec='seconds')}."
        ),
        (
            "Cells: mIoU (%) mean ± std over trials (std with ddof=0); `(n=k)` marks cells with fewer trials than "
            "the table's seeds; `· paper x (Δ d)` is the published number and our difference, shown only where the "
            "protocol is exactly the paper's (backbone, weights, attention, batch, mode, every method setting, "
            "precision, severity 5, BGR, the reference's corruption draws, the whole split). Under each table: "
            "every cell's pooled mIoU with its 95% bootstrap confidence interval over scenes (frames, for streams), "
            "and each method's paired difference from NoAdapt; a difference is called a gain or a loss only where "
            "its interval excludes zero."
        ),
        "",
    ]
    plots: list[Path] = []
    for table in tables:
        lines += table_markdown(table, interval_markdown(table, intervals[id(table)]))
        figures = _figures(table, store_path.parent, plots_dir, plots)
        if figures:
            lines += ["", *(f"![{name}](plots/{name})" for name in figures)]
        lines.append("")
    text = "\n".join(lines) + "\n"
    markdown = out / "report.md"
    markdown.write_text(text, encoding="utf-8")
    csv_path = out / "results.csv"
    write_csv(records, csv_path, by_record)
    return ReportFiles(markdown, csv_path, plots, text)


def _figures(table: Table, folder: Path, plots_dir: Path, plots: list[Path]) -> list[str]:
    """The plots of one table (none when nothing finished), written into ``plots_dir``; their file names."""
    if not table.done():
        return []
    slug = table.slug
    plot_miou(table, plots_dir / f"{slug}_miou.png", plots)
    figures = [f"{slug}_miou.png"]
    if plot_losses(table, plots_dir / f"{slug}_loss.png", plots):
        figures.append(f"{slug}_loss.png")
    if plot_layer_weights(table, plots_dir / f"{slug}_layer_weights.png", plots):
        figures.append(f"{slug}_layer_weights.png")
    if plot_examples(table, folder, plots_dir / f"{slug}_examples.png", plots):
        figures.append(f"{slug}_examples.png")
    return figures
