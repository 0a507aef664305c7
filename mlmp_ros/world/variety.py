"""Natural photometric variety for training the world model: light, haze, weather, sensor.

CLIP is robust to fog, snow or noise because its training photographs were taken in
every light and weather, through every kind of camera.  The world renders in one
light, so the training images get that variety here, at strengths a camera meets:

- light: exposure (dark to bright), dusk and night, gamma, a white-balance cast, contrast;
- haze and mist: a whitish airlight over the image, uneven (a smooth density field);
- weather: falling particles (flakes, drops), wet-lens smears;
- the lens and sensor: defocus and motion blur, noise (read noise and shot noise),
  JPEG compression, a low-resolution sensor.

Every function is written here from the physical description; none calls or mirrors
the benchmark's corruption code (``mlmp_ros.bench.data.corruptions``, the ImageNet-C
corruptions) or the world streams' shifts (``mlmp_ros.world.shifts``), and the test
``test/world/test_world_model.py`` keeps it that way.  Images are float32 RGB in [0, 255].
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Image = np.ndarray
Rng = np.random.Generator


def _smooth_field(rng: Rng, h: int, w: int, cells: int) -> np.ndarray:
    """A smooth random field in [0, 1]: a ``cells``-wide random grid, bicubically enlarged."""
    g = rng.random((cells + 1, cells + 1)).astype(np.float32)
    f = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    f -= f.min()
    return f / max(float(f.max()), 1e-6)


def _cloud_field(rng: Rng, h: int, w: int) -> np.ndarray:
    """Patchy, cloud-like density in [0, 1]: smooth fields at four scales, halving in weight."""
    f = np.zeros((h, w), np.float32)
    weight, total = 1.0, 0.0
    for cells in (2, 4, 8, 16):
        f += weight * _smooth_field(rng, h, w, cells)
        total += weight
        weight *= float(rng.uniform(0.5, 0.8))
    f /= total
    f -= f.min()
    return f / max(float(f.max()), 1e-6)


def exposure(x: Image, rng: Rng) -> Image:
    """Under- or over-exposure: a gain from 0.06 to 1.7 (log-uniform) and a gamma from 0.6 to 2.0."""
    gain = float(np.exp(rng.uniform(np.log(0.06), np.log(1.7))))
    gamma = float(np.exp(rng.uniform(np.log(0.6), np.log(2.0))))
    return 255.0 * np.clip(x / 255.0, 0, 1) ** gamma * gain


def low_light(x: Image, rng: Rng) -> Image:
    """Dusk or night: little light (gain 0.04-0.4), a dark gamma, cool or sodium-lamp light, and the
    noise a sensor adds when it amplifies that little light."""
    gain = float(np.exp(rng.uniform(np.log(0.04), np.log(0.4))))
    gamma = float(rng.uniform(1.1, 2.4))
    tint = np.array((0.65, 0.8, 1.0) if rng.random() < 0.7 else (1.0, 0.8, 0.5), np.float32)
    tint = tint * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    y = 255.0 * (np.clip(x / 255.0, 0, 1) ** gamma) * gain * tint
    sigma = float(rng.uniform(2, 20))
    return y + sigma * rng.standard_normal(x.shape).astype(np.float32)


def white_balance(x: Image, rng: Rng) -> Image:
    """A colour cast: each channel's gain from 0.7 to 1.3 (warm, cold, green light)."""
    return x * rng.uniform(0.7, 1.3, 3).astype(np.float32)


def contrast(x: Image, rng: Rng) -> Image:
    """Flat light: the contrast around the mean scaled by 0.03-1 (log-uniform)."""
    k = float(np.exp(rng.uniform(np.log(0.03), 0.0)))
    m = x.mean(axis=(0, 1), keepdims=True)
    return m + (x - m) * k


def haze(x: Image, rng: Rng) -> Image:
    """Airlight: a light, slightly coloured veil whose density varies over the image (even or in patches)."""
    h, w = x.shape[:2]
    density = float(rng.uniform(0.2, 0.95))
    patches = _cloud_field(rng, h, w) if rng.random() < 0.5 else _smooth_field(rng, h, w, int(rng.integers(2, 7)))
    field = 1.0 - float(rng.uniform(0.0, 0.8)) * patches
    tilt = np.linspace(float(rng.uniform(0.6, 1.0)), float(rng.uniform(0.6, 1.0)), h, dtype=np.float32)[:, None]
    t = np.clip(density * field * tilt, 0, 0.95)[..., None]
    air = rng.uniform(160, 250) + rng.uniform(-12, 12, 3)
    return x * (1 - t) + air.astype(np.float32) * t


def particles(x: Image, rng: Rng) -> Image:
    """Falling flakes or drops: bright (or dark) soft dots, some streaked by the exposure time; snow
    light (a whitened scene) with them half the time."""
    h, w = x.shape[:2]
    if rng.random() < 0.5:
        x = x * (1 - (k := float(rng.uniform(0.1, 0.45)))) + float(rng.uniform(170, 235)) * k
    layer = np.zeros((h, w), np.float32)
    count = int(np.exp(rng.uniform(np.log(0.002), np.log(0.08))) * h * w)
    ys, xs = rng.integers(0, h, count), rng.integers(0, w, count)
    layer[ys, xs] = rng.uniform(0.5, 1.0, count).astype(np.float32)
    size = float(rng.uniform(0.6, 3.0))
    layer = cv2.GaussianBlur(layer, (0, 0), size) * (2.0 * np.pi * size * size) ** 0.5
    if rng.random() < 0.5:  # streaks: the particles moved while the shutter was open
        length = int(rng.integers(3, 12))
        k = np.zeros((length, length), np.float32)
        angle = float(rng.uniform(-0.5, 0.5))
        c = (length - 1) / 2
        cv2.line(k, (round(c - c * np.sin(angle)), 0), (round(c + c * np.sin(angle)), length - 1), 1.0, 1)
        layer = cv2.filter2D(layer, -1, k / k.sum())
    layer = np.clip(layer, 0, 1)[..., None]
    tone = float(rng.uniform(200, 255)) if rng.random() < 0.8 else float(rng.uniform(20, 80))
    return x * (1 - layer) + tone * layer


