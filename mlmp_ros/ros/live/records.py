"""What a live session records: outputs as received, diagnostics, and per-frame records with the play's summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Output:
    """One output message as received."""

    stamp_ns: int
    frame_id: str
    encoding: str
    width: int
    height: int
    received: float  # time.monotonic()
    received_wall: float  # time.time()
    array: np.ndarray | None = None
    serialized: bytes | None = None


@dataclass
class Diagnostics:
    level: int
    message: str
    values: dict[str, str]
    received: float  # time.monotonic()


@dataclass
class FrameRecord:
    index: int
    stamp_ns: int  # header stamp sent (outputs carry it)
    source_stamp_ns: int  # stamp given with the frame
    published: float  # time.monotonic()
    labels: Output | None = None
    confidence: Output | None = None

    @property
    def latency(self) -> float | None:
        """Seconds from publishing the frame to receiving its labels."""
        return None if self.labels is None else self.labels.received - self.published


def _rate(times: Sequence[float]) -> float | None:
    """Events per second over sorted event times (None for fewer than two distinct times)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


@dataclass
class PlayResult:
    frames: list[FrameRecord]
    started: float
    finished: float
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)
    diagnostics: Diagnostics | None = None

    @property
    def published(self) -> int:
        return len(self.frames)

    @property
    def processed(self) -> int:
        return sum(f.labels is not None for f in self.frames)

    @property
    def dropped(self) -> int:
        return self.published - self.processed

    @property
    def latencies(self) -> list[float]:
        return [f.latency for f in self.frames if f.latency is not None]

    @property
    def input_rate_hz(self) -> float | None:
        return _rate([f.published for f in self.frames])

    @property
    def output_rate_hz(self) -> float | None:
        return _rate(sorted(f.labels.received for f in self.frames if f.labels is not None))

    def summary(self) -> dict[str, Any]:
        """Plain numbers (JSON-ready)."""
        lat = self.latencies
        return {
            "frames_published": self.published,
            "frames_processed": self.processed,
            "frames_dropped": self.dropped,
            "input_rate_hz": self.input_rate_hz,
            "output_rate_hz": self.output_rate_hz,
            "latency_median_ms": None if not lat else _percentile(lat, 50) * 1e3,
            "latency_p95_ms": None if not lat else _percentile(lat, 95) * 1e3,
            "duration_s": self.finished - self.started,
            "rss_mb": [(round(t, 2), round(b / 2**20, 1)) for t, b in self.rss],
        }
