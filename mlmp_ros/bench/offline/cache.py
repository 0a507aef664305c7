"""What a process keeps between trials: the last backbone loaded and the last bag's decoded frames.

One cache for every executor: the local one keeps it for the whole run (methods of a scenario
share the frames, every method shares the backbone, reset to the source weights after each),
and each Ray worker process keeps its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ...core.backbone import LoadedCLIP, load_clip, resolve_device
from ...core.config import Config
from .frames import BenchFrames, load_frames


class TrialCache:
    """The last backbone (by model, weights, cache, offline, device) and the last bag's frames (by path,
    frame limit and the bag files' size and time, so a bag written again is read again)."""

    def __init__(self) -> None:
        self._clip_key: tuple | None = None
        self._clip: LoadedCLIP | None = None
        self._frames_key: tuple | None = None
        self._frames: BenchFrames | None = None

    def loaded_clip(self, config: Config) -> LoadedCLIP:
        key = (config.model, config.weights, config.cache_dir, config.offline, config.device)
        if key != self._clip_key or self._clip is None:
            self._clip, self._clip_key = None, None
            torch.manual_seed(0)  # random test weights are the same in every process
            self._clip = load_clip(
                config.model,
                config.weights,
                cache_dir=config.cache_dir or None,
                offline=config.offline,
                device=resolve_device(config.device),
            )
            self._clip_key = key
        return self._clip

    def frames(self, bag: str | os.PathLike[str], limit: int | None, *, progress: bool = False) -> BenchFrames:
        key = (str(bag), limit, _stamp(bag))
        if key != self._frames_key or self._frames is None:
            self._frames, self._frames_key = None, None
            self._frames = load_frames(bag, limit=limit, progress=progress)
            self._frames_key = key
        return self._frames


def _stamp(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(newest modification time, total size) of a bag's files."""
    files = [p for p in Path(path).rglob("*") if p.is_file()] if os.path.isdir(path) else [Path(path)]
    stats = [f.stat() for f in files]
    return max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats)
