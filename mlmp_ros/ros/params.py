"""The node's parameters: one per core setting (same dotted names) plus the node's own.

A parameter file, ``-p`` overrides and the parameter service all end in the same
:class:`~mlmp_ros.core.Config`, built by :func:`core_config`; the node's own groups
(``input.*``, ``output.*``, ``diagnostics.*``) end in :class:`NodeSettings`.
"""

from __future__ import annotations

import array
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..core.config import Config, ConfigError
from ..core.segmenter import RUNTIME_SETTINGS
from ..core.streaming import STREAM_SETTINGS

RELIABILITIES = ("auto", "reliable", "best_effort")
CONFIDENCE_ENCODINGS = ("32FC1", "mono8")

# Core settings that are lists in the core but one string as a ROS parameter
# ("auto" or "-1,-2,-3"; "auto", a prompt-file name or a YAML file).
STRING_SETTINGS = ("layers", "templates")

DESCRIPTIONS: dict[str, str] = {
    "model": "open_clip model name (OpenAI weights need the -quickgelu names, e.g. ViT-B-16-quickgelu)",
    "weights": "open_clip pretrained tag (e.g. openai), a local weights file, or 'random' (tests only)",
    "cache_dir": "folder where pretrained weights are cached ('' = open_clip's default)",
    "offline": "never download weights; use the cache or a local file",
    "device": "auto | cpu | cuda | cuda:N",
    "precision": "auto | fp32 | bf16 | fp16 (auto: bf16 on CUDA and on CPUs with native bf16, else fp32; fp16: CUDA only)",
    "compile": "auto | on | off: torch.compile of the adaptation step and prediction (auto: on for CUDA)",
    "flush_denormal": "CPU: flush denormal floats to zero (faster adaptation; process-wide)",
    "attention": "dense attention of the last block: naclip | sclip | clip",
    "features": "auto | reduced | vanilla (auto: reduced for naclip)",
    "gaussian_std": "NACLIP neighbourhood prior's standard deviation (patches)",
    "layers": "'auto' (the method's layers; MLMP: last 75% of the blocks) or block indices, e.g. '-1,-2,-3'",
    "templates": "'auto' (the method's prompts), a name in config/prompts, or a YAML file of templates",
    "classes": "one entry per class, synonyms separated by ', '; or one entry naming a built-in list "
    "(voc21, cityscapes, ...) or a .txt file [run time]",
    "fusion": "how layer predictions combine: auto | mean | entropy_weighted",
    "resize": "[0] keep the input size, [s] short side to s, [W, H] fixed size (swapped for portrait)",
    "window": "sliding window [s] or [W, H] in pixels, a multiple of the patch size",
    "stride": "sliding window stride [s] or [W, H] in pixels",
    "adaptation.method": "noadapt | tent | mlmp | tpt | watt | clipartt",
    "adaptation.mode": "off | episodic (back to the source weights every frame) | continual [run time]",
    "adaptation.steps": "optimiser steps per frame (0: no adaptation) [run time]",
    "adaptation.lr": "adaptation learning rate [run time]",
    "adaptation.alpha": "weight of the class-token entropy in MLMP's loss",
    "adaptation.optimizer": "adam | adamw | sgd",
    "adaptation.betas": "Adam betas [b1, b2]",
    "adaptation.weight_decay": "optimiser weight decay",
    "adaptation.momentum": "SGD momentum (sgd only)",
    "adaptation.params": "what adapts: 'layernorm' or fnmatch patterns over the image encoder's parameter names",
    "adaptation.reset_every": "continual mode: back to the source weights every N frames (0: never)",
    "adaptation.schedule": "sync (adapt, then predict: the paper) | async (predict at once with the newest adapted "
    "weights; adaptation runs beside it on the newest frame) [run time]",
    "adaptation.every": "adapt on every Nth frame (1: every frame) [run time]",
    "adaptation.budget_ms": "no adaptation step starts that would pass this many ms per frame (0: no budget) [run time]",
    "adaptation.plateau": "stop a frame's steps when the loss improved by less than this fraction (0: off) [run time]",
    "adaptation.safeguards.reliable_e0": "EATA token filter: only tokens with entropy < e0 ln C count (0: off; "
    "EATA: 0.4) [run time]",
    "adaptation.safeguards.ensemble_alpha": "after every step theta <- a theta + (1-a) theta_source (1: off; "
    "ROID: 0.99) [run time]",
    "adaptation.safeguards.collapse": "continual: reset when the predictions collapse (class histogram or "
    "entropy moving average) [run time]",
    "adaptation.safeguards.collapse_ratio": "collapse: effective number of predicted classes below this "
    "fraction of its value after the last reset [run time]",
    "adaptation.safeguards.collapse_entropy": "collapse: mean normalised prediction entropy below this [run time]",
    "adaptation.safeguards.drift": "continual: reset on a jump in the input's patch-token statistics [run time]",
    "adaptation.safeguards.drift_factor": "drift: a jump is a change above this many times the usual one [run time]",
    "adaptation.tpt.n_ctx": "TPT: learnable context tokens",
    "adaptation.tpt.init": "TPT: initial context text",
    "adaptation.clipartt.k": "CLIPArTT: classes per pseudo-label prompt",
    "adaptation.clipartt.temperature": "CLIPArTT: similarity temperature",
    "adaptation.clipartt.chunk_rows": "CLIPArTT: token-similarity rows computed at once (bounds memory)",
    "adaptation.clipartt.layout": "CLIPArTT: token | reference",
    "adaptation.watt.l": "WATT: adaptation iterations per template",
    "adaptation.watt.m": "WATT: weight-averaging rounds",
    "adaptation.watt.temperature": "WATT: similarity temperature",
    "adaptation.watt.chunk_rows": "WATT: token-similarity rows computed at once (bounds memory)",
    "adaptation.watt.sequential": "WATT: templates one after the other (the reference port) instead of from the average",
    "adaptation.watt.layout": "WATT: token | reference",
    "input.compressed": "subscribe to image/compressed (jpeg/png) instead of image",
    "input.reliability": "input QoS reliability: auto (match the camera publisher) | reliable | best_effort",
    "input.depth": "input QoS history depth",
    "input.max_windows": "refuse (count as bad) a frame that needs more sliding windows than this after the resize",
    "input.max_pixels": "refuse (count as bad) a frame of more pixels than this (compressed: read from the header before decoding)",
    "input.max_rate_hz": "process at most this many frames per second (0: no cap); the newest frame wins [run time]",
    "output.confidence": "publish segmentation/confidence [run time]",
    "output.confidence_encoding": "32FC1 (probability 0..1) | mono8 (round(255 p), as Nav2's semantic_segmentation_layer reads it) [run time]",
    "output.colored": "publish segmentation/colored (rgb8 palette image) [run time]",
    "output.blend": "weight of the input image under the palette in segmentation/colored, 0..1 [run time]",
    "diagnostics.period": "seconds between /diagnostics messages",
    "diagnostics.stall_warn_factor": "WARN when, while input arrives, no frame finished for this many expected frame times",
    "diagnostics.stall_error_factor": "ERROR when, while input arrives, no frame finished for this many expected frame times",
    "dev.step_delay": "TESTS ONLY: sleep this many seconds before every adaptation step (makes a frame slow) [run time]",
}

