"""The bundled world model through the public Segmenter, on held-out world scenes.

The floors were measured on these scenes (see mlmp_ros/world/MODEL_CARD.md) and sit
below the measured values by a margin for float noise across machines, not for luck:
the model and the scenes are fixed, so the scores are deterministic up to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlmp_ros.bench.metrics import SegmentationMetrics
from mlmp_ros.world import CLASSES, render_scene
from mlmp_ros.world.model import bundled_weights, world_config
from mlmp_ros.world.train import HELD_OUT_SEED

TEST_SEED = HELD_OUT_SEED + 300_000  # apart from training, the benchmark bags and the model card's scenes
N_SCENES = 8
NACLIP_FLOOR = 24.0  # measured 26.66 (2026-11-29, AMD EPYC, 1 thread)
CLIP_GAP = 12.0  # measured: NACLIP 26.66, CLIP attention 8.57


@pytest.fixture(scope="module")
def scenes():
    # The protocol size (320x240): the segmenter resizes nothing and scores what it saw.
    return [render_scene(TEST_SEED + i, 240, 320) for i in range(N_SCENES)]


@pytest.fixture(scope="module")
def loaded():
    import torch

    from mlmp_ros.core import load_clip

    torch.set_num_threads(1)
    return load_clip("mlmp-world", "world", device="cpu")


def miou(loaded, scenes, *, bgr: bool = False, **settings) -> float:
    from mlmp_ros.core import Segmenter

    seg = Segmenter(world_config(**{"adaptation.method": "noadapt", **settings}), loaded=loaded)
    metrics = SegmentationMetrics(len(CLASSES))
    for scene in scenes:
        image = np.ascontiguousarray(scene.image[..., ::-1]) if bgr else scene.image
        metrics.update(seg.segment([image]).frames[0].labels, scene.labels)
    return float(metrics.compute()["mIoU"])


def test_the_bundled_weights_ship_in_the_package_small_and_in_fp16():
    from safetensors import safe_open

    path = bundled_weights()
    assert path.is_file() and path.stat().st_size < 12 * 2**20
    with safe_open(str(path), "pt") as f:
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict == {"F16"}


@pytest.fixture(scope="module")
def naclip(loaded, scenes):
    return miou(loaded, scenes, attention="naclip")


def test_naclip_noadapt_segments_held_out_scenes(naclip):
    assert naclip >= NACLIP_FLOOR, f"NACLIP NoAdapt mIoU {naclip:.2f} fell below the measured floor {NACLIP_FLOOR}"


def test_naclip_is_well_above_plain_clip_attention(loaded, scenes, naclip):
    clip = miou(loaded, scenes, attention="clip")
    assert naclip - clip >= CLIP_GAP, f"NACLIP {naclip:.2f} vs CLIP attention {clip:.2f}"


def test_swapped_colour_channels_are_seen(loaded, scenes, naclip):
    """A pipeline that fed BGR as RGB would lose much of the accuracy: the model reads colour."""
    assert miou(loaded, scenes, bgr=True) < naclip - 5  # measured: 18.43 vs 26.66
