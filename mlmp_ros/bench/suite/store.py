"""The results store: one JSON line per trial, appended durably, and the key a trial resumes by.

A line is a :class:`~mlmp_ros.bench.suite.records.TrialRecord` (see there for its fields and
the schema versions read); records are read and written as that dataclass.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...core.config import Config
from ..offline.options import RunOptions
from .records import RESULT_NEUTRAL, RecordError, TrialRecord

STORE_NAME = "results.jsonl"


class StoreError(ValueError):
    """A results store cannot be read or written."""


class ResultStore:
    """Append-only JSON lines, one record per trial, durable after every append.

    A last line without its newline is what a killed writer leaves; it is ignored
    when reading and cut off before the next append.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path).expanduser()
        if path.is_dir() or not path.suffix:
            path = path / STORE_NAME
        self.path = path
        self._checked = False

    @property
    def folder(self) -> Path:
        return self.path.parent

    def read(self) -> list[TrialRecord]:
        """Every complete record, in the order written."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StoreError(f"cannot read the results store {self.path}: {err}") from err
        lines = data.split(b"\n")
        records = []
        for number, line in enumerate(lines[:-1], 1):  # lines[-1] is empty or torn
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise StoreError(
                    f"{self.path}:{number} is not a JSON record ({err.msg}); the store was edited or written by "
                    "two runs at once: remove that line to go on"
                ) from None
            try:
                records.append(TrialRecord.from_json(record))  # older schemas read as the current one
            except RecordError as err:
                raise StoreError(f"{self.path}:{number} is not an mlmp-bench result: {err}") from None
        return records

    def _cut_torn_tail(self) -> None:
        try:
            with open(self.path, "rb+") as fh:
                data = fh.read()
                if data and not data.endswith(b"\n"):
                    fh.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass

    def append(self, record: TrialRecord) -> None:
        """Write one record (in the current schema) and make it durable before returning."""
        line = json.dumps(record.to_json(), sort_keys=True, allow_nan=True, default=json_default) + "\n"
        try:
            if not self._checked:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._cut_torn_tail()
                self._checked = True
            with open(self.path, "ab") as fh:
                fh.write(line.encode())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise StoreError(f"cannot write the results store {self.path}: {err}") from err


def json_default(value: Any) -> Any:
    """``json.dumps`` ``default`` for NumPy values and arrays and paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a result record")


def trial_key(dataset: str, corruption: str, method: str, backbone: str, config_hash: str, trial: int, seed: int) -> str:
    """The identity of one trial's result (the resume key)."""
    return f"{dataset}|{corruption}|{method}|{backbone}|{config_hash}|trial{trial}|seed{seed}"


def config_hash(config: Config, options: RunOptions, frames_info: Mapping[str, Any]) -> str:
    """A short hash of everything that decides a trial's numbers except its seed."""
    flat = {k: v for k, v in config.flat().items() if k not in RESULT_NEUTRAL}
    ids = frames_info.get("image_ids") or []
    payload = {
        "config": flat,
        "batch_size": options.batch_size,
        "shuffle": options.shuffle,
        "data": {
            key: frames_info.get(key)
            for key in ("dataset", "split", "corruption", "severity", "channel_order", "class_key", "ignore_index")
        },
        "frames": frames_info.get("frames"),
        # only when set, so clean images keep the hashes of earlier versions
        **({"corruption_draws": frames_info["corruption_draws"]} if frames_info.get("corruption_draws") else {}),
        "image_ids": hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
