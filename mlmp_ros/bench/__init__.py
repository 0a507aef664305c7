"""The offline benchmark: data sets, corruptions, bench bags and metrics (no rclpy here)."""

from .bags import (
    BagError,
    BagFile,
    BagWriter,
    Frame,
    image_to_msg,
    msg_to_image,
    open_bag,
)
from .corruptions import CORRUPTIONS, ORIGINAL, SCENARIOS, corrupt_image
from .datasets import DATASETS, DatasetError, Sample, SegmentationDataset, open_dataset
from .make_bags import make_bag
from .metrics import SegmentationMetrics

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
