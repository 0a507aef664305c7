"""The bundled sample camera stream: real photographs from scikit-image, as a rosbag2 bag.

Eight 640x480 rgb8 frames at 10 Hz (astronaut, coffee, chelsea the cat, a rocket, a
motorcycle, the cameraman, grass, brick) on ``/camera/image_raw``.  The bag ships in
``mlmp_ros/data/sample_stream``; ``python -m mlmp_ros.demo.sample_stream --out DIR``
rebuilds it from scikit-image's own files (byte-identical for the same versions).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..constants import IMAGE_TOPIC
from ..resources import package_data_path

TOPIC = IMAGE_TOPIC
FRAME_ID = "camera"
SIZE = (480, 640)  # height, width
PERIOD_NS = 100_000_000  # 10 Hz
START_NS = 1_700_000_000 * 1_000_000_000
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "camera", "grass", "brick")


def sample_bag_path() -> Path:
    return package_data_path("data", "sample_stream")


def _photo(name: str) -> np.ndarray:
    import skimage.data
    import skimage.io

    folder = Path(skimage.data.__file__).parent
    path = folder / f"{name}.png"
    img = skimage.io.imread(path) if path.is_file() else getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)


def cover(image: np.ndarray, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Scale to cover ``size`` (height, width), then centre-crop: no distortion."""
    h, w = image.shape[:2]
    scale = max(size[0] / h, size[1] / w)
    nh, nw = max(size[0], round(h * scale)), max(size[1], round(w * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = (nh - size[0]) // 2, (nw - size[1]) // 2
    return np.ascontiguousarray(resized[y : y + size[0], x : x + size[1]])


def build_sample_bag(out: Path) -> Path:
    """Write the sample stream bag (MCAP) to ``out`` from scikit-image's photographs."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ..bench.data.messages import IMAGE_TYPE, image_to_msg, typestore

    store = typestore()
    out = Path(out)
    with Writer(out, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(TOPIC, IMAGE_TYPE, typestore=store)
        for i, name in enumerate(PHOTOS):
            stamp = START_NS + i * PERIOD_NS
            msg = image_to_msg(cover(_photo(name)), stamp, FRAME_ID, encoding="rgb8")
            writer.write(conn, stamp, store.serialize_cdr(msg, IMAGE_TYPE))
    return out


def sample_frames(path: Path | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(stamp in ns, rgb8 frame) of the bundled stream, in order."""
    from rosbags.rosbag2 import Reader

    from ..bench.data.messages import msg_to_image, stamp_ns, typestore

    store = typestore()
    with Reader(path or sample_bag_path()) as reader:
        conns = [c for c in reader.connections if c.topic == TOPIC]
        for conn, _, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            yield stamp_ns(msg), msg_to_image(msg)


def sample_raw_messages(path: Path | None = None) -> Iterator[tuple[int, bytes]]:
    """(stamp in ns, serialized CDR sensor_msgs/Image) as stored, for publishing as is."""
    from rosbags.rosbag2 import Reader

    with Reader(path or sample_bag_path()) as reader:
        conns = [c for c in reader.connections if c.topic == TOPIC]
        for _, stamp, raw in reader.messages(connections=conns):
            yield stamp, bytes(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=sample_bag_path(), help="bag folder to write")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists; remove it first")
    print(build_sample_bag(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
