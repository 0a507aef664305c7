"""One configuration object for a segmenter and its test-time adaptation method.

The ROS node's parameters, the benchmark's YAML files and the Python API all build a
:class:`Config`, so a setting means the same thing everywhere.  Values are checked by
:meth:`Config.validate`, which names every problem it finds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

# Parameter groups that belong to the ROS node, not to the core; the core loader
# skips them when it reads the node's YAML file.
NODE_GROUPS = ("input", "output", "diagnostics", "use_sim_time")

ATTENTIONS = ("naclip", "sclip", "clip")
FEATURES = ("auto", "reduced", "vanilla")
FUSIONS = ("auto", "mean", "entropy_weighted")
MODES = ("off", "episodic", "continual")
SCHEDULES = ("sync", "async")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILES = ("auto", "on", "off")
OPTIMIZERS = ("adam", "adamw", "sgd")


class ConfigError(ValueError):
    """A configuration value is invalid; the message lists every problem found."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


@dataclass
class TPTConfig:
    """Test-time prompt tuning: a learnable context shared by all classes."""

    n_ctx: int = 4
    init: str = "a photo of a"


@dataclass
class CLIPArTTConfig:
    """CLIPArTT: pseudo-labels from prompts built of each token's top-K classes."""

    k: int = 3
    temperature: float = 0.01
    # Rows of the token x token similarity computed at once; bounds memory, which
    # otherwise grows with the square of the tokens in a batch.
    chunk_rows: int = 2048
    # "token": every token's scores against every token's prompt, prompts from each
    # token's own top-K (the method as described). "reference": the reference port's
    # reshapes of its top-K map and logits, kept to reproduce its published numbers.
    layout: str = "token"


@dataclass
class WATTConfig:
    """WATT-S: per-template adaptation, weight averaging, repeated M times."""

    l: int = 2  # noqa: E741 - the paper's name
    m: int = 5
    temperature: float = 0.01
    chunk_rows: int = 2048
    # False: every template starts from the current average (WATT-S as published).
    # True: templates run one after the other, as the reference port does.
    sequential: bool = False
    layout: str = "token"  # "reference": the reference port's logits reshape (see clipartt)


@dataclass
class SafeguardConfig:
    """Continual-adaptation safeguards (core/safeguards.py); each off by default (the paper)."""

    # EATA (Niu et al., ICML 2022): only tokens whose entropy is below e0 * ln(C) count
    # in the loss (C = text queries); 0 = every token (off). EATA uses e0 = 0.4.
    reliable_e0: float = 0.0
    # ROID-style weight ensembling (Marsden et al., WACV 2024): after every step
    # theta <- a * theta + (1 - a) * theta_source; 1 = off. ROID uses a = 0.99.
    ensemble_alpha: float = 1.0
    # Collapse detection (SAR, Niu et al., ICLR 2023: reset when a moving average of the
    # entropy collapses): reset when the moving average of the effective number of
    # predicted classes falls below collapse_ratio x its value after the last reset, or
    # the moving average of the mean normalised prediction entropy below collapse_entropy.
    collapse: bool = False
    collapse_ratio: float = 0.5
    collapse_entropy: float = 0.02
    # Drift-triggered reset (RDumb++-like, Press et al., NeurIPS 2023): reset when the
    # input's patch-token statistics jump by more than drift_factor x their usual change.
    drift: bool = False
    drift_factor: float = 4.0


@dataclass
class AdaptationConfig:
    """How the model adapts at test time."""

    method: str = "mlmp"
    mode: str = "episodic"
    steps: int = 10
    lr: float = 1e-3
    alpha: float = 1.0
    optimizer: str = "adam"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    momentum: float = 0.9
    # fnmatch patterns over the image encoder's parameter names; "layernorm" stands
    # for every LayerNorm weight and bias of the image encoder (the paper's choice).
    params: list[str] = field(default_factory=lambda: ["layernorm"])
    # Continual mode only: go back to the source weights every N frames (0 = never).
    reset_every: int = 0
    # "sync": adapt, then predict (the paper). "async": predict at once with the newest
    # adapted weights; adaptation runs beside it on the newest frame (core/streaming.py).
    schedule: str = "sync"
    every: int = 1  # adapt on every Nth frame (1 = every frame)
    budget_ms: float = 0.0  # no step starts that would pass this time per frame (0 = none)
    # Stop a frame's steps when the loss improved by less than this fraction (0 = off).
    plateau: float = 0.0
    safeguards: SafeguardConfig = field(default_factory=SafeguardConfig)
    tpt: TPTConfig = field(default_factory=TPTConfig)
    clipartt: CLIPArTTConfig = field(default_factory=CLIPArTTConfig)
    watt: WATTConfig = field(default_factory=WATTConfig)


