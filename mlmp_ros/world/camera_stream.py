"""Camera streams through the world (:class:`WorldStream`), with a shift that sets in over time.

A stream renders one wide outdoor panorama (with ground truth) from its seed, then
moves a camera across it: each frame is a window that pans sideways and zooms in and
out (walking forward and back), resized to the output size, so consecutive frames
overlap as a robot's do.  A shift (:mod:`mlmp_ros.world.shifts`: fog thickening, dusk to
night, rain, blur, a dirty lens) is absent at first, sets in at ``onset`` and reaches full
strength at ``full`` (fractions of the stream).  The ground truth is the panorama's,
cropped the same way; shifts never change it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .scenes import render_scene
from .shifts import SHIFTS, apply_shift, ramp


@dataclass
class WorldFrame:
    """One rendered frame of a :class:`WorldStream`, with its ground truth and the shift's strength."""

    index: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    labels: np.ndarray  # (H, W) uint8
    severity: float  # strength of the shift in this frame, 0..1


class WorldStream:
    """``n_frames`` frames of a camera moving through a seeded world (see module docs)."""

    def __init__(
        self,
        seed: int,
        n_frames: int = 60,
        *,
        height: int = 480,
        width: int = 640,
        shift: str = "none",
        onset: float = 0.2,
        full: float = 0.9,
        pan: float = 0.04,
    ):
        if shift not in SHIFTS:
            raise ValueError(f"unknown shift '{shift}' (known: {', '.join(SHIFTS)})")
        if n_frames < 1:
            raise ValueError(f"a stream needs at least one frame, got {n_frames}")
        if height < 16 or width < 16:
            raise ValueError(f"frame size {width}x{height} is too small (at least 16x16)")
        self.seed, self.n_frames, self.height, self.width = int(seed), int(n_frames), int(height), int(width)
        self.shift, self.onset, self.full, self.pan = shift, float(onset), float(full), float(pan)
        # The panorama: 1.25 frames high, wide enough for the pan (it turns back when longer).
        self._ph = round(height * 1.25)
        travel = min(n_frames, 40) * pan
        self._pw = round(width * 1.25 * (1.0 + travel))
        scene = render_scene(self.seed, self._ph, self._pw, layout="outdoor")
        self.panorama, self.panorama_labels = scene.image, scene.labels

    def __len__(self) -> int:
        return self.n_frames

    def camera(self, i: int) -> tuple[int, int, int, int]:
        """(y0, x0, crop height, crop width) of frame ``i`` in the panorama."""
        phase = i / 40.0  # one sweep every 40 frames, back and forth
        sweep = 1.0 - abs((phase % 2.0) - 1.0)  # 0 -> 1 -> 0
        zoom = 0.8 + 0.2 * (0.5 + 0.5 * np.cos(2 * np.pi * i / 25.0))  # 0.8 .. 1.0 of the widest view
        ch = round(self._ph * 0.8 * zoom)
        cw = round(ch * self.width / self.height)
        cw = min(cw, self._pw)
        x0 = round(sweep * (self._pw - cw))
        y_centre = self._ph * (0.45 + 0.03 * np.sin(2 * np.pi * i / 13.0))
        y0 = int(np.clip(round(y_centre - ch / 2), 0, self._ph - ch))
        return y0, x0, ch, cw

    def severity(self, i: int) -> float:
        if self.shift == "none":
            return 0.0
        return ramp(i / max(self.n_frames - 1, 1), self.onset, self.full)

    def frame(self, i: int, state: dict | None = None) -> WorldFrame:
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} is out of range for a stream of {self.n_frames}")
        y0, x0, ch, cw = self.camera(i)
        crop = self.panorama[y0 : y0 + ch, x0 : x0 + cw]
        lab = self.panorama_labels[y0 : y0 + ch, x0 : x0 + cw]
        size = (self.width, self.height)
        image = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if cw > self.width else cv2.INTER_LINEAR)
        labels = cv2.resize(lab, size, interpolation=cv2.INTER_NEAREST)
        s = self.severity(i)
        if state is None:
            state = {}
        fixed = np.random.default_rng([self.seed, 7])  # fixed patterns (dirt, fog field) per stream
        if self.shift in ("fog", "dirt") and self.shift not in state:
            apply_shift(image, self.shift, 1.0, fixed, state)  # builds the pattern once
        image = apply_shift(image, self.shift, s, np.random.default_rng([self.seed, 11, i]), state)
        return WorldFrame(i, image, labels, s)

    def __iter__(self) -> Iterator[WorldFrame]:
        state: dict = {}
        for i in range(self.n_frames):
            yield self.frame(i, state)