def smear(x: Image, rng: Rng) -> Image:
    """A wet or greasy lens: parts of the image blurred and lightened, with soft edges."""
    h, w = x.shape[:2]
    mask = np.clip((_smooth_field(rng, h, w, int(rng.integers(2, 6))) - rng.uniform(0.3, 0.7)) * 3.0, 0, 1)
    blurred = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(2, 6))) * 0.85 + 255 * 0.15
    m = (mask * rng.uniform(0.5, 1.0))[..., None]
    return x * (1 - m) + blurred * m


def defocus(x: Image, rng: Rng) -> Image:
    """An out-of-focus lens: a disc-shaped blur of radius 1-5 pixels at 160 px."""
    r = float(rng.uniform(1.0, 5.0))
    n = int(np.ceil(r)) * 2 + 1
    yy, xx = np.mgrid[:n, :n] - n // 2
    k = ((xx * xx + yy * yy) <= r * r).astype(np.float32)
    return cv2.filter2D(x, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)


def shake(x: Image, rng: Rng) -> Image:
    """Camera motion during the exposure: a line blur of 3-17 pixels in any direction."""
    length = int(rng.integers(3, 18))
    k = np.zeros((length, length), np.float32)
    a = float(rng.uniform(0, np.pi))
    c = (length - 1) / 2
    dx, dy = c * np.cos(a), c * np.sin(a)
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    return cv2.filter2D(x, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)


def sensor_noise(x: Image, rng: Rng) -> Image:
    """Read noise plus shot noise (variance growing with the signal), some of it coloured."""
    read = float(rng.uniform(2, 30))
    shot = float(rng.uniform(0.0, 2.5))
    sigma = np.sqrt(read * read + shot * shot * np.clip(x, 0, 255))
    grey = rng.standard_normal(x.shape[:2]).astype(np.float32)[..., None]
    colour = rng.standard_normal(x.shape).astype(np.float32)
    mix = float(rng.uniform(0, 1))
    return x + sigma * (mix * grey + (1 - mix) * colour)


def dead_pixels(x: Image, rng: Rng) -> Image:
    """Hot and dead pixels, a few per thousand."""
    out = x.copy()
    h, w = x.shape[:2]
    count = int(rng.uniform(0.001, 0.02) * h * w)
    ys, xs = rng.integers(0, h, count), rng.integers(0, w, count)
    out[ys, xs] = rng.choice(np.array([0.0, 255.0], np.float32), (count, 1))
    return out


def compression(x: Image, rng: Rng) -> Image:
    """A JPEG at quality 8-60, decoded again."""
    q = int(rng.integers(8, 61))
    ok, buf = cv2.imencode(".jpg", np.clip(x + 0.5, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).astype(np.float32) if ok else x


def low_resolution(x: Image, rng: Rng) -> Image:
    """A coarser sensor or a digital zoom: down by 2-6x, up again (nearest or linear)."""
    h, w = x.shape[:2]
    f = float(rng.uniform(2, 6))
    small = cv2.resize(x, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    interp = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(small, (w, h), interpolation=interp)


VARIETY: dict[str, Callable[[Image, Rng], Image]] = {
    "exposure": exposure,
    "low_light": low_light,
    "white_balance": white_balance,
    "contrast": contrast,
    "haze": haze,
    "particles": particles,
    "smear": smear,
    "defocus": defocus,
    "shake": shake,
    "sensor_noise": sensor_noise,
    "dead_pixels": dead_pixels,
    "compression": compression,
    "low_resolution": low_resolution,
}
# How often each kind is drawn, relative to the others: the light and the weather vary most
# between two photographs of the same place.
WEIGHTS = {"exposure": 1.5, "low_light": 1.5, "contrast": 2.5, "haze": 2.0, "particles": 1.5}
# How many of them one training image gets, and how often (15% stay as rendered).
COUNT_P = (0.15, 0.3, 0.3, 0.25)  # 0, 1, 2, 3


def vary(image: np.ndarray, rng: Rng, count: int | None = None) -> np.ndarray:
    """``image`` (uint8 RGB) under ``count`` kinds of variety drawn at random (drawn too if None)."""
    if count is None:
        count = int(rng.choice(len(COUNT_P), p=COUNT_P))
    if count == 0:
        return image
    names = list(VARIETY)
    p = np.array([WEIGHTS.get(n, 1.0) for n in names])
    x = image.astype(np.float32)
    for i in rng.choice(len(names), size=count, replace=False, p=p / p.sum()):
        x = np.clip(VARIETY[names[int(i)]](x, rng), 0, 255)
    return (x + 0.5).astype(np.uint8)


__all__ = ["COUNT_P", "VARIETY", "WEIGHTS", "vary"]
