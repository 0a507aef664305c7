"""Each frame's per-class intersection and union, as a trial record stores them (``unit_areas``).

The report's bootstrap intervals (:mod:`mlmp_ros.bench.report.uncertainty`) resample these units.
Stored sparse: a frame holds few of a data set's classes, so only the (frame, class) pairs with a
union are written.  Imports numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

UNIT_AREAS_FORMAT = "sparse/1"


def encode_unit_areas(intersection: np.ndarray, union: np.ndarray) -> dict[str, Any]:
    """Per-unit per-class areas ``[units, classes]`` as JSON: only the (unit, class) pairs with a union
    (a frame holds few of a data set's classes), as ``[unit, class, intersection, union]`` entries."""
    units, classes = np.nonzero(union)
    entries = np.stack([units, classes, intersection[units, classes], union[units, classes]], 1)
    return {"format": UNIT_AREAS_FORMAT, "units": int(union.shape[0]), "classes": int(union.shape[1]),
            "entries": entries.astype(np.int64).tolist()}  # fmt: skip


def decode_unit_areas(data: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(intersection, union) ``[units, classes]`` of :func:`encode_unit_areas`; None for anything else."""
    if not isinstance(data, dict) or data.get("format") != UNIT_AREAS_FORMAT:
        return None
    intersection = np.zeros((int(data["units"]), int(data["classes"])), dtype=np.float64)
    union = np.zeros_like(intersection)
    entries = np.asarray(data["entries"], dtype=np.int64).reshape(-1, 4)
    intersection[entries[:, 0], entries[:, 1]] = entries[:, 2]
    union[entries[:, 0], entries[:, 1]] = entries[:, 3]
    return intersection, union
