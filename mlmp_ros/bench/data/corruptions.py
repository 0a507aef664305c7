"""The 15 ImageNet-C corruptions, seeded per image as the paper's benchmark does.

The corrupted images come from ``imagecorruptions-imaug`` (the maintained fork of the
ImageNet-C code that the reference vendors).  Three details decide whether our images
match the reference's:

* Seeding.  NumPy's global generator is seeded with the image's index right before the
  call and restored afterwards (the reference's ``CorruptTransform``), so the corruption
  never disturbs the caller's random state and every method sees the same image.
* Draws.  Every random number is drawn exactly as the reference's vendored copy
  (``utils/imagecorruptions`` of dosowiechi/MLMP) draws it.  Three corruptions of the
  pip library draw differently, so they are computed here instead:

  - ``frost`` picks its texture with ``randint(5)`` (the library: ``randint(6)``; the
    first draw decides the texture and shifts the crop draws after it);
  - ``impulse_noise`` flips pixels with two ``np.random.rand`` masks from the global
    generator (the library calls scikit-image with its own generator);
  - ``fog``'s plasma fractal is float64 (the reference's ``np.float_``; the library
    uses float32, which moves a few pixels by one level).

  ``glass_blur`` comes from the library with the image's index as its explicit seed:
  its numba kernel then draws the same sequence as the reference's global generator.
  ``benchmarks/corruption_parity.py`` measures all 15 against the reference's code.
* Channel order.  The reference loads images with mmcv, which gives BGR, and corrupts
  that BGR array: noise lands on other channels than it would for RGB, snow's grey
  level weights the channels differently and frost's overlay is added in reversed
  order.  ``channel_order="bgr"`` (the default) reproduces this by corrupting the BGR
  array and converting back; ``"rgb"`` corrupts the RGB array itself (what a camera
  driver publishing rgb8 would see).
* Size.  Images are corrupted at their original size, before the protocol resize.
"""

from __future__ import annotations

import functools

import numpy as np

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
ORIGINAL = "original"
SCENARIOS: tuple[str, ...] = (ORIGINAL, *CORRUPTIONS)
"""Every image condition the bench can write: the clean images, then the 15 corruptions."""

CHANNEL_ORDERS = ("bgr", "rgb")  # the first is the default: the reference corrupts the BGR array
SEVERITY = 5  # the default severity: the paper's (ImageNet-C's strongest)
MIN_SIDE = 32  # imagecorruptions refuses smaller images

# glass_blur's numba kernel draws from numba's generator, seeded explicitly: with the
# image's index it draws the same numbers as the reference's seeded global generator.
_EXPLICIT_SEED = frozenset({"glass_blur"})
DRAWS = "reference/1"
"""Marks bags whose corruptions draw as the reference's vendored code (frost from 5 textures, ...)."""
FROST_TEXTURES = 5
"""The reference draws frost's texture with ``np.random.randint(5)``: the sixth file is never used."""


