"""The benchmark, by concern: ``data`` (data sets, corruptions, bags), ``scoring`` (metrics),
``offline`` (one bag replayed offline), ``suite`` (suite files, the store, the trial loop, executors),
``report`` (tables and plots), ``camera`` (camera-rate and live replays: the only rclpy users),
``study`` (the bundled world model measured) and ``cli`` (``mlmp-bench``)."""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

# Submodules load on first use (PEP 562): ``mlmp-bench --help`` and ``import mlmp_ros.bench.data.bags``
# do not pull in torch and open_clip.
_EXPORTS = {
    "data.bags": ("BagError", "BagFile", "BagFrame", "BagWriter", "open_bag"),
    "data.messages": ("image_to_msg", "msg_to_image"),
    "data.corruptions": ("CORRUPTIONS", "ORIGINAL", "SCENARIOS", "corrupt_image"),
    "data.datasets": ("DATASETS", "Sample", "SegmentationDataset"),
    "data.entry": ("DataSet", "DatasetError"),
    "data.registry": ("open_dataset", "register"),
    "data.make_bags": ("make_bag",),
    "scoring.metrics": ("SegmentationMetrics",),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .data.bags import BagError, BagFile, BagFrame, BagWriter, open_bag
    from .data.corruptions import CORRUPTIONS, ORIGINAL, SCENARIOS, corrupt_image
    from .data.datasets import DATASETS, Sample, SegmentationDataset
    from .data.entry import DataSet, DatasetError
    from .data.make_bags import make_bag
    from .data.messages import image_to_msg, msg_to_image
    from .data.registry import open_dataset, register
    from .scoring.metrics import SegmentationMetrics


__all__ = [
    "CORRUPTIONS",
    "DATASETS",
    "ORIGINAL",
    "SCENARIOS",
    "BagError",
    "BagFile",
    "BagFrame",
    "BagWriter",
    "DataSet",
    "DatasetError",
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
