"""The 15 ImageNet-C corruptions, seeded per image as the paper's benchmark does.

The corrupted images come from ``imagecorruptions-imaug`` (the maintained fork of the
ImageNet-C code that the reference vendors).  Three details decide whether our images
match the reference's:

* Seeding.  NumPy's global generator is seeded with the image's index right before the
  call and restored afterwards, so the corruption never disturbs the caller's random
  state and every method sees the same corrupted image.  ``impulse_noise`` (scikit-image)
  and ``glass_blur`` (a numba kernel) ignore NumPy's global generator in this library
  and would differ on every call; they receive the same seed explicitly.  They are
  therefore reproducible, but their pixels differ from the reference's vendored copy
  (same distributions), as BENCHMARK.md notes.
* Channel order.  The reference loads images with mmcv, which gives BGR, and corrupts
  that BGR array: noise lands on other channels than it would for RGB, snow's grey
  level weights the channels differently and frost's overlay is added in reversed
  order.  ``channel_order="bgr"`` (the default) reproduces this by corrupting the BGR
  array and converting back; ``"rgb"`` corrupts the RGB array itself (what a camera
  driver publishing rgb8 would see).
* Size.  Images are corrupted at their original size, before the protocol resize.
"""

from __future__ import annotations

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

CHANNEL_ORDERS = ("bgr", "rgb")
MIN_SIDE = 32  # imagecorruptions refuses smaller images

# These two draw from their own generators, which take an explicit seed.
_EXPLICIT_SEED = frozenset({"impulse_noise", "glass_blur"})


def check_corruption(name: str, severity: int = 5) -> None:
    """Raise ValueError unless ``name`` and ``severity`` are valid (call before long jobs)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown corruption '{name}'; choose one of: {', '.join(SCENARIOS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f"corruption severity must be an integer from 1 to 5, got {severity!r}")


def corrupt_image(
    image: np.ndarray,
    name: str,
    severity: int = 5,
    *,
    seed: int,
    channel_order: str = "bgr",
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
    saved = np.random.get_state()
    try:
        np.random.seed(int(seed))
        out = corrupt(work, severity=int(severity), corruption_name=name, **kwargs)
    finally:
        np.random.set_state(saved)
    out = np.asarray(out, dtype=np.uint8)
    if out.shape != image.shape:
        raise RuntimeError(f"{name} returned shape {out.shape} for an image of shape {image.shape}")
    return np.ascontiguousarray(out[..., ::-1]) if channel_order == "bgr" else out
