"""How a bag is replayed offline (:class:`RunOptions`), and the bag's protocol applied to a core config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core import schema
from ...core.config import Config
from ...core.schema import setting


class RunError(ValueError):
    """A run cannot start: its options do not fit the bag or the segmenter."""


def _seeds(seeds: tuple[int, ...]) -> str | None:
    if not seeds:
        return "must list at least one trial seed"
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        return f"must be integers >= 0, not {list(seeds)}"
    if len(set(seeds)) != len(seeds):
        return f"must differ, got {list(seeds)}"
    return None


@dataclass(frozen=True)
class RunOptions:
    """How a bag is replayed: batching, order, trials and what is kept (declared as in core/schema.py;
    a suite file's keys of the same names are these declarations)."""

    batch_size: int = setting(2, help="frames per adaptation batch (2: the paper's tables, 1: single sample)",
                              range="[1, inf)")
    seeds: tuple[int, ...] = setting((0, 1, 2), help="trial seeds, one trial each", check=_seeds)
    shuffle: bool = setting(True, help="frames in a new order per trial seed (false: bag order)")
    limit: int | None = setting(None, help="the first N frames of the bag only", range="[1, inf)")
    examples: int = setting(3, help="predictions kept for the first K frames of the split (trial 0)",
                            range="[0, inf)")
    progress: bool = False

    def __post_init__(self) -> None:
        problems = schema.problems(self, types=True)
        if problems:
            raise RunError("; ".join(problems))


def protocol(info: Mapping[str, Any]) -> tuple[list[int], list[int], list[int]]:
    """(resize, window, stride) of a bag's description, as Config lists."""
    try:
        proto = info["protocol"]
        resize, window, stride = proto["resize"], proto["window"], proto["stride"]
    except (KeyError, TypeError) as err:
        raise RunError(f"the bag's description has no protocol {err}; write the bag again with make-bags") from None

    def as_list(value: Any) -> list[int]:
        return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]

    return as_list(resize), as_list(window), as_list(stride)


def segmenter_config(base: Config, info: Mapping[str, Any], method: str | None = None) -> Config:
    """``base`` with the bag's classes and window protocol (and ``method`` if given)."""
    resize, window, stride = protocol(info)
    changes: dict[str, Any] = {"classes": [info["class_key"]], "resize": resize, "window": window, "stride": stride}
    if method is not None:
        changes["adaptation.method"] = method
    return base.replace(**changes)


def scoring_size(height: int, width: int, config: Config) -> tuple[int, int]:
    """(height, width) at which the segmenter answers with ``output='processing'``."""
    from ...core.windows import fit_to_window, pair, target_size  # loads torch

    return fit_to_window(target_size(height, width, config.resize), pair(config.window))
