"""The shifts of the world streams: fog thickening, dusk to night, rain, blur, a dirty lens.

:func:`apply_shift` puts one on an image at a strength from 0 (absent) to 1 (full);
:func:`ramp` gives the strength at a position in a stream, for a shift that is absent at
first, sets in at ``onset`` and reaches full strength at ``full`` (fractions of the stream).
Shifts change the pixels only, never the ground truth.  The world streams
(:mod:`mlmp_ros.world.camera_stream`) put them on over time; the world model's evaluation
puts them on still images.
"""

from __future__ import annotations

import cv2
import numpy as np

from .textures import fbm

SHIFTS = ("none", "fog", "night", "rain", "blur", "dirt")


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
