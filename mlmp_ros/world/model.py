"""The bundled world model: where its weights are and the settings it was made for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..resources import package_data_path
from .dataset import PROTOCOL_RESIZE, STRIDE, WINDOW
from .textures import CLASSES

MODEL_NAME = "mlmp-world"
WEIGHTS_NAME = "mlmp-world.safetensors"


def bundled_weights() -> Path:
    """The fp16 safetensors file shipped in the package (``mlmp_ros/world/``)."""
    return package_data_path("world", WEIGHTS_NAME)


def has_bundled_weights() -> bool:
    return bundled_weights().is_file()


def world_settings(**overrides: Any) -> dict[str, Any]:
    """Core settings for the world model on world frames (dotted names, as ``Config.replace`` takes)."""
    settings: dict[str, Any] = {
        "model": MODEL_NAME,
        "weights": "world",  # resolved by the loader to bundled_weights()
        "classes": list(CLASSES),
        "resize": list(PROTOCOL_RESIZE),
        "window": [WINDOW],
        "stride": [STRIDE],
    }
    settings.update({k.replace("__", "."): v for k, v in overrides.items()})
    return settings


def world_config(**overrides: Any):
    """A :class:`~mlmp_ros.core.Config` for the world model (CPU unless ``device`` is given)."""
    from ..core.config import Config

    base = {"device": "cpu", **world_settings()}
    base.update({k.replace("__", "."): v for k, v in overrides.items()})
    return Config().replace(**base)
