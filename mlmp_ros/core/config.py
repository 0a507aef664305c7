"""One configuration object for a segmenter and its test-time adaptation method.

The ROS node's parameters, the benchmark's YAML files and the Python API all build a
:class:`Config`, so a setting means the same thing everywhere.  Each setting is one field
declared with :func:`~mlmp_ros.core.schema.setting` (help, choices or range, run-time flag),
from which its checks, the node's parameter descriptors and config/segment.yaml are made.
Values are checked by :meth:`Config.validate`, which names every problem it finds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..catalog import METHOD_INFO, METHOD_NAMES
from . import schema
from .schema import SEGMENTER, SCHEDULE, group, setting

# Parameter groups that belong to the ROS node, not to the core; the core loader skips
# them when it reads the node's parameter file.  The node declares them
# (mlmp_ros/ros/settings.py); test/test_schema.py checks that this list matches.
NODE_GROUPS = ("cameras", "autostart", "input", "output", "diagnostics", "dev", "use_sim_time")

ATTENTIONS = ("naclip", "sclip", "clip")
FEATURES = ("auto", "reduced", "vanilla")
FUSIONS = ("auto", "mean", "entropy_weighted")
MODES = ("off", "episodic", "continual")
SCHEDULES = ("sync", "async")
SHARES = ("none", "cameras")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILES = ("auto", "on", "off")
OPTIMIZERS = ("adam", "adamw", "sgd")
LAYOUTS = ("token", "reference")


class ConfigError(ValueError):
    """A configuration value is invalid; the message lists every problem found."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


# Custom checks: a problem (completing "<name> ...") or None.
def _not_blank(example: str) -> Callable[[str], str | None]:
    return lambda value: None if value.strip() else f"must not be empty ({example})"


def _device(dev: str) -> str | None:
    if dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit()):
        return None
    return f"must be auto, cpu, cuda or cuda:N, not '{dev}'"


def _classes(classes: list[str]) -> str | None:
    if not classes or any(not str(c).strip() for c in classes):
        return "must be a non-empty list of non-empty names (or one data set name / file)"
    for c in classes:
        if any(not n.strip() for n in str(c).split(",")):
            return f"entry '{c}' has an empty synonym"
    return None


def _resize(vals: list[int]) -> str | None:
    if len(vals) not in (0, 1, 2) or any(v <= 0 for v in vals):
        return f"must be [] (keep size), [short_side] or [width, height] of positive sizes, not {vals}"
    return None


def _sizes(vals: list[int]) -> str | None:
    if len(vals) not in (1, 2) or any(v <= 0 for v in vals):
        return f"must be [size] or [width, height] of positive sizes, not {vals}"
    return None


def _betas(betas: list[float]) -> str | None:
    return None if len(betas) == 2 and all(0 <= b < 1 for b in betas) else f"must be two numbers in [0, 1), not {betas}"


def _patterns(params: list[str]) -> str | None:
    return None if params else "must name at least one parameter pattern"


def _on_off(value: Any) -> Any:
    if isinstance(value, bool):
        return "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
    return value


@dataclass
class TPTConfig:
    """Test-time prompt tuning: a learnable context shared by all classes."""

    n_ctx: int = setting(4, help="TPT: learnable context tokens", range="[1, inf)")
    init: str = setting("a photo of a", help="TPT: initial context text")


@dataclass
class CLIPArTTConfig:
    """CLIPArTT: pseudo-labels from prompts built of each token's top-K classes."""

    k: int = setting(3, help="CLIPArTT: classes per pseudo-label prompt", range="[1, inf)")
    temperature: float = setting(0.01, help="CLIPArTT: similarity temperature", range="(0, inf)")
    # Rows of the token x token similarity computed at once; bounds memory, which
    # otherwise grows with the square of the tokens in a batch.
    chunk_rows: int = setting(2048, help="CLIPArTT: token-similarity rows computed at once (bounds memory)",
                              range="[1, inf)")
    # "token": every token's scores against every token's prompt, prompts from each
    # token's own top-K (the method as described). "reference": the reference port's
    # reshapes of its top-K map and logits, kept to reproduce its published numbers.
    layout: str = setting("token", help="CLIPArTT: token (the method as described) or reference (the reference "
                          "port's reshapes, to reproduce its numbers)", choices=LAYOUTS)


