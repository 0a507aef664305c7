"""Camera streams through the world, with shifts that set in over time.

A stream renders one wide outdoor panorama (with ground truth) from its seed, then
moves a camera across it: each frame is a window that pans sideways and zooms in and
out (walking forward and back), resized to the output size, so consecutive frames
overlap as a robot's do.  A shift (fog thickening, dusk to night, rain, blur, a dirty
lens) is absent at first, sets in at ``onset`` and reaches full strength at ``full``
(fractions of the stream).  The ground truth is the panorama's, cropped the same way;
shifts never change it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .scenes import render_scene
from .textures import fbm

SHIFTS = ("none", "fog", "night", "rain", "blur", "dirt")


@dataclass
class Frame:
    index: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    labels: np.ndarray  # (H, W) uint8
    severity: float  # strength of the shift in this frame, 0..1


def ramp(t: float, onset: float, full: float) -> float:
    """Shift strength at stream position ``t`` (0..1): 0 before ``onset``, 1 after ``full``."""
    if full <= onset:
        return float(t >= onset)
    return float(np.clip((t - onset) / (full - onset), 0.0, 1.0))


def _fog(img: np.ndarray, s: float, rng: np.random.Generator, state: dict) -> np.ndarray:
    h, w = img.shape[:2]
    if "fog" not in state or state["fog"].shape != (h, w):
        y = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None]  # top of the frame is far away
        state["fog"] = np.clip(0.55 + 0.45 * y + 0.15 * (fbm(rng, h, w, w / 4, 2) - 0.5), 0, 1)
    a = (s * 0.75 * state["fog"])[..., None]  # thick fog still shows what is near
    colour = np.array((205, 210, 215), np.float32)
    return img.astype(np.float32) * (1 - a) + colour * a


def _night(img: np.ndarray, s: float, rng: np.random.Generator, state: dict) -> np.ndarray:
    x = img.astype(np.float32) / 255.0
    dusk = min(1.0, s * 2.0)  # warm light first, then dark and blue
    night = max(0.0, s * 2.0 - 1.0)
    tint = np.array((1.0, 1.0 - 0.15 * dusk, 1.0 - 0.35 * dusk), np.float32) * (1 - night) + np.array(
        (0.6, 0.75, 1.0), np.float32
    ) * night
    x = (x ** (1.0 + 1.2 * s)) * (1.0 - 0.85 * s) * tint
    sigma = (2.0 + 14.0 * s) / 255.0
    x = x + rng.normal(0, sigma, x.shape).astype(np.float32)
    return x * 255.0


def _rain(img: np.ndarray, s: float, rng: np.random.Generator, state: dict) -> np.ndarray:
    h, w = img.shape[:2]
    x = img.astype(np.float32)
    x = cv2.GaussianBlur(x, (0, 0), 0.3 + 1.2 * s)
    x = x * (1 - 0.3 * s) + 110 * 0.3 * s  # grey, flat light
    streaks = np.zeros((h, w), np.float32)
    n = int(s * 0.004 * h * w)
    length = max(4, int(0.05 * h))
    if n:
        seeds = (rng.random((h, w), dtype=np.float32) < n / (h * w)).astype(np.float32)
        k = np.zeros((length, length), np.float32)
        cv2.line(k, (length // 3, 0), (length // 2, length - 1), 1.0, 1)
        streaks = cv2.filter2D(seeds, -1, k / max(k.sum(), 1) * length)
    return x + np.clip(streaks, 0, 1)[..., None] * 90.0


def _blur(img: np.ndarray, s: float, rng: np.random.Generator, state: dict) -> np.ndarray:
    if s <= 0:
        return img.astype(np.float32)
    h = img.shape[0]
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.2 + 0.012 * h * s)


def _dirt(img: np.ndarray, s: float, rng: np.random.Generator, state: dict) -> np.ndarray:
    h, w = img.shape[:2]
    if "dirt" not in state or state["dirt"].shape != (h, w):
        blobs = fbm(rng, h, w, w / 6, 3)
        m = np.clip((blobs - 0.5) * 4.0, 0, 1)
        state["dirt"] = cv2.GaussianBlur(m, (0, 0), w / 80)
    m = (state["dirt"] * s)[..., None]
    x = img.astype(np.float32)
    blurred = cv2.GaussianBlur(x, (0, 0), 2 + w / 100)
    colour = np.array((95, 80, 60), np.float32)
    return x * (1 - m) + (blurred * 0.4 + colour * 0.6) * m


_SHIFT_FN = {"fog": _fog, "night": _night, "rain": _rain, "blur": _blur, "dirt": _dirt}


def apply_shift(
    image: np.ndarray, shift: str, severity: float, rng: np.random.Generator, state: dict | None = None
) -> np.ndarray:
    """``image`` (uint8 RGB) under ``shift`` at ``severity`` (0..1); ``state`` keeps fixed patterns."""
    if shift not in SHIFTS:
        raise ValueError(f"unknown shift '{shift}' (known: {', '.join(SHIFTS)})")
    if shift == "none" or severity <= 0:
        return image
    out = _SHIFT_FN[shift](image, float(severity), rng, state if state is not None else {})
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


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

    def frame(self, i: int, state: dict | None = None) -> Frame:
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
        return Frame(i, image, labels, s)

    def __iter__(self) -> Iterator[Frame]:
        state: dict = {}
        for i in range(self.n_frames):
            yield self.frame(i, state)
