"""What each trial asks of a Ray cluster (``--gpus-per-trial``, ``--cpus-per-trial``, ``--max-retries``,
``--connect-timeout`` or a suite file's ``cluster`` section), checked without importing Ray."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CONNECT_TIMEOUT = 10.0  # seconds for a cluster at the given address to answer
_SETTINGS = {"gpus_per_trial": (int, float), "cpus_per_trial": (int, float), "max_retries": (int,)}


class ClusterError(ValueError):
    """The Ray cluster cannot be used as asked (not installed, not reachable, too small)."""


@dataclass(frozen=True)
class RaySettings:
    """Where the cluster is and what each trial asks of it."""

    address: str | None = None  # None: RAY_ADDRESS, else a Ray instance started here
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    max_retries: int = 2  # re-runs of a trial whose worker died (3 attempts in all)
    connect_timeout: float = CONNECT_TIMEOUT  # seconds for the cluster at ``address`` to answer

    def __post_init__(self) -> None:
        problems = _check_values({key: getattr(self, key) for key in _SETTINGS})
        timeout = self.connect_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (math.isfinite(timeout) and timeout > 0):
            problems.append(f"connect_timeout must be a finite number of seconds > 0, not {timeout!r}")
        if problems:
            raise ClusterError("; ".join(problems))


def _check_values(values: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, value in values.items():
        kinds = _SETTINGS[key]
        if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
            what = "an integer" if kinds == (int,) else "a number"
            problems.append(f"{key} must be {what} >= 0, not {value!r}")
    cpus = values.get("cpus_per_trial")
    if isinstance(cpus, (int, float)) and not isinstance(cpus, bool) and 0 <= cpus < 0.01:
        problems.append("cpus_per_trial must be at least 0.01 (a trial always uses a CPU)")
    return problems


def check_cluster_section(raw: Any) -> list[str]:
    """Problems with a suite file's ``cluster`` mapping (empty list: fine)."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        return ["'cluster' must be a mapping of gpus_per_trial, cpus_per_trial and max_retries"]
    unknown = sorted(set(raw) - set(_SETTINGS))
    problems = [f"cluster: unknown keys {', '.join(map(str, unknown))} (known: {', '.join(_SETTINGS)})"] if unknown else []
    return problems + [f"cluster: {p}" for p in _check_values({k: v for k, v in raw.items() if k in _SETTINGS})]