def check_corruption(name: str, severity: int = SEVERITY) -> None:
    """Raise ValueError unless ``name`` and ``severity`` are valid (call before long jobs)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown corruption '{name}'; choose one of: {', '.join(SCENARIOS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f"corruption severity must be an integer from 1 to 5, got {severity!r}")


def corrupt_image(
    image: np.ndarray,
    name: str,
    severity: int = SEVERITY,
    *,
    seed: int,
    channel_order: str = CHANNEL_ORDERS[0],
) -> np.ndarray:
    """Corrupt an RGB uint8 image (H, W, 3) into a new RGB uint8 array of the same shape.

    ``seed`` is the image's index in its split (the reference's rule).  ``"original"``
    returns the input array itself.  Not thread-safe: it seeds NumPy's global generator
    for the duration of the call.
    """
    check_corruption(name, severity)
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be 'bgr' (the reference's) or 'rgb', got {channel_order!r}")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got shape {shape} and dtype {dtype}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if name == ORIGINAL:
        return image
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(f"ImageNet-C corruptions need images of at least {MIN_SIDE}x{MIN_SIDE}, got {image.shape[:2]}")
    try:
        from imagecorruptions import corrupt
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "corruptions need the 'imagecorruptions-imaug' package: pip install 'mlmp_ros[bench]'"
        ) from err

    work = np.ascontiguousarray(image[..., ::-1]) if channel_order == "bgr" else np.ascontiguousarray(image)
    kwargs = {"seed": int(seed)} if name in _EXPLICIT_SEED else {}
    own = _OWN.get(name)
    saved = np.random.get_state()
    try:
        np.random.seed(int(seed))
        if own is not None:
            out = np.uint8(own(work, int(severity)))  # corrupt() ends with np.uint8 too
        else:
            out = corrupt(work, severity=int(severity), corruption_name=name, **kwargs)
    finally:
        np.random.set_state(saved)
    out = np.asarray(out, dtype=np.uint8)
    if out.shape != image.shape:
        raise RuntimeError(f"{name} returned shape {out.shape} for an image of shape {image.shape}")
    return np.ascontiguousarray(out[..., ::-1]) if channel_order == "bgr" else out


def frost_texture(seed: int) -> int:
    """Index (0-4) of the frost texture that image ``seed`` of a split gets, as the reference draws it."""
    return int(np.random.RandomState(int(seed)).randint(FROST_TEXTURES))


# ---------------------------------------------------------------------------------------
# The three corruptions whose draws the pip library changed.  Each one takes the (H, W, 3)
# uint8 array that corrupt() would wrap in a PIL image, draws from NumPy's global
# generator (seeded by the caller) in the reference's order, and returns floats that the
# caller truncates to uint8 as corrupt() does.


def _impulse_noise(x: np.ndarray, severity: int) -> np.ndarray:
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    values = x.astype(np.float32) / np.float32(255.0)
    flip = np.random.rand(*values.shape) <= amount
    salt = np.random.rand(*values.shape) <= 0.5
    values[flip & salt] = 1
    values[flip & ~salt] = 0
    return np.clip(values * 255, 0, 255).astype(np.uint8)


def _plasma(size: int, decay: float) -> np.ndarray:
    """Diamond-square height map in [0, 1], float64, drawing in the reference's order."""
    grid = np.zeros((size, size), dtype=np.float64)
    step, wibble = size, 100.0

    def jitter(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * np.random.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares = squares + np.roll(squares, -1, axis=1)
        grid[half:size:step, half:size:step] = jitter(squares)
        centres = grid[half:size:step, half:size:step]
        corners = grid[0:size:step, 0:size:step]
        across = (centres + np.roll(centres, 1, axis=0)) + (corners + np.roll(corners, -1, axis=1))
        grid[0:size:step, half:size:step] = jitter(across)
        down = (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=0))
        grid[half:size:step, 0:size:step] = jitter(down)
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def _fog(x: np.ndarray, severity: int) -> np.ndarray:
    strength, decay = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    height, width = x.shape[:2]
    side = max(x.shape)
    size = 1 if side == 0 else 2 ** (side - 1).bit_length()
    values = x / 255.0
    peak = values.max()
    values += strength * _plasma(size, decay)[:height, :width][..., None]
    return np.clip(values * peak / (peak + strength), 0, 1) * 255


@functools.cache
def _frost_file(index: int) -> np.ndarray:
    """Frost texture ``index`` as cv2 reads it (BGR), from the library's own files."""
    import importlib.resources

    import cv2

    name = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")[index]
    with importlib.resources.as_file(importlib.resources.files("imagecorruptions") / "frost" / name) as path:
        texture = cv2.imread(str(path))
    if texture is None:  # pragma: no cover - broken install
        raise RuntimeError(f"cannot read frost texture {name} of the imagecorruptions package")
    texture.setflags(write=False)
    return texture


def _frost(x: np.ndarray, severity: int) -> np.ndarray:
    import cv2

    keep, overlay = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))[severity - 1]
    texture = _frost_file(np.random.randint(FROST_TEXTURES))
    th, tw = texture.shape[:2]
    h, w = x.shape[:2]
    if th >= h and tw >= w:
        scale = 1
    elif th < h and tw >= w:
        scale = h / th
    elif th >= h and tw < w:
        scale = w / tw
    else:
        scale = np.maximum(h / th, w / tw)
    scale *= 1.1
    size = (int(np.ceil(tw * scale)), int(np.ceil(th * scale)))
    texture = cv2.resize(texture, dsize=size, interpolation=cv2.INTER_CUBIC)
    top = np.random.randint(0, texture.shape[0] - h)
    left = np.random.randint(0, texture.shape[1] - w)
    crop = texture[top : top + h, left : left + w][..., [2, 1, 0]]
    return np.clip(keep * x + overlay * crop, 0, 255)


_OWN = {"impulse_noise": _impulse_noise, "fog": _fog, "frost": _frost}
