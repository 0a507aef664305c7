"""World scenes and streams as benchmark data sets (the interface ``make_bag`` reads).

Names:

- ``world``: held-out scenes (seeds from :data:`~mlmp_ros.world.train.HELD_OUT_SEED`
  up, never seen in training), 640x480 unless asked otherwise;
- ``world_stream_<shift>``: consecutive frames of one camera stream whose shift
  (``none``, ``fog``, ``night``, ``rain``, ``blur``, ``dirt``) sets in over time.

The protocol of the bundled world model travels with the data: frames resized to
320x240, 160-pixel windows, stride 80.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera_stream import WorldStream
from .scenes import render_scene
from .shifts import SHIFTS
from .textures import CLASSES
from .train import HELD_OUT_SEED

CLASS_KEY = "world"
PROTOCOL_RESIZE = (320, 240)
WINDOW = 160
STRIDE = 80
DEFAULT_SCENES = 40
DEFAULT_STREAM_FRAMES = 60
STREAM_SEED = HELD_OUT_SEED + 500_000


@dataclass(frozen=True)
class WorldSample:
    index: int
    id: str
    image: np.ndarray
    labels: np.ndarray


def is_world(name: str) -> bool:
    key = name.strip().lower()
    return key == "world" or key.startswith("world_stream_")


def world_names() -> list[str]:
    return ["world"] + [f"world_stream_{s}" for s in SHIFTS]


class WorldDataset:
    """World scenes or one stream, duck-typed like :class:`~mlmp_ros.bench.data.datasets.SegmentationDataset`."""

    ignore_index = 255
    window = WINDOW
    stride = STRIDE
    split = "val"
    class_key = CLASS_KEY
    condition = None

    def __init__(self, name: str = "world", count: int | None = None, height: int = 480, width: int = 640, seed: int | None = None):
        key = name.strip().lower()
        if not is_world(key):
            raise ValueError(f"unknown world data set '{name}'; choose one of: {', '.join(world_names())}")
        self.name = self.base_name = key
        self.shift = key[len("world_stream_") :] if key != "world" else None
        if self.shift is not None and self.shift not in SHIFTS:
            raise ValueError(f"unknown stream shift '{self.shift}'; choose one of: {', '.join(SHIFTS)}")
        if count is not None and count < 1:
            raise ValueError(f"count must be positive, got {count}")
        self.height, self.width = int(height), int(width)
        self.protocol_resize = list(PROTOCOL_RESIZE)
        self.class_names = list(CLASSES)
        self.num_classes = len(CLASSES)
        if self.shift is None:
            self.seed = HELD_OUT_SEED if seed is None else int(seed)
            self.count = count or DEFAULT_SCENES
            self._stream = None
        else:
            self.seed = STREAM_SEED + SHIFTS.index(self.shift) if seed is None else int(seed)
            self.count = count or DEFAULT_STREAM_FRAMES
            self._stream = WorldStream(self.seed, self.count, height=self.height, width=self.width, shift=self.shift)
            self._state: dict = {}

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"WorldDataset(name={self.name!r}, count={self.count}, size={self.width}x{self.height}, seed={self.seed})"

    @property
    def generation(self) -> dict:
        """Every parameter the frames are generated from (recorded in a bag's description and compared)."""
        return {"count": self.count, "size": f"{self.width}x{self.height}", "seed": self.seed, "shift": self.shift}

    @property
    def ids(self) -> list[str]:
        if self._stream is None:
            return [f"scene_{self.seed + i}" for i in range(self.count)]
        return [f"stream_{self.seed}_frame_{i:04d}" for i in range(self.count)]

    def __getitem__(self, index: int) -> WorldSample:
        n = self.count
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for {self.name} ({n} images)")
        index = int(index) % n
        if self._stream is None:
            scene = render_scene(self.seed + index, self.height, self.width)
            return WorldSample(index, self.ids[index], scene.image, scene.labels)
        frame = self._stream.frame(index, self._state)
        return WorldSample(index, self.ids[index], frame.image, frame.labels)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