@dataclass
class WATTConfig:
    """WATT-S: per-template adaptation, weight averaging, repeated M times."""

    l: int = setting(2, help="WATT: adaptation iterations per template", range="[1, inf)")  # noqa: E741 - the paper's name
    m: int = setting(5, help="WATT: weight-averaging rounds", range="[1, inf)")
    temperature: float = setting(0.01, help="WATT: similarity temperature", range="(0, inf)")
    chunk_rows: int = setting(2048, help="WATT: token-similarity rows computed at once (bounds memory)",
                              range="[1, inf)")
    # False: every template starts from the current average (WATT-S as published).
    # True: templates run one after the other, as the reference port does.
    sequential: bool = setting(False, help="WATT: templates one after the other (the reference port) instead of "
                               "each from the average")
    layout: str = setting("token", help="WATT: token or reference (the reference port's logits reshape)",
                          choices=LAYOUTS)


@dataclass
class SafeguardConfig:
    """Continual-adaptation safeguards (core/safeguards.py); each off by default (the paper)."""

    # EATA (Niu et al., ICML 2022): only tokens whose entropy is below e0 * ln(C) count
    # in the loss (C = text queries); 0 = every token (off). EATA uses e0 = 0.4.
    reliable_e0: float = setting(0.0, help="EATA token filter: only tokens with entropy < e0 ln C count "
                                 "(0: off; EATA: 0.4)", range="[0, 1]", runtime=SCHEDULE)
    # ROID-style weight ensembling (Marsden et al., WACV 2024): after every step
    # theta <- a * theta + (1 - a) * theta_source; 1 = off. ROID uses a = 0.99.
    ensemble_alpha: float = setting(1.0, help="after every step theta <- a theta + (1-a) theta_source "
                                    "(1: off; ROID: 0.99)", range="(0, 1]", runtime=SCHEDULE)
    # Collapse detection (SAR, Niu et al., ICLR 2023: reset when a moving average of the
    # entropy collapses): reset when the moving average of the effective number of
    # predicted classes falls below collapse_ratio x its value after the last reset, or
    # the moving average of the mean normalised prediction entropy below collapse_entropy.
    collapse: bool = setting(False, help="continual: reset when the predictions collapse (class histogram or "
                             "entropy moving average)", runtime=SCHEDULE)
    collapse_ratio: float = setting(0.5, help="collapse: effective number of predicted classes below this "
                                    "fraction of its value after the last reset", range="[0, 1)", runtime=SCHEDULE)
    collapse_entropy: float = setting(0.02, help="collapse: mean normalised prediction entropy below this",
                                      range="[0, 1)", runtime=SCHEDULE)
    # Drift-triggered reset (RDumb++-like, Press et al., NeurIPS 2023): reset when the
    # input's patch-token statistics jump by more than drift_factor x their usual change.
    drift: bool = setting(False, help="continual: reset on a jump in the input's patch-token statistics",
                          runtime=SCHEDULE)
    drift_factor: float = setting(4.0, help="drift: a jump is a change above this many times the usual one",
                                  range="(1, inf)", runtime=SCHEDULE)