# The node's own parameters and the NodeSettings fields they set.
NODE_FIELDS: dict[str, str] = {
    "input.compressed": "compressed",
    "input.reliability": "reliability",
    "input.depth": "depth",
    "input.max_windows": "max_windows",
    "input.max_pixels": "max_pixels",
    "input.max_rate_hz": "max_rate_hz",
    "output.confidence": "confidence",
    "output.confidence_encoding": "confidence_encoding",
    "output.colored": "colored",
    "output.blend": "blend",
    "diagnostics.period": "diagnostics_period",
    "diagnostics.stall_warn_factor": "stall_warn_factor",
    "diagnostics.stall_error_factor": "stall_error_factor",
    "dev.step_delay": "step_delay",
}

# Parameters for tests only: declared, but not in config/segment.yaml.
DEV_PARAMETERS = ("dev.step_delay",)

# Core settings whose node default differs from the core's (the core keeps the paper
# protocol's fp32; a robot takes the fastest precision its hardware has).
NODE_CORE_DEFAULTS: dict[str, Any] = {"precision": "auto"}

# What may change while the node runs; everything else is read-only.
RUNTIME_PARAMETERS = (*RUNTIME_SETTINGS, *STREAM_SETTINGS, "output.confidence", "output.confidence_encoding", "output.colored",
                      "output.blend", "input.max_rate_hz", "dev.step_delay")


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    descriptor: ParameterDescriptor


def ros_value(name: str, value: Any) -> Any:
    """A core setting in the form its ROS parameter takes (no empty lists: ROS cannot type them)."""
    if name in STRING_SETTINGS:
        return ",".join(str(v) for v in value) if value else "auto"
    if name == "resize" and not value:
        return [0]
    return value


