"""Shared test fixtures: tiny random CLIP models and an isolated ROS 2 domain."""

from __future__ import annotations

import contextlib
import os
import random
import warnings
from collections.abc import Iterator

import pytest
import torch

# Every test process (and every node it starts) talks over loopback only, on a domain
# no other run uses.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(120, 220)))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

TINY_MODEL = "mlmp-tiny-test"


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block (it is process-wide), then put back."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tiny_config(**overrides):
    """A Config for the tiny random ViT on the CPU; dotted overrides with ``__``."""
    from mlmp_ros.core import Config

    base = Config(model=TINY_MODEL, weights="random", device="cpu", classes=["cat", "dog, puppy", "sky", "grass"])
    return base.replace(**overrides) if overrides else base


def tiny_clip(seed: int = 0):
    """A freshly initialised tiny CLIP (same weights for the same seed)."""
    from mlmp_ros.core import load_clip

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_clip(TINY_MODEL, "random", device="cpu")


@pytest.fixture
def make_config():
    return tiny_config


@pytest.fixture
def make_clip():
    return tiny_clip
