"""The ``mlmp-bench`` command line: :func:`main` (the console entry point), the shared argument
builders (:mod:`.arguments`) and one module per group of sub-commands."""

from ..argument_checks import UsageError
from .arguments import parse_sets
from .main import main

__all__ = ["UsageError", "main", "parse_sets"]
