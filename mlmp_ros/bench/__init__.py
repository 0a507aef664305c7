"""The benchmark, by concern: ``data`` (data sets, corruptions, bags), ``scoring`` (metrics),
``offline`` (one bag replayed offline), ``suite`` (suite files, the store, the trial loop, executors),
``report`` (tables and plots), ``camera`` (camera-rate and live replays: the only rclpy users) and
``cli`` (``mlmp-bench``)."""

import importlib
from typing import TYPE_CHECKING, Any

# Submodules load on first use (PEP 562): ``mlmp-bench --help`` and ``import mlmp_ros.bench.data.bags``
# do not pull in torch and open_clip.
_EXPORTS = {
    "data.bags": ("BagError", "BagFile", "BagWriter", "Frame", "open_bag"),
    "data.messages": ("image_to_msg", "msg_to_image"),
    "data.corruptions": ("CORRUPTIONS", "ORIGINAL", "SCENARIOS", "corrupt_image"),
    "data.datasets": ("DATASETS", "Sample", "SegmentationDataset"),
    "data.entry": ("DataSet", "DatasetError"),
    "data.registry": ("open_dataset", "register"),
    "data.make_bags": ("make_bag",),
    "scoring.metrics": ("SegmentationMetrics",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:
    from .data.bags import BagError, BagFile, BagWriter, Frame, open_bag
    from .data.corruptions import CORRUPTIONS, ORIGINAL, SCENARIOS, corrupt_image
    from .data.datasets import DATASETS, Sample, SegmentationDataset
    from .data.entry import DataSet, DatasetError
    from .data.make_bags import make_bag
    from .data.messages import image_to_msg, msg_to_image
    from .data.registry import open_dataset, register
    from .scoring.metrics import SegmentationMetrics


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
    "DataSet",
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
    "register",
]
