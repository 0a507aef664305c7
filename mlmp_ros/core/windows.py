"""Resizing, sliding windows and the per-pixel averaging of window logits.

The benchmark protocol resizes an image to a configured size (landscape size, swapped
for portrait images), cuts windows of a fixed size and stride in row-major order, and
averages the logits of overlapping windows per pixel.  Where the stride does not land
on the image's edge, one more window is placed flush with it, so every pixel is
covered; on the paper's sizes the grids are identical to the reference's.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch


def pair(values: Sequence[int] | int) -> tuple[int, int]:
    """[s] -> (s, s); [w, h] -> (h, w) as (height, width)."""
    if isinstance(values, int):
        return values, values
    values = list(values)
    return (values[0], values[0]) if len(values) == 1 else (values[1], values[0])


def target_size(height: int, width: int, resize: Sequence[int]) -> tuple[int, int]:
    """(height, width) after the protocol resize.

    ``[]`` keeps the size, ``[s]`` scales the short side to ``s``, ``[W, H]`` resizes
    landscape images to W x H and others (portrait and square) to H x W, as the
    reference does.
    """
    resize = list(resize)
    if not resize:
        return height, width
    if len(resize) == 1:
        scale = resize[0] / min(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    w_t, h_t = resize
    return (h_t, w_t) if width > height else (w_t, h_t)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (height, width) with OpenCV (as mmcv's ``imresize``)."""
    if image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map to (height, width)."""
    if labels.shape[:2] == tuple(size):
        return labels
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def _positions(size: int, window: int, stride: int) -> list[int]:
    if size < window:
        raise ValueError(f"image side {size} is smaller than the window {window}")
    pos = list(range(0, size - window + 1, stride))
    if pos[-1] + window < size:
        pos.append(size - window)
    return pos


def window_grid(height: int, width: int, window: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the windows, row-major."""
    ys = _positions(height, window[0], stride[0])
    xs = _positions(width, window[1], stride[1])
    return [(y, x) for y in ys for x in xs]


def _count(size: int, window: int, stride: int) -> int:
    """len(_positions(size, window, stride)) without building the list."""
    if size < window:
        return 1  # fit_to_window scales the image up first
    n = (size - window) // stride + 1
    return n + 1 if (n - 1) * stride + window < size else n


def window_plan(
    height: int, width: int, resize: Sequence[int], window: tuple[int, int], stride: tuple[int, int]
) -> tuple[tuple[int, int], int]:
    """(processing size, number of windows) of an image, by arithmetic only (nothing is allocated).

    A thin image explodes here: 1x4000 with ``resize [224]`` is 224x896000, 7999 windows.
    """
    size = fit_to_window(target_size(height, width, resize), window)
    return size, _count(size[0], window[0], stride[0]) * _count(size[1], window[1], stride[1])


def fit_to_window(size: tuple[int, int], window: tuple[int, int]) -> tuple[int, int]:
    """Scale (height, width) up, keeping the aspect, until both sides hold one window."""
    h, w = size
    scale = max(window[0] / h, window[1] / w, 1.0)
    if scale == 1.0:
        return size
    return max(window[0], int(np.ceil(h * scale - 1e-6))), max(window[1], int(np.ceil(w * scale - 1e-6)))


def extract_windows(image: torch.Tensor, corners: list[tuple[int, int]], window: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) -> (n_windows, C, wh, ww) crops at ``corners``."""
    wh, ww = window
    return torch.stack([image[:, y : y + wh, x : x + ww] for y, x in corners], 0)


def average_windows(
    window_logits: torch.Tensor, corners: list[tuple[int, int]], size: tuple[int, int]
) -> torch.Tensor:
    """Per-pixel mean of overlapping window logits: (n, Q, wh, ww) -> (Q, H, W)."""
    n, q, wh, ww = window_logits.shape
    if n == 1 and (wh, ww) == tuple(size):
        return window_logits[0]
    total = window_logits.new_zeros((q,) + tuple(size))
    count = window_logits.new_zeros((1,) + tuple(size))
    for logit, (y, x) in zip(window_logits, corners):
        total[:, y : y + wh, x : x + ww] += logit
        count[:, y : y + wh, x : x + ww] += 1
    return total / count
