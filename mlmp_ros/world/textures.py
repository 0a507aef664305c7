"""Procedural material textures of the world, vectorised with numpy and OpenCV.

Every texture is a float32 RGB array in [0, 1] of any size, drawn from a seeded
``numpy.random.Generator``.  ``scale`` stretches the pattern (1.0: the size a material
has about 3 m from a 640x480 camera); scenes pass smaller scales for far surfaces.
"""

from __future__ import annotations

import cv2
import numpy as np

# Class index = position in this tuple.  Names are what the text encoder reads.
CLASSES: tuple[str, ...] = (
    "sky",
    "grass",
    "road",
    "water",
    "brick wall",
    "sand",
    "snow",
    "wood",
    "gravel",
    "foliage",
    "rock",
)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

# Display colours (RGB) for overlays and legends.
PALETTE = np.array(
    [
        (120, 170, 235),  # sky
        (60, 160, 60),  # grass
        (90, 90, 100),  # road
        (30, 80, 200),  # water
        (180, 60, 40),  # brick wall
        (225, 200, 130),  # sand
        (245, 245, 250),  # snow
        (140, 90, 40),  # wood
        (160, 150, 130),  # gravel
        (20, 100, 40),  # foliage
        (110, 100, 95),  # rock
    ],
    dtype=np.uint8,
)


