"""``mlmp-bench``: write bench bags, run them offline, run suites, make reports.

    mlmp-bench make-bags voc20 /data/VOCdevkit/VOC2012 --corruptions all --out bags/
    mlmp-bench run bags/voc20/original --method mlmp --set model=ViT-B-16-quickgelu --out results/
    mlmp-bench suite config/suites/paper87.yaml --list
    mlmp-bench suite config/suites/paper87.yaml          # resumes a killed run
    mlmp-bench report results/ --out results/report

User errors (a wrong data root, a bad bag, a bad config) print one line and exit 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..catalog import METHOD_NAMES

PROG = "mlmp-bench"

# Subcommands in modules of their own.  Each defines
#     register(subparsers: argparse._SubParsersAction) -> None
# which adds its parser and sets ``handler=<function(args) -> int>`` with set_defaults.
# replay-live talks to the node over DDS (rclpy, imported when it runs); this file stays
# free of rclpy.  A module that cannot be imported is left out.
SUBCOMMAND_MODULES: list[str] = ["mlmp_ros.bench.replay_live", "mlmp_ros.bench.stream"]


class UsageError(ValueError):
    """A command-line value is invalid."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's to fix: one line, no traceback."""
    from ..core.backbone import ModelNameError, WeightsError
    from ..core.config import ConfigError
    from .bags import BagError
    from .datasets import DatasetError
    from .report import ReportError
    from .runner import RunError
    from .suite import StoreError, SuiteError

    return (
        UsageError, ConfigError, DatasetError, BagError, SuiteError, StoreError, ReportError, RunError,
        WeightsError, ModelNameError, ValueError, OSError,
    )  # fmt: skip


# ------------------------------------------------------------------ helpers
def parse_sets(items: Sequence[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; values are read as YAML (5 -> int, [1,2] -> list, true -> bool)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set takes key=value (e.g. adaptation.steps=5), got '{item}'")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def parse_seeds(seeds: str | None, trials: int | None) -> tuple[int, ...]:
    if seeds:
        try:
            values = tuple(int(s) for s in seeds.split(",") if s.strip())
        except ValueError:
            raise UsageError(f"--seeds takes integers separated by commas, got '{seeds}'") from None
        if trials is not None and trials != len(values):
            raise UsageError(f"--trials {trials} does not match the {len(values)} seeds given")
        return values
    return tuple(range(trials if trials is not None else 3))


def parse_corruptions(text: str) -> list[str]:
    from .corruptions import SCENARIOS

    if text.strip() == "all":
        return list(SCENARIOS)
    names = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in names if c not in SCENARIOS]
    if bad or not names:
        given = ", ".join(bad) or repr(text)
        raise UsageError(f"unknown corruption {given}; use 'all' or names from: {', '.join(SCENARIOS)}")
    return names


# Numeric arguments: one check for every command (run, suite, stream, replay-live) and for the
# Python functions behind them.  On the command line the checks are argparse types, so a bad value
# ends the command with status 2 and the argument's name before anything starts (no bag read, no
# node launched).  Rates, speeds and time limits are finite and > 0; counts of frames, images,
# trials and batches are integers >= 1.
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


NUMBER_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "positive_number": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    "non_negative_number": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "positive_int": (lambda v: _is_integer(v) and v >= 1, "an integer >= 1"),
    "non_negative_int": (lambda v: _is_integer(v) and v >= 0, "an integer >= 0"),
}


def check_number(name: str, value: Any, kind: str) -> None:
    """Raise :class:`UsageError` unless ``value`` is of ``kind`` (a key of :data:`NUMBER_KINDS`)."""
    ok, what = NUMBER_KINDS[kind]
    if not ok(value):
        raise UsageError(f"{name} must be {what}, not {value!r}")


