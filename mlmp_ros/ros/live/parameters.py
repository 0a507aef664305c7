"""Python values to and from ROS ParameterValue messages (the node's parameter services)."""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterType, ParameterValue
from rclpy.parameter import parameter_value_to_python

from ..params import plain


def parameter_value(value: Any) -> ParameterValue:
    """A ParameterValue message for a Python value (an empty list is a string array)."""
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    if isinstance(value, str):
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    if isinstance(value, (list, tuple)):
        items = list(value)
        if all(isinstance(v, bool) for v in items) and items:
            return ParameterValue(type=ParameterType.PARAMETER_BOOL_ARRAY, bool_array_value=items)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items) and items:
            return ParameterValue(type=ParameterType.PARAMETER_INTEGER_ARRAY, integer_array_value=items)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items) and items:
            return ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=[float(v) for v in items])
        if all(isinstance(v, str) for v in items):
            return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=items)
    raise TypeError(f"cannot send {value!r} as a ROS parameter")


def python_value(value: ParameterValue) -> Any:
    """A value from the node's parameter services as plain Python (None when not set)."""
    if value.type == ParameterType.PARAMETER_NOT_SET:
        return None
    return plain(parameter_value_to_python(value))
