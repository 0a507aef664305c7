"""Test-time adaptation methods behind one interface, registered by name."""

from . import entropy  # noqa: F401  (registers noadapt, tent, mlmp)
from .base import Batch, Method, MethodOutput, Precision
from .registry import METHODS, get_method, register

__all__ = ["METHODS", "Batch", "Method", "MethodOutput", "Precision", "get_method", "register"]