def _argument_type(kind: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    ok, what = NUMBER_KINDS[kind]

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'")
        return value

    convert.__name__ = kind  # argparse names the type in some messages
    return convert


positive_number = _argument_type("positive_number", float)  # rates in Hz, speeds, seconds
non_negative_number = _argument_type("non_negative_number", float)  # e.g. GPUs per trial (0: none)
positive_int = _argument_type("positive_int", int)  # frame and image limits, trials, batch sizes
non_negative_int = _argument_type("non_negative_int", int)  # retries, examples kept


def _root_pairs(items: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--root takes name=folder (e.g. voc20=/data/VOC2012), got '{item}'")
        out[name] = path
    return out


# --------------------------------------------------------------- make-bags
def add_make_bags(sub: Any) -> None:
    p = sub.add_parser(
        "make-bags",
        help="write bench bags (images + ground truth) from a data set",
        description="Write one bench bag per corruption as <out>/<dataset>/<corruption> (an existing matching "
        "bag is kept). Corruptions are applied at the original size, seeded by the image index.",
    )
    p.add_argument("dataset", help="voc20, voc21, context59, context60, cityscapes, coco_object, coco_stuff, "
                   "acdc_fog|night|rain|snow, gta5, or world / world_stream_<shift> (generated, no root)")  # fmt: skip
    p.add_argument("root", nargs="?", help="the data set's folder (e.g. /data/VOCdevkit/VOC2012); not for world")
    p.add_argument("--corruptions", "-c", default="original", help="'all', or names separated by commas "
                   "(default: original)")  # fmt: skip
    p.add_argument("--condition", help="ACDC condition (fog, night, rain, snow) when dataset is 'acdc'")
    p.add_argument("--out", "-o", required=True, help="bags folder")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--severity", type=int, choices=range(1, 6), default=5, metavar="{1..5}")
    p.add_argument("--channel-order", choices=("bgr", "rgb"), default="bgr",
                   help="corrupt the BGR array as the reference does (default) or the RGB one")  # fmt: skip
    p.add_argument("--no-presize", action="store_true", help="keep the original image sizes in the bag")
    p.add_argument("--limit", type=positive_int, help="only the first N images of the split")
    p.add_argument("--no-progress", action="store_true")
    w = p.add_argument_group("world (generated scenes and streams)")
    w.add_argument("--streams", default="", help="also write world streams: 'all' or shifts separated by commas "
                   "(none, fog, night, rain, blur, dirt) as <out>/world_stream_<shift>/original")  # fmt: skip
    w.add_argument("--count", type=positive_int, help="scenes (default 40) or frames per stream (default 60)")
    w.add_argument("--size", default="640x480", help="frame size WxH (default 640x480)")
    w.add_argument("--seed", type=int, help="first scene seed / stream seed (default: the held-out seeds)")
    p.set_defaults(handler=cmd_make_bags)


def _world_jobs(args: argparse.Namespace, corruptions: list[str]) -> list[tuple[Any, str]]:
    """(data set, corruption) pairs for ``make-bags world``: scenes per corruption, then streams."""
    from ..world.dataset import WorldDataset
    from ..world.shifts import SHIFTS

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size takes WxH (e.g. 640x480), got '{args.size}'") from None
    if width < 32 or height < 32:
        raise UsageError(f"--size must be at least 32x32, got {args.size}")
    common = {"count": args.count, "height": height, "width": width, "seed": args.seed}
    jobs: list[tuple[Any, str]] = []
    if args.dataset.strip().lower() == "world":
        jobs += [(WorldDataset("world", **common), c) for c in corruptions]
    else:
        jobs += [(WorldDataset(args.dataset, **common), c) for c in corruptions]
    text = args.streams.strip()
    shifts = list(SHIFTS) if text == "all" else [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in shifts if s not in SHIFTS]
    if bad:
        raise UsageError(f"unknown stream shift {', '.join(bad)}; use 'all' or names from: {', '.join(SHIFTS)}")
    jobs += [(WorldDataset(f"world_stream_{s}", **common), "original") for s in shifts]
    return jobs


def cmd_make_bags(args: argparse.Namespace) -> int:
    from ..world.dataset import is_world
    from .datasets import open_dataset

    corruptions = parse_corruptions(args.corruptions)
    if is_world(args.dataset):
        return _write_bags(args, _world_jobs(args, corruptions))
    if args.streams:
        raise UsageError("--streams is for the world data set only")
    if not args.root:
        raise UsageError(f"make-bags {args.dataset} needs the data set's folder (root)")
    dataset = open_dataset(args.dataset, args.root, args.condition)
    return _write_bags(args, [(dataset, c) for c in corruptions])


def _write_bags(args: argparse.Namespace, jobs: list[tuple[Any, str]]) -> int:
    from .make_bags import make_bag
    from .suite import check_bag_matches

    for dataset, corruption in jobs:
        out = Path(args.out) / dataset.name / corruption
        if out.exists():
            check_bag_matches(out, dataset.name, corruption, args.severity, args.channel_order,
                              presize=not args.no_presize, storage=args.storage, limit=args.limit)  # fmt: skip
            print(f"kept   {out} (exists)")
            continue
        make_bag(
            dataset,
            corruption,
            out,
            storage=args.storage,
            severity=args.severity,
            channel_order=args.channel_order,
            presize=not args.no_presize,
            limit=args.limit,
            progress=not args.no_progress,
        )
        print(f"wrote  {out}")
    return 0


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
    p.add_argument("--method", "-m", help=f"method(s), comma separated: {', '.join(METHOD_NAMES)} "
                   "(default: the config's adaptation.method)")  # fmt: skip
    p.add_argument("--config", help="core config YAML (plain mapping or a ROS parameter file like config/segment.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="core setting, repeatable "
                   "(e.g. --set model=ViT-L-14-quickgelu --set adaptation.steps=5; every setting: "
                   "mlmp-bench settings)")  # fmt: skip
    p.add_argument("--mode", choices=("episodic", "continual", "off"), help="adaptation.mode")
    p.add_argument("--batch-size", "-b", type=positive_int, default=2, help="frames per adaptation batch (2: the "
                   "paper's tables, 1: single sample)")  # fmt: skip
    p.add_argument("--trials", type=positive_int, help="number of trials, seeds 0..N-1 (default 3)")
    p.add_argument("--seeds", help="trial seeds, comma separated (default 0,1,2)")
    p.add_argument("--no-shuffle", action="store_true", help="keep bag order in every trial (continual mode, "
                   "single-sample replay)")  # fmt: skip
    p.add_argument("--limit", type=positive_int, help="only the first N frames of each bag")
    p.add_argument("--examples", type=non_negative_int, default=3, help="keep predictions of the first K frames (default 3)")
    p.add_argument("--out", "-o", default="bench_results", help="results folder (default: bench_results)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip trials already in the store (default: on)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_run)


def config_from_args(args: argparse.Namespace, *, one_method: bool = False) -> Any:
    """The core config of ``--config`` (a YAML file), then ``--set``, ``--mode``, ``--schedule``
    (commands that have it) and, for commands that run one method (``one_method``), ``--method``."""
    from ..core.config import Config

    config = Config.from_yaml(args.config) if args.config else Config()
    changes = parse_sets(args.set)
    if args.mode:
        changes["adaptation.mode"] = args.mode
    if getattr(args, "schedule", None):
        changes["adaptation.schedule"] = args.schedule
    if one_method and args.method:
        changes["adaptation.method"] = args.method
    return config.replace(**changes) if changes else config


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import RunOptions
    from .suite import run_bags

    config = config_from_args(args)
    methods = [m.strip() for m in (args.method or config.adaptation.method).split(",") if m.strip()]
    options = RunOptions(
        batch_size=args.batch_size,
        seeds=parse_seeds(args.seeds, args.trials),
        shuffle=not args.no_shuffle,
        limit=args.limit,
        examples=args.examples,
    )
    counts, store = run_bags(args.bags, config, methods, options, args.out, resume=args.resume,
                             progress=not args.no_progress)  # fmt: skip
    failed = _print_summary([r for r in store.read() if r["key"] in counts.keys])
    print(f"{counts.run} trials run, {counts.reused} already in {store.path}, {counts.not_run} not run")
    print(f"tables and plots: {PROG} report {store.folder}")
    return 1 if failed else 0


def _print_summary(records: list[dict[str, Any]]) -> bool:
    """One line per bag and method of this invocation; True when some trial did not run."""
    from .report import build_tables

    failed = False
    for table in build_tables(records):
        for (dataset, corruption, column), cell in table.cells.items():
            name = f"{dataset}/{corruption} {column} ({table.backbone}, batch {table.batch_size}, {table.mode})"
            stats = cell.mean_std()
            if stats:
                print(f"{name}: mIoU {stats[0]:.2f} ± {stats[1]:.2f} over {len(cell.records)} trials")
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
    p.add_argument("suite", help="suite YAML, or the name of an installed one (paper87, mini)")
    p.add_argument("--list", action="store_true", help="print the scenarios and their count; loads no model")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip trials already in the store (default: on)")  # fmt: skip
    p.add_argument("--out", help="results folder (overrides the suite's 'out')")
    p.add_argument("--bags", help="bags folder (overrides the suite's 'bags')")
    p.add_argument("--root", action="append", metavar="NAME=FOLDER", help="data set root, repeatable "
                   "(overrides the suite's 'roots')")  # fmt: skip
    p.add_argument("--limit", type=positive_int, help="only the first N images of each split (a quick check)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="core setting for every method, repeatable")
    p.add_argument("--no-progress", action="store_true")
    add_cluster_arguments(p)
    p.set_defaults(handler=cmd_suite)


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """--executor ray and its settings (mlmp_ros.bench.cluster)."""
    g = p.add_argument_group("cluster", "run every trial as a Ray task (pip install 'mlmp_ros[cluster]')")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: trials one after another here (default); ray: on a Ray cluster")  # fmt: skip
    g.add_argument("--address", help="Ray cluster: auto (the one started on this machine) or HOST:PORT "
                   "(default: RAY_ADDRESS, else a Ray instance started here)")  # fmt: skip
    g.add_argument("--gpus-per-trial", type=non_negative_number, metavar="N", help="GPUs a trial needs, may be fractional "
                   "(default: the suite's cluster.gpus_per_trial, else 0: CPU)")  # fmt: skip
    g.add_argument("--cpus-per-trial", type=positive_number, metavar="N", help="CPUs a trial needs (default 1)")
    g.add_argument("--max-retries", type=non_negative_int, metavar="N", help="re-runs of a trial whose worker died (default 2)")
    g.add_argument("--connect-timeout", type=positive_number, metavar="SECONDS",
                   help="give up when no Ray cluster answers at the address within this many seconds (default 10)")


def suite_path(text: str) -> Path:
    """A suite file, or one installed with the package when that path does not exist.

    ``paper87``, ``paper87.yaml`` and ``config/suites/paper87.yaml`` all find the
    installed ``config/suites/paper87.yaml`` from any working directory.
    """
    path = Path(text).expanduser()
    if path.exists() or path.is_absolute():
        return path
    parent = path.parent.as_posix()
    if parent == "." or parent == "suites" or parent.endswith("/suites"):
        from ..resources import config_path

        name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
        try:
            installed = config_path("suites", name)
        except FileNotFoundError:
            return path
        if installed.is_file():
            return installed
    return path


def cmd_suite(args: argparse.Namespace) -> int:
    from .suite import apply_overrides, describe_suite, load_suite, run_suite

    suite = load_suite(suite_path(args.suite))
    suite = apply_overrides(
        suite, out=args.out, bags=args.bags, roots=_root_pairs(args.root), limit=args.limit, core=parse_sets(args.set)
    )
    if args.list:
        print(describe_suite(suite))
        return 0
    summary = None
    if args.executor == "ray":
        from .cluster import ray_settings, run_suite_on_ray

        settings = ray_settings(suite, address=args.address, gpus_per_trial=args.gpus_per_trial,
                                cpus_per_trial=args.cpus_per_trial, max_retries=args.max_retries,
                                connect_timeout=args.connect_timeout)  # fmt: skip
        counts, summary = run_suite_on_ray(suite, settings, resume=args.resume, progress=not args.no_progress)
    else:
        counts = run_suite(suite, resume=args.resume, progress=not args.no_progress)
    failed = _print_not_run(suite.out / "results.jsonl", counts.keys)
    print(f"{counts.run} trials run, {counts.reused} already in the store, {counts.not_run} not run")
    if summary is not None:
        print(summary.text())
    print(f"results: {suite.out / 'results.jsonl'}; tables and plots: {PROG} report {suite.out}")
    return 1 if failed else 0


def _print_not_run(store_path: Path, keys: set[str]) -> bool:
    """Print why each scenario and method of this session did not run; True when one failed.

    Trials the suite file skips on purpose are listed but are not failures.
    """
    from .suite import DONE, SKIPPED_PREFIX, ResultStore

    path = Path(store_path)
    if not path.is_file():
        return False
    latest: dict[str, dict[str, Any]] = {}
    for record in ResultStore(path).read():
        if record.get("key") in keys:
            latest[record["key"]] = record
    reasons: dict[tuple[str, str, str], list[str]] = {}
    for record in latest.values():
        if record.get("status") != DONE:
            name = (str(record.get("dataset")), str(record.get("corruption")), str(record.get("method")))
            reasons.setdefault(name, []).append(str(record.get("reason") or "unknown"))
    failed = False
    for (dataset, corruption, method), texts in sorted(reasons.items()):
        for reason in dict.fromkeys(texts):
            skipped = reason.startswith(SKIPPED_PREFIX)
            failed = failed or not skipped
            what = "skipped" if skipped else "not run"
            trials = texts.count(reason)
            print(f"{what}: {dataset}/{corruption} {method} ({trials} trial{'s' if trials != 1 else ''}): {reason}")
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
    p.add_argument("--print", action="store_true", help="also print the Markdown")
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import make_report
    from .suite import ResultStore

    out = args.out or ResultStore(args.store).folder / "report"
    files = make_report(args.store, out)
    if args.print:
        print(files.text)
    print(f"report: {files.markdown}")
    print(f"csv:    {files.csv}")
    print(f"plots:  {len(files.plots)} in {Path(out) / 'plots'}")
    return 0


def add_settings(sub: Any) -> None:
    p = sub.add_parser(
        "settings",
        help="list every core setting (--set KEY=VALUE, suite 'core:'), its default and what it allows",
        description="Every core setting with its default, choices or range, and whether it changes at run time; "
        "from the declarations in mlmp_ros/core/config.py.",
    )
    p.set_defaults(handler=cmd_settings)


def cmd_settings(args: argparse.Namespace) -> int:
    from ..core.config import Config
    from ..core.schema import settings_table

    print(settings_table(Config))
    return 0


BUILTIN_SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (add_make_bags, add_run, add_suite, add_report, add_settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Offline benchmark of test-time adaptation for open-vocabulary segmentation."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for add in BUILTIN_SUBCOMMANDS:
        add(sub)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue  # e.g. ROS is not installed here
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or bool(os.environ.get("MLMP_BENCH_DEBUG"))
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as err:
        if debug or not isinstance(err, _user_errors()):
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
