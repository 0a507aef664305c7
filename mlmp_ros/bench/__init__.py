"""The offline benchmark: data sets, corruptions, bench bags and metrics (no rclpy here)."""

import importlib
from typing import TYPE_CHECKING, Any

# Submodules load on first use (PEP 562): ``mlmp-bench --help`` and ``import mlmp_ros.bench.bags``
# do not pull in torch and open_clip.
_EXPORTS = {
    "bags": ("BagError", "BagFile", "BagWriter", "Frame", "image_to_msg", "msg_to_image", "open_bag"),
    "corruptions": ("CORRUPTIONS", "ORIGINAL", "SCENARIOS", "corrupt_image"),
    "datasets": ("DATASETS", "DatasetError", "Sample", "SegmentationDataset", "open_dataset"),
    "make_bags": ("make_bag",),
    "metrics": ("SegmentationMetrics",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:
    from .bags import BagError, BagFile, BagWriter, Frame, image_to_msg, msg_to_image, open_bag
    from .corruptions import CORRUPTIONS, ORIGINAL, SCENARIOS, corrupt_image
    from .datasets import DATASETS, DatasetError, Sample, SegmentationDataset, open_dataset
    from .make_bags import make_bag
    from .metrics import SegmentationMetrics


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "CORRUPTIONS",
    "DATASETS",
    "ORIGINAL",
    "SCENARIOS",
    "BagError",
    "BagFile",
    "BagWriter",
    "DatasetError",
    "Frame",
    "Sample",
    "SegmentationDataset",
    "SegmentationMetrics",
    "corrupt_image",
    "image_to_msg",
    "make_bag",
    "msg_to_image",
    "open_bag",
    "open_dataset",
]
