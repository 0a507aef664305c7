"""``run`` (bags offline), ``suite`` (a suite file, locally or on Ray) and ``report`` (tables and plots)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..argument_checks import counted, positive_int
from ..offline.options import RunOptions
from ..report.files import make_report
from ..report.tables import build_tables
from ..suite.file import apply_overrides, describe_suite, load_suite
from ..suite.records import SKIPPED_PREFIX, TrialRecord
from ..suite.store import ResultStore
from .arguments import (
    add_cluster_arguments,
    add_core_arguments,
    add_run_options,
    config_from_args,
    parse_seeds,
    parse_sets,
    root_pairs,
    suite_path,
)

PROG = "mlmp-bench"


# --------------------------------------------------------------------- run
def add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="replay bench bags offline through the core and score them",
        description="Run bags through the segmenter (no middleware): frames shuffled per trial seed, batches of "
        "--batch-size frames, scored at the protocol resolution. Results are appended to <out>/results.jsonl; "
        "trials already there with the same config are not run again.",
    )
    p.add_argument("bags", nargs="+", help="bag folders written by make-bags")
    add_core_arguments(p, methods="several")
    add_run_options(p)
    p.add_argument("--out", "-o", default="bench_results", help="results folder (default: bench_results)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip trials already in the store (default: on)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    p.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from ..suite.run import run_bags  # torch

    config = config_from_args(args)
    methods = [m.strip() for m in (args.method or config.adaptation.method).split(",") if m.strip()]
    options = RunOptions(batch_size=args.batch_size, seeds=parse_seeds(args.seeds, args.trials),
                         shuffle=not args.no_shuffle, limit=args.limit, examples=args.examples)  # fmt: skip
    counts, store = run_bags(args.bags, config, methods, options, args.out, resume=args.resume,
                             progress=not args.no_progress)  # fmt: skip
    failed = _print_summary([r for r in store.read() if r.key in counts.keys])
    print(f"{counted(counts.run, 'trial')} run, {counts.reused} already in {store.path}, {counts.not_run} not run")
    print(f"tables and plots: {PROG} report {store.folder}")
    return 1 if failed else 0


def _print_summary(records: list[TrialRecord]) -> bool:
    """One line per bag and method of this invocation; True when some trial did not run."""
    failed = False
    for table in build_tables(records):
        for (dataset, corruption, column), cell in table.cells.items():
            name = f"{dataset}/{corruption} {column} ({table.backbone}, batch {table.batch_size}, {table.mode})"
            stats = cell.mean_std()
            if stats:
                print(f"{name}: mIoU {stats[0]:.2f} ± {stats[1]:.2f} over {counted(len(cell.records), 'trial')}")
            if cell.reason:
                failed = True
                print(f"{name}: not run: {cell.reason}")
    return failed


# ------------------------------------------------------------------- suite
def add_suite(sub: Any) -> None:
    p = sub.add_parser(
        "suite",
        help="run a benchmark suite (data sets x corruptions x methods x trials) from YAML",
        description="Run every scenario of a suite file, writing bags when missing and appending each trial to "
        "<out>/results.jsonl as it finishes; a killed run resumes where it stopped.",
    )
    p.add_argument("suite", help="suite YAML, or the name of an installed one (paper87, mini, world)")
    p.add_argument("--list", action="store_true", help="print the scenarios and their count; loads no model (default: run them)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip trials already in the store (default: on)")  # fmt: skip
    p.add_argument("--out", help="results folder (overrides the suite's 'out')")
    p.add_argument("--bags", help="bags folder (overrides the suite's 'bags')")
    p.add_argument("--root", action="append", metavar="NAME=FOLDER", help="data set root, repeatable "
                   "(overrides the suite's 'roots')")  # fmt: skip
    p.add_argument("--limit", type=positive_int, help="only the first N images of each split (a quick check)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="core setting for every method, repeatable")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    add_cluster_arguments(p)
    p.set_defaults(handler=cmd_suite)


def cmd_suite(args: argparse.Namespace) -> int:
    suite = load_suite(suite_path(args.suite))
    suite = apply_overrides(suite, out=args.out, bags=args.bags, roots=root_pairs(args.root), limit=args.limit,
                            core=parse_sets(args.set))  # fmt: skip
    if args.list:
        print(describe_suite(suite))
        return 0
    summary = None
    if args.executor == "ray":
        from ..suite.ray_executor import ray_settings, run_suite_on_ray  # torch, Ray

        settings = ray_settings(suite, address=args.address, gpus_per_trial=args.gpus_per_trial,
                                cpus_per_trial=args.cpus_per_trial, max_retries=args.max_retries,
                                connect_timeout=args.connect_timeout)  # fmt: skip
        counts, summary = run_suite_on_ray(suite, settings, resume=args.resume, progress=not args.no_progress)
    else:
        from ..suite.run import run_suite  # torch

        counts = run_suite(suite, resume=args.resume, progress=not args.no_progress)
    failed = _print_not_run(suite.out / "results.jsonl", counts.keys)
    print(f"{counted(counts.run, 'trial')} run, {counts.reused} already in the store, {counts.not_run} not run")
    if summary is not None:
        print(summary.text())
    print(f"results: {suite.out / 'results.jsonl'}; tables and plots: {PROG} report {suite.out}")
    return 1 if failed else 0


def _print_not_run(store_path: Path, keys: set[str]) -> bool:
    """Print why each scenario and method of this session did not run; True when one failed.

    Trials the suite file skips on purpose are listed but are not failures.
    """
    path = Path(store_path)
    if not path.is_file():
        return False
    latest = {record.key: record for record in ResultStore(path).read() if record.key in keys}
    reasons: dict[tuple[str, str, str], list[str]] = {}
    for record in latest.values():
        if not record.done:
            name = (str(record.dataset), str(record.corruption), str(record.method))
            reasons.setdefault(name, []).append(str(record.reason or "unknown"))
    failed = False
    for (dataset, corruption, method), texts in sorted(reasons.items()):
        for reason in dict.fromkeys(texts):
            skipped = reason.startswith(SKIPPED_PREFIX)
            failed = failed or not skipped
            what = "skipped" if skipped else "not run"
            trials = texts.count(reason)
            print(f"{what}: {dataset}/{corruption} {method} ({counted(trials, 'trial')}): {reason}")
    return failed


# ------------------------------------------------------------------ report
def add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="Markdown tables, CSV and plots from a results store",
        description="Write report.md (the paper's table shape, with published numbers beside ours where the "
        "same setting ran), results.csv and plots/*.png.",
    )
    p.add_argument("store", help="results folder or its results.jsonl")
    p.add_argument("--out", "-o", help="report folder (default: <results folder>/report)")
    p.add_argument("--print", action="store_true", help="also print the Markdown (default: only write it)")
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    out = args.out or ResultStore(args.store).folder / "report"
    files = make_report(args.store, out)
    if args.print:
        print(files.text)
    print(f"report: {files.markdown}")
    print(f"csv:    {files.csv}")
    print(f"plots:  {len(files.plots)} in {Path(out) / 'plots'}")
    return 0