@dataclass
class Config:
    """A CLIP segmenter and its adaptation method.

    Empty values mean "the method's default": ``layers=[]`` takes the method's
    layers (MLMP: the last 75% of the blocks, others: the last block), ``templates=[]``
    its prompt file, ``fusion="auto"`` its prediction rule.
    """

    model: str = "ViT-B-16-quickgelu"
    weights: str = "openai"
    cache_dir: str = ""
    offline: bool = False
    device: str = "auto"
    # "auto": bf16 on CUDA (where the GPU has bf16) and on CPUs with native bf16
    # (AVX-512-BF16 or AMX), fp32 otherwise.  fp32 is the paper protocol's precision.
    precision: str = "fp32"
    # torch.compile (inductor) of the adaptation step and the prediction; "auto": on
    # where it pays (CUDA), eager on the CPU.  Compiled once per input shape; a failed
    # compilation falls back to eager with a warning.
    compile: str = "auto"
    # CPU only: flush denormal floats to zero (process-wide). Near-zero gradients
    # otherwise take the CPU's slow denormal path (TENT on ViT-B/16: 1.6x slower).
    flush_denormal: bool = True
    attention: str = "naclip"
    features: str = "auto"
    gaussian_std: float = 5.0
    layers: list[int] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=lambda: ["voc21"])
    fusion: str = "auto"
    resize: list[int] = field(default_factory=list)
    window: list[int] = field(default_factory=lambda: [224])
    stride: list[int] = field(default_factory=lambda: [112])
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)

    def __post_init__(self) -> None:
        if list(self.resize) == [0]:
            self.resize = []  # [0] is how a ROS parameter file says "keep the input size"

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, ignore: tuple[str, ...] = NODE_GROUPS) -> Config:
        """Build from a (possibly nested or dotted) mapping; unknown keys are errors."""
        nested = _undot(data)
        problems: list[str] = []
        cfg = _build(cls, nested, "", problems, ignore)
        if problems:
            raise ConfigError(problems)
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        """Load a plain YAML mapping or a ROS 2 parameter file (``ros__parameters``)."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        return cls.from_mapping(ros_parameters(data) if data else {})

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
        p: list[str] = []
        a = self.adaptation
        _choice(p, "precision", self.precision, PRECISIONS)
        _choice(p, "compile", self.compile, COMPILES)
        _choice(p, "attention", self.attention, ATTENTIONS)
        _choice(p, "features", self.features, FEATURES)
        _choice(p, "fusion", self.fusion, FUSIONS)
        _choice(p, "adaptation.mode", a.mode, MODES)
        _choice(p, "adaptation.optimizer", a.optimizer, OPTIMIZERS)
        _choice(p, "adaptation.clipartt.layout", a.clipartt.layout, ("token", "reference"))
        _choice(p, "adaptation.watt.layout", a.watt.layout, ("token", "reference"))
        if not self.model.strip():
            p.append("model must name an open_clip model, e.g. ViT-B-16-quickgelu")
        if not self.weights.strip():
            p.append("weights must be an open_clip pretrained tag (e.g. openai), a file, or 'random'")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            p.append(f"device must be auto, cpu, cuda or cuda:N, not '{dev}'")
        if self.attention == "sclip" and self.features == "reduced":
            p.append("features 'reduced' is defined for naclip and clip attention, not sclip")
        if not (self.gaussian_std > 0 and math.isfinite(self.gaussian_std)):
            p.append(f"gaussian_std must be a positive number, not {self.gaussian_std}")
        if not self.classes or any(not str(c).strip() for c in self.classes):
            p.append("classes must be a non-empty list of non-empty names (or one data set name / file)")
        else:
            for c in self.classes:
                if any(not n.strip() for n in str(c).split(",")):
                    p.append(f"class entry '{c}' has an empty synonym")
        if len(self.resize) not in (0, 1, 2) or any(v <= 0 for v in self.resize):
            p.append(f"resize must be [] (keep size), [short_side] or [width, height] of positive sizes, not {self.resize}")
        for name, vals in (("window", self.window), ("stride", self.stride)):
            if len(vals) not in (1, 2) or any(v <= 0 for v in vals):
                p.append(f"{name} must be [size] or [width, height] of positive sizes, not {vals}")
        if a.steps < 0:
            p.append(f"adaptation.steps must be >= 0, not {a.steps}")
        if not (a.lr > 0 and math.isfinite(a.lr)):
            p.append(f"adaptation.lr must be a positive finite number, not {a.lr}")
        if not (a.alpha >= 0 and math.isfinite(a.alpha)):
            p.append(f"adaptation.alpha must be a finite number >= 0, not {a.alpha}")
        if len(a.betas) != 2 or not all(0 <= b < 1 for b in a.betas):
            p.append(f"adaptation.betas must be two numbers in [0, 1), not {a.betas}")
        if a.weight_decay < 0:
            p.append("adaptation.weight_decay must be >= 0")
        if not a.params:
            p.append("adaptation.params must name at least one parameter pattern")
        if a.reset_every < 0:
            p.append("adaptation.reset_every must be >= 0")
        p += stream_problems(a)
        if a.tpt.n_ctx < 1:
            p.append("adaptation.tpt.n_ctx must be >= 1")
        if a.clipartt.k < 1:
            p.append("adaptation.clipartt.k must be >= 1")
        for name, v in (("clipartt.temperature", a.clipartt.temperature), ("watt.temperature", a.watt.temperature)):
            if not (v > 0 and math.isfinite(v)):
                p.append(f"adaptation.{name} must be > 0")
        if a.clipartt.chunk_rows < 1 or a.watt.chunk_rows < 1:
            p.append("adaptation.*.chunk_rows must be >= 1")
        if a.watt.l < 1 or a.watt.m < 1:
            p.append("adaptation.watt.l and adaptation.watt.m must be >= 1")
        from .methods import METHODS  # late import: methods import this module

        if a.method not in METHODS:
            p.append(f"adaptation.method '{a.method}' is unknown; choose one of {sorted(METHODS)}")
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


def stream_problems(a: AdaptationConfig) -> list[str]:
    """Problems of the schedule, budget and safeguard settings."""
    p: list[str] = []
    g = a.safeguards
    _choice(p, "adaptation.schedule", a.schedule, SCHEDULES)
    if a.every < 1:
        p.append(f"adaptation.every must be >= 1, not {a.every}")
    if not (a.budget_ms >= 0 and math.isfinite(a.budget_ms)):
        p.append(f"adaptation.budget_ms must be >= 0 (0 = no budget), not {a.budget_ms}")
    if not (0 <= a.plateau < 1):
        p.append(f"adaptation.plateau must be in [0, 1) (0 = off), not {a.plateau}")
    if not (0 <= g.reliable_e0 <= 1):
        p.append(f"adaptation.safeguards.reliable_e0 must be in [0, 1] (0 = off), not {g.reliable_e0}")
    elif g.reliable_e0 > 0 and a.method not in ("tent", "mlmp", "noadapt"):
        p.append(f"adaptation.safeguards.reliable_e0 filters the entropy loss of tent and mlmp; {a.method} has none")
    if not (0 < g.ensemble_alpha <= 1):
        p.append(f"adaptation.safeguards.ensemble_alpha must be in (0, 1] (1 = off), not {g.ensemble_alpha}")
    if not (0 <= g.collapse_ratio < 1):
        p.append(f"adaptation.safeguards.collapse_ratio must be in [0, 1), not {g.collapse_ratio}")
    if not (0 <= g.collapse_entropy < 1):
        p.append(f"adaptation.safeguards.collapse_entropy must be in [0, 1), not {g.collapse_entropy}")
    if not (g.drift_factor > 1 and math.isfinite(g.drift_factor)):
        p.append(f"adaptation.safeguards.drift_factor must be > 1, not {g.drift_factor}")
    return p


def _choice(problems: list[str], name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        problems.append(f"{name} must be one of {', '.join(allowed)}, not '{value}'")


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


def _build(cls: type, data: Mapping[str, Any], prefix: str, problems: list[str], ignore: tuple[str, ...]) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if not prefix and key in ignore:
            continue
        if key not in fields:
            problems.append(f"unknown setting '{prefix}{key}' (known: {', '.join(sorted(fields))})")
            continue
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                problems.append(f"'{prefix}{key}' must be a mapping")
                continue
            kwargs[key] = _build(hint, value, f"{prefix}{key}.", problems, ignore)
            continue
        if not prefix and key == "compile" and isinstance(value, bool):
            value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
        try:
            kwargs[key] = _coerce(value, hint)
        except (TypeError, ValueError) as exc:
            problems.append(f"'{prefix}{key}': {exc}")
    return cls(**kwargs)


def _int_text(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise TypeError(f"expected integers, got {text.strip()!r}") from None


def _coerce(value: Any, hint: Any) -> Any:
    origin = get_origin(hint)
    if origin is list:
        (item,) = get_args(hint)
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return []  # "auto": the method's default
        if isinstance(value, str) and item in (int, float):
            value = [v for v in value.split(",") if v.strip()]  # "-1,-2,-3"
            value = [float(v) if item is float else _int_text(v) for v in value]
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # a single value where a list is expected
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return [_coerce(v, item) for v in value]
    if origin is Union:
        raise TypeError("unsupported union type")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TypeError(f"expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise TypeError(f"expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    return value
