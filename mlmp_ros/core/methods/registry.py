"""Methods by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .base import Method

METHODS: dict[str, type[Method]] = {}

M = TypeVar("M")


def register(cls: M) -> M:
    METHODS[cls.name] = cls  # type: ignore[attr-defined]
    return cls


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method '{name}'; choose one of {sorted(METHODS)}") from None