@dataclass
class AdaptationConfig:
    """How the model adapts at test time."""

    method: str = setting("mlmp", help="the adaptation method", choices=METHOD_NAMES)
    mode: str = setting("episodic", help="episodic: back to the source weights every frame; continual: keep "
                        "adapting; off: no adaptation",
                        choices=MODES, runtime=SEGMENTER)
    steps: int = setting(10, help="optimiser steps per frame (0: no adaptation)", range="[0, inf)",
                         runtime=SEGMENTER)
    lr: float = setting(1e-3, help="adaptation learning rate", range="(0, inf)", runtime=SEGMENTER)
    alpha: float = setting(1.0, help="weight of the class-token entropy in MLMP's loss", range="[0, inf)")
    optimizer: str = setting("adam", help="the optimiser", choices=OPTIMIZERS)
    betas: list[float] = setting(help="Adam betas [b1, b2]", check=_betas, factory=lambda: [0.9, 0.999])
    weight_decay: float = setting(0.0, help="optimiser weight decay", range="[0, inf)")
    momentum: float = setting(0.9, help="SGD momentum (sgd only)")
    # fnmatch patterns over the image encoder's parameter names; "layernorm" stands
    # for every LayerNorm weight and bias of the image encoder (the paper's choice).
    params: list[str] = setting(help="what adapts: 'layernorm' or fnmatch patterns over the image encoder's "
                                "parameter names", check=_patterns, factory=lambda: ["layernorm"])
    reset_every: int = setting(0, help="continual mode: back to the source weights every N frames (0: never)",
                               range="[0, inf)", runtime=SCHEDULE)
    # "sync": adapt, then predict (the paper). "async": predict at once with the newest
    # adapted weights; adaptation runs beside it on the newest frame (core/schedule.py).
    schedule: str = setting("sync", help="sync (adapt, then predict: the paper) or async (predict at once with the "
                            "newest adapted weights; adaptation runs beside it on the newest frame)",
                            choices=SCHEDULES, runtime=SCHEDULE)
    every: int = setting(1, help="adapt on every Nth frame (1: every frame)", range="[1, inf)", runtime=SCHEDULE)
    budget_ms: float = setting(0.0, help="no adaptation step starts that would pass this many ms per frame "
                               "(0: no budget)", range="[0, inf)", runtime=SCHEDULE)
    plateau: float = setting(0.0, help="stop a frame's steps when the loss improved by less than this fraction "
                             "(0: off)", range="[0, 1)", runtime=SCHEDULE)
    # Several cameras through one model: each its own adapted weights,
    # safeguards and resets ("none"), or one adaptation state for all of them ("cameras").
    share: str = setting("none", help="with several cameras: none (each camera adapts its own weights, "
                         "safeguards and resets) or cameras (one adaptation state for all)", choices=SHARES)
    safeguards: SafeguardConfig = group(SafeguardConfig)
    tpt: TPTConfig = group(TPTConfig)
    clipartt: CLIPArTTConfig = group(CLIPArTTConfig)
    watt: WATTConfig = group(WATTConfig)


