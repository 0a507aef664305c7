"""The trial record: one line of a results store, as a typed dataclass with a versioned JSON form.

``TrialRecord.from_json`` reads every schema version written so far and
``to_json`` writes the current one, so old stores keep working:

* ``mlmp-bench-result/1`` — the first form.  It did not record how the images were made
  (severity, channel order, corruption draws and library), the split's size or the
  protocol sizes; those fields read as ``None``.  Its corrupted images were drawn by
  the pip library (frost from 6 textures), so ``corruption_draws`` is ``None`` — "not
  the reference's draws" — and reports show such rows apart.
* ``mlmp-bench-result/2`` — adds those fields and the effective ``config`` to every
  record, finished or not.  Later version-2 records add ``unit_areas``: each frame's per-class
  intersection and union (pixels, in bag order), from which reports draw bootstrap intervals over
  scenes (frames, for streams); records without them read as ``None`` ("interval unavailable").

Fields the dataclass does not know are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA = "mlmp-bench-result/2"
SCHEMAS_READ = ("mlmp-bench-result/1", SCHEMA)
DONE = "done"
NOT_RUN = "not run"
SKIPPED_PREFIX = "skipped by the suite: "  # reason of trials a suite file skips on purpose

# Core settings that never change a number: where and how fast a trial runs, not what it computes.
# They are left out of the config hash (a trial's resume key), out of a report column's identity
# and out of the comparison with the paper's settings.  ``compile`` is one of them: torch.compile
# runs the same computation (the store always left it out of the hash; the paper comparison, which
# kept its own copy of this list, did not, so a compiled run was never compared).
RESULT_NEUTRAL = frozenset({"device", "cache_dir", "offline", "flush_denormal", "compile"})


class RecordError(ValueError):
    """A store line is not a trial record this version can read."""


@dataclass
class TrialRecord:
    """One trial of one method on one scenario: its identity, every setting, and its results."""

    # identity and outcome
    key: str
    status: str  # "done" or "not run"
    reason: str | None = None
    # the scenario
    dataset: str | None = None
    base_dataset: str | None = None
    condition: str | None = None
    corruption: str | None = None
    bag: str | None = None
    # how the images were made (from the bag's description)
    severity: int | None = None
    channel_order: str | None = None
    corruption_draws: str | None = None
    corruption_library: str | None = None
    presized: bool | None = None
    split_size: int | None = None
    frame_count: int | None = None
    # the method and its settings
    method: str | None = None
    backbone: str | None = None
    weights: str | None = None
    attention: str | None = None
    precision: str | None = None
    mode: str | None = None
    steps: int | None = None
    lr: float | None = None
    resize: list[int] | None = None
    window: list[int] | None = None
    stride: list[int] | None = None
    batch_size: int | None = None
    shuffle: bool | None = None
    limit: int | None = None
    trial: int | None = None
    seed: int | None = None
    config_hash: str | None = None
    config: dict[str, Any] | None = None
    # results (finished trials)
    frames: int | None = None
    batches: int | None = None
    metrics: dict[str, Any] | None = None
    metrics_state: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    loss_per_step: list[float | None] | None = None
    layer_weights: dict[str, Any] | None = None
    adaptation_status: dict[str, int] | None = None
    notes: dict[str, Any] | None = None
    trainable_parameters: int | None = None
    unit_areas: dict[str, Any] | None = None  # per-frame per-class intersection and union, bag order (None: older)
    class_names: list[str] | None = None
    examples: str | None = None
    random_weights: bool | None = None
    device: str | None = None
    # when and where
    started: str | None = None
    finished: str | None = None
    wall_s: float | None = None
    versions: dict[str, str] | None = None
    host: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        """A record from its JSON object, of any schema version in :data:`SCHEMAS_READ`."""
        if not isinstance(data, Mapping):
            raise RecordError(f"a trial record is a JSON object, not {type(data).__name__}")
        schema = data.get("schema")
        if schema not in SCHEMAS_READ:
            raise RecordError(
                f"unknown record schema {schema!r} (this version reads {', '.join(SCHEMAS_READ)}); "
                "it was written by another mlmp_ros version"
            )
        for required in ("key", "status"):
            if not isinstance(data.get(required), str):
                raise RecordError(f"a trial record needs a string '{required}'")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "schema"}
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k not in ("schema", "extra")}
        extra.update(data.get("extra") or {})
        return cls(**values, extra=extra)

    def to_json(self) -> dict[str, Any]:
        """The current JSON form (schema :data:`SCHEMA`): every field, then ``extra`` merged in."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("extra", "schema")}
        out.update(self.extra)
        out["schema"] = SCHEMA
        return out

    @property
    def done(self) -> bool:
        return self.status == DONE
