"""Methods by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from ...catalog import METHOD_NAMES

if TYPE_CHECKING:
    from .base import Method

METHODS: dict[str, type[Method]] = {}

M = TypeVar("M")


def register(cls: M) -> M:
    """Register a method class under its ``name``, which must be listed in mlmp_ros/catalog.py."""
    name = cls.name  # type: ignore[attr-defined]
    if name not in METHOD_NAMES:
        raise RuntimeError(f"method '{name}' is not in mlmp_ros/catalog.py METHOD_INFO; add one line there")
    METHODS[name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method '{name}'; choose one of {sorted(METHODS)}") from None
