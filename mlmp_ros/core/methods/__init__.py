"""Test-time adaptation methods behind one interface, registered by name."""

from . import entropy, prompt, pseudo  # noqa: F401  (register the methods)
from .base import Batch, Method, MethodOutput
from .precision import Precision
from .registry import METHODS, get_method, register

__all__ = ["METHODS", "Batch", "Method", "MethodOutput", "Precision", "get_method", "register"]
