"""``make-bags`` (data sets to bench bags) and ``settings`` (every core setting)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ...core.config import Config
from ...core.schema import settings as schema_settings
from ...core.schema import settings_table
from ..argument_checks import UsageError, positive_int
from ..data import registry
from .arguments import add_bag_options, parse_corruptions

# Core settings whose empty default means "the method's own choice": the node's parameter file and
# their help call it 'auto' (mlmp_ros/ros/settings.py STRING_SETTINGS; a test keeps the two equal).
AUTO_WHEN_EMPTY = ("layers", "templates")


def add_make_bags(sub: Any) -> None:
    p = sub.add_parser(
        "make-bags",
        help="write bench bags (images + ground truth) from a data set",
        description="Write one bench bag per corruption as <out>/<dataset>/<corruption>. An existing bag is kept "
        "when every generation parameter recorded in it (data set, corruption, severity, channel order, storage, "
        "presize, limit and, for generated data, count, size, seed and stream shift) matches the command; one that "
        "differs is refused with the differing fields named (--force rewrites it). Corruptions are applied at the "
        "original size, seeded by the image index.",
    )
    entries = registry.REGISTRY.values()
    p.add_argument("dataset", choices=registry.names(), metavar="dataset",
                   help=f"one of: {', '.join(e.help for e in entries)}")  # fmt: skip
    p.add_argument("root", nargs="?", help="the data set's folder (e.g. /data/VOCdevkit/VOC2012); not for generated "
                   "ones")  # fmt: skip
    p.add_argument("--corruptions", "-c", default="original", help="'all', or names separated by commas "
                   "(default: original)")  # fmt: skip
    conditions = {e.key: e.conditions for e in entries if e.conditions}
    p.add_argument("--condition", help="the condition of a data set that has them: "
                   + "; ".join(f"{k}: {', '.join(c)}" for k, c in conditions.items()))  # fmt: skip
    p.add_argument("--out", "-o", required=True, help="bags folder")
    add_bag_options(p)
    p.add_argument("--no-presize", action="store_true", help="keep the original image sizes in the bag (default: "
                   "resized to the protocol's size)")  # fmt: skip
    p.add_argument("--limit", type=positive_int, help="only the first N images of the split (default: all)")
    p.add_argument("--force", action="store_true", help="rewrite a bag that exists already, whatever it holds "
                   "(default: keep it if it matches, refuse it if it does not)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    for entry in entries:
        if entry.bag_options is not None:
            entry.bag_options.add_arguments(p.add_argument_group(entry.bag_options.title))
    p.set_defaults(handler=cmd_make_bags)


def cmd_make_bags(args: argparse.Namespace) -> int:
    corruptions = parse_corruptions(args.corruptions)
    entry, key, _ = registry.find(args.dataset, args.condition)
    others = [flag for e in registry.REGISTRY.values() if e is not entry and e.bag_options is not None
              for flag in e.bag_options.given(args)]  # fmt: skip
    if others:
        raise UsageError(f"{', '.join(others)}: not an option of data set {key}")
    if entry.bag_options is not None:
        return _write_bags(args, entry.bag_options.jobs(args, args.dataset, corruptions))
    if entry.needs_root and not args.root:
        raise UsageError(f"make-bags {args.dataset} needs the data set's folder (root)")
    dataset = registry.open_dataset(args.dataset, args.root, args.condition)
    return _write_bags(args, [(dataset, c) for c in corruptions])


def _write_bags(args: argparse.Namespace, jobs: list[tuple[Any, str]]) -> int:
    from ..data.make_bags import generation_of, keep_or_make_bag  # torch (the protocol resize)

    for dataset, corruption in jobs:
        out = Path(args.out) / dataset.name / corruption
        written = keep_or_make_bag(out, dataset.name, lambda d=dataset: d, corruption, storage=args.storage,
                                   severity=args.severity, channel_order=args.channel_order,
                                   presize=not args.no_presize, limit=args.limit,
                                   progress=not args.no_progress, generation=generation_of(dataset),
                                   force=args.force, advice="rewrite it with --force, remove it, or choose "
                                   "another --out")  # fmt: skip
        print(f"wrote  {out}" if written else f"kept   {out} (exists)")
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
    shown = {s.name: "auto" for s in schema_settings(Config) if s.name in AUTO_WHEN_EMPTY and not s.default}
    print(settings_table(Config, shown))
    return 0
