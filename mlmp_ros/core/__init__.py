"""The science core: a dense CLIP segmenter and test-time adaptation (no ROS imports).

The names below load on first use (PEP 562), so ``import mlmp_ros.core.config`` (or
``mlmp_ros.core.schema``) does not import torch; ``from mlmp_ros.core import Segmenter``
does, as it must.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    "backbone": ("LoadedCLIP", "ModelNameError", "WeightsError", "load_clip", "read_state_dict"),
    "config": ("AdaptationConfig", "Config", "ConfigError"),
    "dense": ("DenseCLIP", "DenseFeatures", "entropy", "neighbourhood_prior"),
    "methods": ("METHODS", "Method", "MethodOutput", "get_method"),
    "segmenter": ("BatchResult", "FrameResult", "Segmenter"),
    "text": ("ClassList", "TextBank", "resolve_templates"),
    "windows": ("average_windows", "target_size", "window_grid"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .backbone import LoadedCLIP, ModelNameError, WeightsError, load_clip, read_state_dict
    from .config import AdaptationConfig, Config, ConfigError
    from .dense import DenseCLIP, DenseFeatures, entropy, neighbourhood_prior
    from .methods import METHODS, Method, MethodOutput, get_method
    from .segmenter import BatchResult, FrameResult, Segmenter
    from .text import ClassList, TextBank, resolve_templates
    from .windows import average_windows, target_size, window_grid


__all__ = [
    "METHODS",
    "AdaptationConfig",
    "BatchResult",
    "ClassList",
    "Config",
    "ConfigError",
    "DenseCLIP",
    "DenseFeatures",
    "FrameResult",
    "LoadedCLIP",
    "Method",
    "MethodOutput",
    "ModelNameError",
    "Segmenter",
    "TextBank",
    "WeightsError",
    "average_windows",
    "entropy",
    "get_method",
    "load_clip",
    "neighbourhood_prior",
    "read_state_dict",
    "resolve_templates",
    "target_size",
    "window_grid",
]