def parameter_specs() -> list[ParameterSpec]:
    """Every parameter the node declares, with its default and descriptor."""
    defaults = {name: ros_value(name, value) for name, value in Config().flat().items()}
    defaults.update(NODE_CORE_DEFAULTS)
    defaults.update(NODE_DEFAULTS)
    specs = []
    for name, default in defaults.items():
        desc = ParameterDescriptor(
            name=name,
            description=DESCRIPTIONS.get(name, ""),
            read_only=name not in RUNTIME_PARAMETERS,
        )
        if name == "output.blend":
            desc.floating_point_range = [FloatingPointRange(from_value=0.0, to_value=1.0, step=0.0)]
        elif name == "input.depth":
            desc.integer_range = [IntegerRange(from_value=1, to_value=1000, step=1)]
        elif name == "input.reliability":
            desc.additional_constraints = "one of: " + ", ".join(RELIABILITIES)
        elif name == "output.confidence_encoding":
            desc.additional_constraints = "one of: " + ", ".join(CONFIDENCE_ENCODINGS)
        specs.append(ParameterSpec(name, default, desc))
    return specs


def plain(value: Any) -> Any:
    """A parameter value as plain Python (rclpy may hand out array.array or tuples)."""
    if isinstance(value, (array.array, tuple)):
        return list(value)
    return value


def core_config(values: Mapping[str, Any]) -> Config:
    """The core configuration from parameter values (node groups are skipped)."""
    return Config.from_mapping({k: plain(v) for k, v in values.items() if k not in NODE_DEFAULTS})


@dataclass(frozen=True)
class NodeSettings:
    """The node's own settings (the ``input``, ``output`` and ``diagnostics`` groups)."""

    compressed: bool = False
    reliability: str = "auto"
    depth: int = 1
    max_windows: int = 64
    max_pixels: int = 7680 * 4320  # 8K UHD
    max_rate_hz: float = 0.0
    confidence: bool = True
    confidence_encoding: str = "32FC1"
    colored: bool = False
    blend: float = 0.0
    diagnostics_period: float = 1.0
    stall_warn_factor: float = 5.0
    stall_error_factor: float = 20.0
    step_delay: float = 0.0

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> NodeSettings:
        """Validated settings from parameter values (other parameters are skipped, missing ones default)."""
        settings = cls(**{field: plain(values[name]) for name, field in NODE_FIELDS.items() if name in values})
        problems = settings.problems()
        if problems:
            raise ConfigError(problems)
        return settings

    def replace(self, changes: Mapping[str, Any]) -> NodeSettings:
        """A validated copy with parameter-name changes, e.g. ``{"output.blend": 0.5}``."""
        return NodeSettings.from_values({**self.as_values(), **changes})

    def as_values(self) -> dict[str, Any]:
        return {name: getattr(self, field) for name, field in NODE_FIELDS.items()}

    def problems(self) -> list[str]:
        p = []
        if self.reliability not in RELIABILITIES:
            p.append(f"input.reliability must be one of {', '.join(RELIABILITIES)}, not '{self.reliability}'")
        if not isinstance(self.depth, int) or self.depth < 1:
            p.append(f"input.depth must be an integer >= 1, not {self.depth}")
        if not (isinstance(self.blend, (int, float)) and 0.0 <= self.blend <= 1.0):
            p.append(f"output.blend must be in [0, 1], not {self.blend}")
        for name in ("max_windows", "max_pixels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                p.append(f"input.{name} must be an integer >= 1, not {value}")
        if not (isinstance(self.max_rate_hz, (int, float)) and self.max_rate_hz >= 0 and math.isfinite(self.max_rate_hz)):
            p.append(f"input.max_rate_hz must be >= 0 (0: no cap), not {self.max_rate_hz}")
        if self.confidence_encoding not in CONFIDENCE_ENCODINGS:
            p.append(f"output.confidence_encoding must be one of {', '.join(CONFIDENCE_ENCODINGS)}, "
                     f"not '{self.confidence_encoding}'")
        warn, error = self.stall_warn_factor, self.stall_error_factor
        if not (isinstance(warn, (int, float)) and isinstance(error, (int, float)) and 1 <= warn <= error):
            p.append(f"diagnostics.stall_warn_factor ({warn}) and stall_error_factor ({error}) must satisfy "
                     "1 <= warn <= error")
        if not (isinstance(self.step_delay, (int, float)) and self.step_delay >= 0):
            p.append(f"dev.step_delay must be >= 0, not {self.step_delay}")
        period = self.diagnostics_period
        if not (isinstance(period, (int, float)) and period > 0 and math.isfinite(period)):
            p.append(f"diagnostics.period must be a positive number of seconds, not {period}")
        return p


# The node's own parameters with their defaults.
NODE_DEFAULTS: dict[str, Any] = NodeSettings().as_values()
