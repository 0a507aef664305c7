"""ImageNet-C corruptions: every name runs, seeding is per image, the caller's RNG survives."""

from __future__ import annotations

import numpy as np
import pytest
from imagecorruptions import corrupt, get_corruption_names

from mlmp_ros.bench.corruptions import CORRUPTIONS, ORIGINAL, SCENARIOS, corrupt_image


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A non-square RGB image with structure (so blurs and weather change it)."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:150, 0:220]
    base = np.stack([xx % 256, (yy * 3) % 256, ((xx + yy) * 2) % 256], -1).astype(np.float64)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def test_names_match_the_library_order() -> None:
    assert list(CORRUPTIONS) == get_corruption_names("common")
    assert (ORIGINAL, *CORRUPTIONS) == SCENARIOS and len(SCENARIOS) == 16


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_is_deterministic_per_index(image: np.ndarray, name: str) -> None:
    before = image.copy()
    first = corrupt_image(image, name, 5, seed=3)
    again = corrupt_image(image, name, 5, seed=3)
    assert first.dtype == np.uint8 and first.shape == image.shape
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, image)
    np.testing.assert_array_equal(image, before)  # input untouched


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "glass_blur", "frost"])
def test_other_index_other_image(image: np.ndarray, name: str) -> None:
    assert not np.array_equal(corrupt_image(image, name, seed=0), corrupt_image(image, name, seed=1))


def test_bgr_order_reproduces_the_reference_and_differs_from_rgb(image: np.ndarray) -> None:
    """The reference corrupts mmcv's BGR array; seeding NumPy and calling the library on it must match."""
    np.random.seed(11)
    reference = corrupt(np.ascontiguousarray(image[..., ::-1]), severity=5, corruption_name="gaussian_noise")[..., ::-1]
    bgr = corrupt_image(image, "gaussian_noise", 5, seed=11)
    rgb = corrupt_image(image, "gaussian_noise", 5, seed=11, channel_order="rgb")
    np.testing.assert_array_equal(bgr, reference)
    assert not np.array_equal(bgr, rgb)
    np.random.seed(11)
    np.testing.assert_array_equal(rgb, corrupt(image, severity=5, corruption_name="gaussian_noise"))


def test_global_rng_state_is_restored(image: np.ndarray) -> None:
    np.random.seed(1234)
    expected = np.random.random(5)
    np.random.seed(1234)
    for name in ("gaussian_noise", "snow", "frost", "glass_blur"):
        corrupt_image(image, name, seed=99)
    np.testing.assert_array_equal(np.random.random(5), expected)


def test_original_and_errors(image: np.ndarray) -> None:
    assert corrupt_image(image, ORIGINAL, seed=0) is image
    with pytest.raises(ValueError, match="unknown corruption 'gaussian'.*gaussian_noise"):
        corrupt_image(image, "gaussian", seed=0)
    for severity in (0, 6, 2.5):
        with pytest.raises(ValueError, match="severity"):
            corrupt_image(image, "fog", severity, seed=0)
    with pytest.raises(ValueError, match="channel_order"):
        corrupt_image(image, "fog", seed=0, channel_order="hsv")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        corrupt_image(image[..., 0], "fog", seed=0)
    with pytest.raises(ValueError, match="at least 32"):
        corrupt_image(image[:20], "fog", seed=0)
