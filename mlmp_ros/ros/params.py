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
from rclpy.parameter import Parameter

from ..core import schema
from ..core.config import Config
from ..core.schema import Setting
from .settings import (  # noqa: F401 - public names of this module before settings.py existed
    CONFIDENCE_ENCODINGS,
    DEV_PARAMETERS,
    NODE_CORE_DEFAULTS,
    NODE_DEFAULTS,
    NODE_FIELDS,
    NODE_GROUPS,
    RELIABILITIES,
    STRING_SETTINGS,
    NodeSettings,
    declared_settings,
    node_default,
    ros_value,
)

# What may change while the node runs (declared ``runtime=...``); everything else is read-only.
RUNTIME_PARAMETERS = tuple(s.name for s in declared_settings() if s.meta.runtime)


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    descriptor: ParameterDescriptor


def parameter_specs() -> list[ParameterSpec]:
    """Every parameter the node declares, with its default and descriptor (from the schema)."""
    specs = []
    for s in declared_settings():
        default = node_default(s)
        if default == []:  # ROS cannot type an empty list: declared by type, unset (None) until given
            default = Parameter.Type.STRING_ARRAY
        specs.append(ParameterSpec(s.name, default, descriptor(s)))
    return specs


def descriptor(s: Setting) -> ParameterDescriptor:
    """A setting's ROS descriptor: description, read-only unless run-time, range, choices."""
    desc = ParameterDescriptor(name=s.name, description=schema.describe(s), read_only=not s.meta.runtime)
    rng = s.meta.range
    # ROS ranges are closed and finite: a declared range with both ends finite becomes one (its
    # open ends are checked by the node's own validation); others are stated in words.
    if rng is not None and rng.finite and s.type is float:
        desc.floating_point_range = [FloatingPointRange(from_value=rng.low, to_value=rng.high, step=0.0)]
    elif rng is not None and rng.finite and s.type is int:
        desc.integer_range = [IntegerRange(from_value=math.ceil(rng.low), to_value=math.floor(rng.high), step=1)]
    if s.meta.choices is not None:
        desc.additional_constraints = "one of: " + ", ".join(map(str, s.meta.choices))
    elif rng is not None:
        desc.additional_constraints = f"must be {rng.text()}"
    return desc


def plain(value: Any) -> Any:
    """A parameter value as plain Python (rclpy may hand out array.array or tuples)."""
    if isinstance(value, (array.array, tuple)):
        return list(value)
    return value


def core_config(values: Mapping[str, Any]) -> Config:
    """The core configuration from parameter values (node groups are skipped)."""
    return Config.from_mapping({k: plain(v) for k, v in values.items() if k not in NODE_DEFAULTS})