def noise(rng: np.random.Generator, h: int, w: int, cell: float, interp: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Value noise in about [0, 1]: a random grid every ``cell`` pixels, interpolated."""
    cell = max(float(cell), 1.0)
    gh, gw = int(h / cell) + 3, int(w / cell) + 3
    grid = rng.random((gh, gw), dtype=np.float32)
    if cell <= 1.0:
        return grid[:h, :w]
    big = cv2.resize(grid, (round(gw * cell), round(gh * cell)), interpolation=interp)
    oy, ox = int(rng.integers(0, max(1, int(cell)))), int(rng.integers(0, max(1, int(cell))))
    return big[oy : oy + h, ox : ox + w]


def fbm(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Sum of noise octaves (halving cell, halving amplitude), normalised to about [0, 1]."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        out += amp * noise(rng, h, w, cell)
        total += amp
        amp *= 0.5
        cell = max(cell / 2.0, 1.0)
    return out / total


def _jitter(rng: np.random.Generator, rgb, amount: float = 0.06) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, amount, 3).astype(np.float32), 0, 1)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and b.ndim == 3 and a.strides[:2] == (0, 0) and b.strides[:2] == (0, 0):
        a, b = a[0, 0], b[0, 0]  # two plain colours: the same sums on 3 values instead of H*W*3
    return a + (b - a) * t[..., None]


def _colour(base: np.ndarray, shade: np.ndarray) -> np.ndarray:
    return base[None, None, :] * shade[..., None]


def sky(rng, h, w, scale=1.0, top_frac=0.0):
    zenith = _jitter(rng, (0.25, 0.45, 0.85), 0.05)
    horizon = _jitter(rng, (0.70, 0.80, 0.95), 0.04)
    y = np.linspace(top_frac, 1.0, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    img = _mix(zenith[None, None], horizon[None, None], y)
    cover = rng.uniform(0.0, 0.8)
    clouds = fbm(rng, h, w, 90 * scale, 4)
    c = np.clip((clouds - (1.0 - cover * 0.6)) * 4.0, 0, 1)
    cloud_col = _jitter(rng, (0.95, 0.95, 0.97), 0.02)
    return _mix(img, np.broadcast_to(cloud_col, img.shape), c * 0.9)


def grass(rng, h, w, scale=1.0):
    base = _jitter(rng, (0.25, 0.52, 0.15), 0.05)
    fine = noise(rng, h, w, 1.0 + 1.5 * scale)
    blades = cv2.blur(fine, (1, max(3, int(7 * scale)) | 1))
    patches = fbm(rng, h, w, 60 * scale, 3)
    shade = 0.55 + 0.6 * blades * (0.7 + 0.6 * patches)
    img = _colour(base, shade)
    dry = _jitter(rng, (0.55, 0.55, 0.20), 0.04)
    t = np.clip((patches - 0.6) * 2.5, 0, 0.6)
    return _mix(img, _colour(dry, shade), t)


def road(rng, h, w, scale=1.0):
    g = rng.uniform(0.22, 0.36)
    base = _jitter(rng, (g, g, g * 1.06), 0.015)
    grain = noise(rng, h, w, 1.0 + scale)
    blotch = fbm(rng, h, w, 50 * scale, 3)
    shade = 0.8 + 0.35 * grain + 0.25 * (blotch - 0.5)
    return _colour(base, shade)


def water(rng, h, w, scale=1.0):
    deep = _jitter(rng, (0.05, 0.25, 0.45), 0.04)
    light = _jitter(rng, (0.35, 0.60, 0.75), 0.04)
    y = np.arange(h, dtype=np.float32)[:, None]
    warp = fbm(rng, h, w, 40 * scale, 2) * 6.0
    freq = rng.uniform(0.35, 0.7) / max(scale, 0.2)
    ripples = 0.5 + 0.5 * np.sin(y * freq + warp * 2.5)
    ripples = cv2.blur(ripples, (max(3, int(15 * scale)) | 1, 1))
    img = _mix(np.broadcast_to(deep, (h, w, 3)), np.broadcast_to(light, (h, w, 3)), ripples * 0.7)
    glint = (noise(rng, h, w, 1.0 + scale) > 0.985).astype(np.float32) * ripples
    return np.clip(img + glint[..., None] * 0.5, 0, 1)


def brick_wall(rng, h, w, scale=1.0):
    bw = max(6, int(rng.uniform(40, 60) * scale))
    bh = max(3, int(bw * rng.uniform(0.35, 0.45)))
    mortar = max(1, round(bh * 0.15))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.int32)
    row = yy // bh
    xs = xx + (row % 2) * (bw // 2)
    col = xs // bw
    brick_id = (row * 7919 + col * 104729) % 1021
    tone = rng.random(1021, dtype=np.float32)[brick_id]
    base = _jitter(rng, (0.62, 0.25, 0.16), 0.05)
    dark = base * 0.6
    img = _mix(np.broadcast_to(dark, (h, w, 3)), np.broadcast_to(base, (h, w, 3)), tone)
    grain = noise(rng, h, w, 1.0 + scale)
    img = img * (0.85 + 0.3 * grain[..., None])
    is_mortar = ((yy % bh) < mortar) | ((xs % bw) < mortar)
    mcol = _jitter(rng, (0.72, 0.70, 0.64), 0.04)
    img[is_mortar] = mcol * (0.85 + 0.2 * grain[is_mortar, None])
    return img


def sand(rng, h, w, scale=1.0):
    base = _jitter(rng, (0.82, 0.70, 0.48), 0.04)
    grain = noise(rng, h, w, 1.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    warp = fbm(rng, h, w, 50 * scale, 2) * 8
    ripple = 0.5 + 0.5 * np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * (0.25 / max(scale, 0.2)) + warp)
    shade = 0.82 + 0.12 * ripple + 0.12 * grain
    return _colour(base, shade)


def snow(rng, h, w, scale=1.0):
    base = _jitter(rng, (0.90, 0.93, 0.98), 0.02)
    drift = fbm(rng, h, w, 70 * scale, 3)
    shade = 0.82 + 0.2 * drift
    img = _colour(base, shade)
    blue = np.array([0.75, 0.82, 0.95], np.float32)
    img = _mix(img, np.broadcast_to(blue * shade[..., None], img.shape), np.clip(0.5 - drift, 0, 0.5))
    sparkle = (noise(rng, h, w, 1.0) > 0.99).astype(np.float32)
    return np.clip(img + sparkle[..., None] * 0.15, 0, 1)


def wood(rng, h, w, scale=1.0, vertical: bool | None = None):
    if vertical is None:
        vertical = bool(rng.random() < 0.5)
    if not vertical:
        return np.ascontiguousarray(wood(rng, w, h, scale, True).transpose(1, 0, 2))
    pw = max(4, int(rng.uniform(25, 45) * scale))
    xx = np.arange(w, dtype=np.float32)[None, :] * np.ones((h, 1), np.float32)
    plank = (xx // pw).astype(np.int32)
    tone = rng.uniform(0.75, 1.15, 4096).astype(np.float32)[plank % 4096]
    base = _jitter(rng, (0.55, 0.35, 0.18), 0.05)
    stretched = cv2.resize(noise(rng, max(2, h // 12 + 2), w, 1.0), (w, h), interpolation=cv2.INTER_LINEAR)
    grain = 0.5 + 0.5 * np.sin(xx * (1.3 / max(scale, 0.2)) + stretched * 6.0)
    shade = tone * (0.7 + 0.35 * grain)
    img = _colour(base, shade)
    gap = (xx % pw) < max(1, pw // 12)
    img[gap] *= 0.35
    return img


def gravel(rng, h, w, scale=1.0):
    cell = max(1.0, 4.0 * scale)
    stones = noise(rng, h, w, cell, cv2.INTER_NEAREST)
    stones = cv2.GaussianBlur(stones, (0, 0), max(0.5, cell * 0.3))
    colours = np.stack([_jitter(rng, c, 0.03) for c in ((0.62, 0.58, 0.52), (0.45, 0.42, 0.40), (0.72, 0.66, 0.55))])
    idx = np.minimum((noise(rng, h, w, cell, cv2.INTER_NEAREST) * 3).astype(np.int32), 2)
    img = colours[idx]
    shade = 0.6 + 0.7 * stones
    return img * shade[..., None]


def foliage(rng, h, w, scale=1.0):
    leaves = fbm(rng, h, w, 8 * scale, 2)
    big = fbm(rng, h, w, 50 * scale, 2)
    light = _jitter(rng, (0.25, 0.50, 0.15), 0.05)
    dark = _jitter(rng, (0.04, 0.15, 0.05), 0.02)
    t = np.clip((leaves - 0.45) * 3.0 + (big - 0.5), 0, 1)
    img = _mix(np.broadcast_to(dark, (h, w, 3)), np.broadcast_to(light, (h, w, 3)), t)
    yellow = _jitter(rng, (0.45, 0.55, 0.12), 0.04)
    return _mix(img, np.broadcast_to(yellow, img.shape), np.clip((big - 0.7) * 2.0, 0, 0.5) * t)


def rock(rng, h, w, scale=1.0):
    base = _jitter(rng, (0.48, 0.45, 0.42), 0.05)
    f = fbm(rng, h, w, 60 * scale, 4)
    ridges = np.abs(fbm(rng, h, w, 35 * scale, 3) - 0.5)
    cracks = np.clip(1.0 - ridges * 12.0, 0, 1)
    grain = noise(rng, h, w, 1.0 + scale)
    shade = 0.6 + 0.55 * f + 0.1 * grain - 0.45 * cracks
    return _colour(base, shade)


GENERATORS = {
    "sky": sky,
    "grass": grass,
    "road": road,
    "water": water,
    "brick wall": brick_wall,
    "sand": sand,
    "snow": snow,
    "wood": wood,
    "gravel": gravel,
    "foliage": foliage,
    "rock": rock,
}


def texture(rng: np.random.Generator, name: str | int, h: int, w: int, scale: float = 1.0) -> np.ndarray:
    """A float32 (h, w, 3) texture of class ``name`` (a name or an index) in [0, 1]."""
    if not isinstance(name, str):
        name = CLASSES[int(name)]
    try:
        gen = GENERATORS[name]
    except KeyError:
        raise ValueError(f"unknown world class '{name}' (known: {', '.join(CLASSES)})") from None
    out = gen(rng, int(h), int(w), float(scale))
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def texture_image(seed: int, name: str | int, h: int = 224, w: int = 224, scale: float = 1.0) -> np.ndarray:
    """A uint8 RGB image of one material (what the model is partly trained on)."""
    rng = np.random.default_rng(seed)
    return (texture(rng, name, h, w, scale) * 255.0 + 0.5).astype(np.uint8)
