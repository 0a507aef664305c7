"""Golden outputs of the tiny model: a drift check across torch and open_clip versions.

The weights come from numpy's PCG64 generator (stable across numpy versions), not from torch's
initialisers, and the input is fixed, so the same code must give the same numbers everywhere up
to float noise.  What is compared: the class probabilities averaged over 16x16 blocks, the
adaptation loss, and the labels wherever the winning class leads by a clear margin.
Regenerate after an intended change with  MLMP_UPDATE_GOLDEN=1 pytest test/core/test_golden.py
(and say why in the commit).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mlmp_ros.core import Segmenter

from ..conftest import tiny_clip, tiny_config

GOLDEN = Path(__file__).parent / "data" / "golden_tiny.npz"
BLOCK = 16
# Measured here: 1 vs 2 threads moves the block probabilities by 2e-7; a weight of one MLP layer
# scaled by 1.01 moves them by 9e-4 and the loss by 1.2e-4 relative; GELU for QuickGELU by 4e-3.
# The tolerances sit between: far above float noise (other CPUs, kernels, thread counts).
PROB_ATOL = 5e-5
LOSS_RTOL = 5e-5
MARGIN = 0.05
UNCLEAR = 255


def seeded_weights(model: torch.nn.Module, seed: int = 8) -> None:
    """Overwrite every parameter with values from numpy's PCG64 (independent of torch's init)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            shape = tuple(param.shape)
            if name.endswith("logit_scale"):
                values = np.full(shape, math.log(1 / 0.07))
            elif len(shape) >= 2:
                values = rng.standard_normal(shape) / math.sqrt(shape[-1])
            elif name.endswith("weight"):  # layer norms
                values = 1.0 + 0.1 * rng.standard_normal(shape)
            else:  # biases, class token, positional rows
                values = 0.1 * rng.standard_normal(shape)
            param.copy_(torch.from_numpy(values.astype(np.float32)))


def fixed_image() -> np.ndarray:
    h, w = 160, 224
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x // 32 + y // 32) % 2 * 200], -1)
    img = img + np.random.default_rng(5).integers(0, 40, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def run_tiny() -> dict[str, np.ndarray]:
    loaded = tiny_clip(0)
    seeded_weights(loaded.model)
    seg = Segmenter(tiny_config(adaptation__steps=2, resize=[224]), loaded=loaded)
    result = seg.segment(fixed_image(), output="processing", probabilities=True)
    probs = result.frames[0].probabilities  # (C, H, W)
    c, h, w = probs.shape
    blocks = probs[:, : h // BLOCK * BLOCK, : w // BLOCK * BLOCK].reshape(c, h // BLOCK, BLOCK, w // BLOCK, BLOCK)
    top2 = np.sort(probs, axis=0)[-2:]
    # Labels only where the winner leads clearly (float noise cannot flip those); UNCLEAR elsewhere.
    labels = np.where(top2[1] - top2[0] > MARGIN, result.frames[0].labels, UNCLEAR).astype(np.uint8)
    return {
        "block_probabilities": blocks.mean(axis=(2, 4)).astype(np.float32),
        "losses": np.asarray(result.losses, np.float64),
        "clear_labels": labels,
    }


def test_the_tiny_model_gives_the_recorded_outputs():
    got = run_tiny()
    if os.environ.get("MLMP_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(GOLDEN, **got)
        pytest.skip(f"wrote {GOLDEN}")
    want = dict(np.load(GOLDEN))
    assert got["clear_labels"].shape == want["clear_labels"].shape
    # Not near-uniform noise: the classes differ, so a change of the model shows up here.
    spread = float(np.ptp(want["block_probabilities"]))
    assert spread > 0.05, spread
    np.testing.assert_allclose(got["block_probabilities"], want["block_probabilities"], rtol=0, atol=PROB_ATOL)
    np.testing.assert_allclose(got["losses"], want["losses"], rtol=LOSS_RTOL)
    clear = want["clear_labels"] != UNCLEAR
    assert clear.mean() > 0.25, clear.mean()
    np.testing.assert_array_equal(got["clear_labels"][clear], want["clear_labels"][clear])
