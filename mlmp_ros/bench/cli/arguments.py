"""Argument builders shared by the bench's commands, made from the schema declarations.

Choices, defaults and help of ``--mode``, ``--schedule``, ``--batch-size``, ``--examples``,
``--limit``, ``--storage``, ``--severity`` and ``--channel-order`` come from where the settings
are declared (:class:`~mlmp_ros.core.config.Config`, :class:`~mlmp_ros.bench.offline.options.RunOptions`,
:class:`~mlmp_ros.bench.suite.file.SuiteFile`), never written here a second time.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from ...catalog import METHOD_NAMES
from ...core import schema
from ...core.config import Config
from ...resources import config_path
from ..argument_checks import UsageError, non_negative_int, non_negative_number, positive_int, positive_number
from ..data.corruptions import SCENARIOS
from ..offline.options import RunOptions
from ..suite.file import SuiteFile


def declared(cls: type, name: str) -> schema.Setting:
    """The declaration of setting ``name`` (dotted) of a settings dataclass."""
    return next(s for s in schema.settings(cls) if s.name == name)


def add_declared(parser: Any, flags: Sequence[str], cls: type, name: str, *, default: bool = True,
                 type: Callable[[str], Any] | None = None, help: str | None = None) -> None:  # fmt: skip
    """An option for setting ``name`` of ``cls``: its help, choices (or integer range) and, with
    ``default``, its default; without, the option is None unless given (the config decides)."""
    s = declared(cls, name)
    options: dict[str, Any] = {"help": help or s.meta.help}
    if s.meta.choices is not None:
        options["choices"] = s.meta.choices
    elif s.meta.range is not None and type is None and s.meta.range.high != float("inf"):
        low, high = int(s.meta.range.low), int(s.meta.range.high)  # a small integer range: choices
        options.update(type=int, choices=range(low, high + 1), metavar=f"{{{low}..{high}}}")
    if type is not None:
        options["type"] = type
    if default:
        options["default"] = s.default
        options["help"] += f" (default: {s.default})" if s.default is not None else ""
    parser.add_argument(*flags, **options)


# ------------------------------------------------------------------ core settings
def add_core_arguments(p: argparse.ArgumentParser, *, methods: str, schedule: bool = False) -> None:
    """--method, --config, --set, --mode (and --schedule) for commands that build a core config.

    ``methods``: "several" (comma separated, one run each) or "one" (adaptation.method)."""
    method_help = (f"method(s), comma separated: {', '.join(METHOD_NAMES)} (default: the config's adaptation.method)"
                   if methods == "several" else f"adaptation method: {', '.join(METHOD_NAMES)} (default: the config's)")
    p.add_argument("--method", "-m", help=method_help)
    p.add_argument("--config", help="core config YAML (plain mapping or a ROS parameter file like config/segment.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="core setting, repeatable (e.g. --set "
                   "model=ViT-L-14-quickgelu --set adaptation.steps=5; every setting: mlmp-bench settings)")  # fmt: skip
    add_declared(p, ["--mode"], Config, "adaptation.mode", default=False)
    if schedule:
        add_declared(p, ["--schedule"], Config, "adaptation.schedule", default=False)


# Core settings every bag command takes from the bag: a --set of one would be silently overridden.
FROM_BAG = ("classes", "resize", "window", "stride")


def config_from_args(args: argparse.Namespace, *, one_method: bool = False) -> Config:
    """The core config of ``--config`` (a YAML file), then ``--set``, ``--mode``, ``--schedule``
    (commands that have it) and, for commands that run one method (``one_method``), ``--method``.

    ``--set`` of a setting the bag decides (:data:`FROM_BAG`) is refused, and so is an unknown method."""
    changes = parse_sets(args.set)
    from_bag = [k for k in changes if k.replace("__", ".") in FROM_BAG]
    if from_bag:
        raise UsageError(f"--set {', '.join(from_bag)}: not a setting of this command: the classes and the window "
                         "protocol (resize, window, stride) come from each bag (write the bag with others instead)")
    methods = check_methods(args.method)
    if one_method and len(methods) > 1:
        raise UsageError(f"--method: this command runs one method, got {len(methods)} ({args.method})")
    config = Config.from_yaml(args.config) if args.config else Config()
    if args.mode:
        changes["adaptation.mode"] = args.mode
    if getattr(args, "schedule", None):
        changes["adaptation.schedule"] = args.schedule
    if one_method and args.method:
        changes["adaptation.method"] = args.method
    return config.replace(**changes) if changes else config


def check_methods(text: str | None) -> list[str]:
    """The methods of ``--method`` (comma separated); an unknown one is refused naming the known ones."""
    methods = [m.strip() for m in (text or "").split(",") if m.strip()]
    bad = [m for m in methods if m not in METHOD_NAMES]
    if bad or (text is not None and not methods):
        raise UsageError(f"--method: unknown method {', '.join(bad) or repr(text)}; choose from {', '.join(METHOD_NAMES)}")
    return methods


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


# ------------------------------------------------------------------ runs
def add_run_options(p: argparse.ArgumentParser) -> None:
    """--batch-size, --trials/--seeds, --no-shuffle, --limit and --examples: :class:`RunOptions`."""
    add_declared(p, ["--batch-size", "-b"], RunOptions, "batch_size", type=positive_int)
    default_seeds = ",".join(map(str, declared(RunOptions, "seeds").default))
    trials = len(declared(RunOptions, "seeds").default)
    p.add_argument("--trials", type=positive_int, help=f"number of trials, seeds 0..N-1 (default {trials})")
    p.add_argument("--seeds", help=f"trial seeds, comma separated (default {default_seeds})")
    p.add_argument("--no-shuffle", action="store_true", help="keep bag order in every trial (continual mode, "
                   "single-sample replay; default: shuffled per trial seed)")  # fmt: skip
    add_declared(p, ["--limit"], RunOptions, "limit", default=False, type=positive_int)
    add_declared(p, ["--examples"], RunOptions, "examples", type=non_negative_int)


def parse_seeds(seeds: str | None, trials: int | None) -> tuple[int, ...]:
    if seeds:
        try:
            values = tuple(int(s) for s in seeds.split(",") if s.strip())
        except ValueError:
            raise UsageError(f"--seeds takes integers separated by commas, got '{seeds}'") from None
        if trials is not None and trials != len(values):
            raise UsageError(f"--trials {trials} does not match the {len(values)} seeds given")
        return values
    return tuple(range(trials)) if trials is not None else tuple(declared(RunOptions, "seeds").default)


def add_bag_options(p: argparse.ArgumentParser) -> None:
    """--storage, --severity and --channel-order: how bags are written (as a suite file declares them)."""
    add_declared(p, ["--storage"], SuiteFile, "storage")
    add_declared(p, ["--severity"], SuiteFile, "severity")
    add_declared(p, ["--channel-order"], SuiteFile, "channel_order")


def parse_corruptions(text: str) -> list[str]:
    if text.strip() == "all":
        return list(SCENARIOS)
    names = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in names if c not in SCENARIOS]
    if bad or not names:
        given = ", ".join(bad) or repr(text)
        raise UsageError(f"unknown corruption {given}; use 'all' or names from: {', '.join(SCENARIOS)}")
    return names


def root_pairs(items: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--root takes name=folder (e.g. voc20=/data/VOC2012), got '{item}'")
        out[name] = path
    return out


# ------------------------------------------------------------------ suites
def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """--executor ray and its settings (mlmp_ros.bench.suite.ray_executor)."""
    g = p.add_argument_group("cluster", "run every trial as a Ray task (pip install 'mlmp_ros[cluster]')")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: trials one after another here (default); ray: on a Ray cluster")  # fmt: skip
    g.add_argument("--address", help="Ray cluster: auto (the one started on this machine) or HOST:PORT "
                   "(default: RAY_ADDRESS, else a Ray instance started here)")  # fmt: skip
    g.add_argument("--gpus-per-trial", type=non_negative_number, metavar="N", help="GPUs a trial needs, may be "
                   "fractional (default: the suite's cluster.gpus_per_trial, else 0: CPU)")  # fmt: skip
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
        name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
        try:
            installed = config_path("suites", name)
        except FileNotFoundError:
            return path
        if installed.is_file():
            return installed
    return path