@dataclass
class Config:
    """A CLIP segmenter and its adaptation method.

    Empty values mean "the method's default": ``layers=[]`` takes the method's
    layers (MLMP: the last 75% of the blocks, others: the last block), ``templates=[]``
    its prompt file, ``fusion="auto"`` its prediction rule.
    """

    model: str = setting("ViT-B-16-quickgelu", help="open_clip model name (OpenAI weights need the -quickgelu "
                         "names, e.g. ViT-B-16-quickgelu)", check=_not_blank("e.g. ViT-B-16-quickgelu"))
    weights: str = setting("openai", help="open_clip pretrained tag (e.g. openai), a local weights file, or "
                           "'random' (tests only)", check=_not_blank("e.g. openai, a file, or 'random'"))
    cache_dir: str = setting("", help="folder where pretrained weights are cached ('' = open_clip's default)")
    offline: bool = setting(False, help="never download weights; use the cache or a local file")
    device: str = setting("auto", help="auto, cpu, cuda or cuda:N", check=_device)
    # "auto": bf16 on CUDA (where the GPU has bf16) and on CPUs with native bf16
    # (AVX-512-BF16 or AMX), fp32 otherwise.  fp32 is the paper protocol's precision.
    precision: str = setting("fp32", help="auto: bf16 on CUDA and on CPUs with native bf16 (AVX-512-BF16/AMX), "
                             "else fp32; fp16: CUDA only", choices=PRECISIONS)
    # torch.compile (inductor) of the adaptation step and the prediction; "auto": on
    # where it pays (CUDA), eager on the CPU.  Compiled once per input shape; a failed
    # compilation falls back to eager with a warning.
    compile: str = setting("auto", help="torch.compile of the adaptation step and prediction (auto: on for CUDA)",
                           choices=COMPILES, parse=_on_off)
    # CPU only: flush denormal floats to zero (process-wide). Near-zero gradients
    # otherwise take the CPU's slow denormal path (TENT on ViT-B/16: 1.6x slower).
    flush_denormal: bool = setting(True, help="CPU: flush denormal floats to zero (faster adaptation; "
                                   "process-wide)")
    attention: str = setting("naclip", help="dense attention of the last block", choices=ATTENTIONS)
    features: str = setting("auto", help="auto: reduced for naclip", choices=FEATURES)
    gaussian_std: float = setting(5.0, help="NACLIP neighbourhood prior's standard deviation (patches)",
                                  range="(0, inf)")
    layers: list[int] = setting(help="'auto' (the method's layers; MLMP: last 75% of the blocks) or block "
                                "indices, e.g. '-1,-2,-3'", factory=list)
    templates: list[str] = setting(help="'auto' (the method's prompts), a name in config/prompts, or a YAML file "
                                   "of templates", factory=list)
    classes: list[str] = setting(help="one entry per class, synonyms separated by ', '; or one entry naming a "
                                 "built-in list (voc21, cityscapes, ...) or a .txt file", check=_classes,
                                 runtime=SEGMENTER, factory=lambda: ["voc21"])
    fusion: str = setting("auto", help="how layer predictions combine", choices=FUSIONS)
    resize: list[int] = setting(help="[] or [0] keep the input size, [s] short side to s, [W, H] fixed size "
                                "(swapped for portrait)", check=_resize, factory=list)
    window: list[int] = setting(help="sliding window [s] or [W, H] in pixels, a multiple of the patch size",
                                check=_sizes, factory=lambda: [224])
    stride: list[int] = setting(help="sliding window stride [s] or [W, H] in pixels", check=_sizes,
                                factory=lambda: [112])
    adaptation: AdaptationConfig = group(AdaptationConfig)

    def __post_init__(self) -> None:
        if list(self.resize) == [0]:
            self.resize = []  # [0] is how a ROS parameter file says "keep the input size"

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, ignore: tuple[str, ...] = NODE_GROUPS) -> Config:
        """Build from a (possibly nested or dotted) mapping; unknown keys are errors (``ignore``: top-level
        groups that belong to someone else, by default the ROS node's)."""
        nested = _undot(data)
        problems: list[str] = []
        cfg = schema.build(cls, nested, problems, ignore=ignore)
        if problems:
            raise ConfigError(problems)
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, *, ignore: tuple[str, ...] = NODE_GROUPS) -> Config:
        """Load a plain YAML mapping or a ROS 2 parameter file (``ros__parameters``)."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        return cls.from_mapping(ros_parameters(data) if data else {}, ignore=ignore)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted names to values, the form ROS parameters take."""
        return flatten(self.to_dict())

    def replace(self, **changes: Any) -> Config:
        """A validated copy with dotted-name changes, e.g. ``{"adaptation.steps": 5}``."""
        merged = self.flat()
        for key, value in changes.items():
            key = key.replace("__", ".")
            if key not in merged:
                raise ConfigError(f"unknown setting '{key}'")
            merged[key] = value
        return Config.from_mapping(merged, ignore=())

    # --------------------------------------------------------------- validation
    def problems(self) -> list[str]:
        """The declared rules of every setting (core/schema.py), then the rules that tie settings together."""
        p = schema.problems(self)
        if self.attention == "sclip" and self.features == "reduced":
            p.append("features 'reduced' is defined for naclip and clip attention, not sclip")
        p += cross_problems(self.adaptation)
        return p

    def validate(self) -> Config:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self


# ---------------------------------------------------------------------- helpers
def ros_parameters(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``ros__parameters`` mapping of a ROS 2 parameter file, or ``data`` itself."""
    if isinstance(data, Mapping) and len(data) == 1:
        (only,) = data.values()
        if isinstance(only, Mapping) and "ros__parameters" in only:
            return only["ros__parameters"] or {}
    return data


def cross_problems(a: AdaptationConfig) -> list[str]:
    """Adaptation rules that involve two settings (single values: their declared rules)."""
    p: list[str] = []
    e0 = a.safeguards.reliable_e0
    info = METHOD_INFO.get(a.method)
    if 0 < e0 <= 1 and info is not None and not info.entropy_loss:
        entropy = ", ".join(name for name, i in METHOD_INFO.items() if i.entropy_loss)
        p.append(f"adaptation.safeguards.reliable_e0 filters the entropy loss of {entropy}; {a.method} has none")
    return p


def _undot(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"'{key}' conflicts with a plain value of '{part}'")
        if isinstance(value, Mapping):
            node.setdefault(parts[-1], {}).update(_undot(value))
        else:
            node[parts[-1]] = value
    return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted names (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
