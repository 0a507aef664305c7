"""rosbag2 bags that carry a benchmark split: images, ground truth and a self-description.

A bench bag holds three topics:

* ``/camera/image_raw`` — ``sensor_msgs/msg/Image`` ``rgb8``, frame ``camera``;
* ``/ground_truth/labels`` — ``sensor_msgs/msg/Image`` ``mono8`` (``mono16`` when an id
  exceeds 255) with the same header stamp as its image;
* ``/mlmp/dataset_info`` — one ``std_msgs/msg/String`` of JSON at the first stamp
  (data set, corruption, classes, protocol, image ids, frame period), also stored as
  ``custom_data['mlmp.dataset_info']`` in ``metadata.yaml``.

Frame ``i`` is stamped ``START_NS + i * period``, so a bag written twice is the same bag.

Every frame carries a checksum: BLAKE2b (16 bytes) of the serialized image message's
digest followed by the serialized label message's digest, listed in frame order under
``custom_data['mlmp.frame_checksums']`` of ``metadata.yaml`` (written when the bag is
closed).  Reading a bag checks every frame against it and names the first frame that
differs, so a damaged file never yields numbers.  The MCAP writer of ``rosbags``
stores chunk CRCs as 0 ("not computed"); :func:`set_mcap_chunk_crcs` fills in the real
CRC-32 of every chunk after writing, so MCAP readers (rosbags, ``mcap``, ``ros2 bag``)
check the storage layer too.
Bags are written and read with the pure-Python ``rosbags`` library (no ROS install),
in MCAP (zstd-compressed chunks) or SQLite3 storage, and play with ``ros2 bag play``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import (
    CompressionFormat,
    CompressionMode,
    Reader,
    StoragePlugin,
    Writer,
    WriterError,
)

from ...constants import IMAGE_TOPIC
from .checksums import frame_checksum, message_digest, set_mcap_chunk_crcs
from .messages import FRAME_ID, IMAGE_TYPE, STRING_TYPE, image_to_msg, msg_to_image, stamp_ns, typestore

if TYPE_CHECKING:
    from typing import Self

LABEL_TOPIC = "/ground_truth/labels"
INFO_TOPIC = "/mlmp/dataset_info"
INFO_KEY = "mlmp.dataset_info"
CHECKSUM_KEY = "mlmp.frame_checksums"
CHECKSUM_ALGORITHM = "blake2b-128 of (image message digest + label message digest)"
FORMAT = "mlmp-bench-bag/1"
START_NS = 1_700_000_000 * 10**9
DEFAULT_RATE_HZ = 10.0
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
DEFAULT_STORAGE = "mcap"

_NOT_OURS = "was not written by mlmp-bench make-bags"

# Depth-1 transient-local for the description, so a late subscriber still gets it;
# reliable images, which every subscriber (reliable or best effort) accepts.
_ZERO = QosTime(0, 0)
_INFO_QOS = Qos(
    QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
    _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO, False,
)  # fmt: skip
_FRAME_QOS = Qos(
    QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, QosDurability.VOLATILE,
    _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO, False,
)  # fmt: skip

class BagError(Exception):
    """A bench bag cannot be written or read; the message says why and what to do."""


def frame_period_ns(rate_hz: float) -> int:
    """Nanoseconds between frames at ``rate_hz``."""
    if not rate_hz > 0:
        raise ValueError(f"the frame rate must be positive, got {rate_hz}")
    return round(1e9 / rate_hz)


class BagWriter:
    """Writes a bench bag frame by frame; use it as a context manager.

    ``info`` is the data set description (see :func:`mlmp_ros.bench.data.make_bags.make_bag`);
    the writer adds the format, topics, stamps and frame period to it.  On an exception
    the storage is aborted, leaving no ``metadata.yaml`` behind.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        info: Mapping[str, Any],
        *,
        storage: str = DEFAULT_STORAGE,
        rate_hz: float = DEFAULT_RATE_HZ,
        start_ns: int = START_NS,
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"unknown bag storage '{storage}'; choose one of: {', '.join(STORAGES)}")
        self.path = Path(path)
        self.storage = storage
        self.start_ns = int(start_ns)
        self.period_ns = frame_period_ns(rate_hz)
        self.info = dict(info)
        self.info.update(
            format=FORMAT,
            storage=storage,
            topics={"image": IMAGE_TOPIC, "labels": LABEL_TOPIC, "info": INFO_TOPIC},
            frame_id=FRAME_ID,
            start_stamp_ns=self.start_ns,
            frame_period_ns=self.period_ns,
        )
        self.frames = 0
        self.checksums: list[str] = []
        self._writer: Writer | None = None

    def __enter__(self) -> Self:
        if self.path.exists():
            raise BagError(f"{self.path} already exists; remove it or choose another output path")
        writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[self.storage])
        if self.storage == "mcap":
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        text = json.dumps(self.info, sort_keys=True)
        writer.set_custom_data(INFO_KEY, text)
        try:
            writer.open()
        except (WriterError, OSError) as err:
            raise BagError(f"cannot create bag {self.path}: {err}") from err
        store = typestore()
        try:
            info_conn = writer.add_connection(
                INFO_TOPIC, STRING_TYPE, typestore=store, offered_qos_profiles=[_INFO_QOS]
            )
            self._image_conn = writer.add_connection(
                IMAGE_TOPIC, IMAGE_TYPE, typestore=store, offered_qos_profiles=[_FRAME_QOS]
            )
            self._label_conn = writer.add_connection(
                LABEL_TOPIC, IMAGE_TYPE, typestore=store, offered_qos_profiles=[_FRAME_QOS]
            )
            message = store.types[STRING_TYPE](data=text)
            writer.write(info_conn, self.start_ns, store.serialize_cdr(message, STRING_TYPE))
        except BaseException:
            writer.abort()
            raise
        self._writer = writer
        return self

    def write(self, image: np.ndarray, labels: np.ndarray) -> int:
        """Append one frame (RGB uint8 image, uint8/uint16 labels of the same size); returns its stamp."""
        if self._writer is None:
            raise BagError("the bag is not open; use BagWriter as a context manager")
        if image.shape[:2] != labels.shape[:2]:
            raise ValueError(f"image {image.shape[:2]} and labels {labels.shape[:2]} differ in size")
        stamp = self.start_ns + self.frames * self.period_ns
        if labels.dtype == np.uint16 and labels.size and labels.max() <= 255:
            labels = labels.astype(np.uint8)
        store = typestore()
        image_msg = image_to_msg(image, stamp, encoding="rgb8")
        label_msg = image_to_msg(labels, stamp)
        image_raw = store.serialize_cdr(image_msg, IMAGE_TYPE)
        label_raw = store.serialize_cdr(label_msg, IMAGE_TYPE)
        self._writer.write(self._image_conn, stamp, image_raw)
        self._writer.write(self._label_conn, stamp, label_raw)
        self.checksums.append(frame_checksum(message_digest(image_raw), message_digest(label_raw)))
        self.frames += 1
        return stamp

    def __exit__(self, exc_type, exc, tb) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if exc_type is None:
            payload = {"algorithm": CHECKSUM_ALGORITHM, "frames": self.checksums}
            writer.set_custom_data(CHECKSUM_KEY, json.dumps(payload, separators=(",", ":")))
            writer.close()
            if self.storage == "mcap":
                for mcap in self.path.glob("*.mcap"):
                    set_mcap_chunk_crcs(mcap)
        else:
            writer.abort()


@dataclass(frozen=True)
class BagFrame:
    """One image of a bench bag with its ground truth."""

    index: int
    stamp_ns: int
    image: np.ndarray
    labels: np.ndarray
    image_id: str | None = None


class BagFile:
    """A bench bag opened for reading: ``info`` (the description) and its frames in order.

    Iterating opens the storage afresh, so a ``BagFile`` can be iterated several times
    and holds no file open in between.
    """

    def __init__(
        self, path: Path, info: dict[str, Any], frame_count: int, storage: str, checksums: list[str] | None = None
    ) -> None:
        self.path = path
        self.info = info
        self.storage = storage
        self.checksums = checksums
        self._frame_count = frame_count

    def __len__(self) -> int:
        return self._frame_count

    def __repr__(self) -> str:
        return f"BagFile({str(self.path)!r}, {self.info.get('dataset')}/{self.info.get('corruption')}, frames={len(self)})"

    def __iter__(self) -> Iterator[BagFrame]:
        ids = self.info.get("image_ids") or []
        store = typestore()
        pending_images: dict[int, np.ndarray] = {}
        pending_labels: dict[int, np.ndarray] = {}
        digests: dict[tuple[str, int], bytes] = {}
        index = 0
        try:
            with Reader(self.path) as reader:
                conns = [c for c in reader.connections if c.topic in (IMAGE_TOPIC, LABEL_TOPIC)]
                for conn, _, raw in reader.messages(connections=conns):
                    msg = store.deserialize_cdr(raw, conn.msgtype)
                    stamp = stamp_ns(msg)
                    pending, what = (
                        (pending_images, "image") if conn.topic == IMAGE_TOPIC else (pending_labels, "label")
                    )
                    if stamp in pending:
                        raise BagError(f"bag {self.path} has two {what} messages at stamp {stamp} ns; write it again")
                    digests[what, stamp] = message_digest(raw)
                    pending[stamp] = msg_to_image(msg)
                    if stamp in pending_images and stamp in pending_labels:
                        image_id = ids[index] if index < len(ids) else None
                        self._verify(index, stamp, image_id, digests.pop(("image", stamp)), digests.pop(("label", stamp)))
                        yield BagFrame(index, stamp, pending_images.pop(stamp), pending_labels.pop(stamp), image_id)
                        index += 1
                    self._check_unpaired(pending_images, pending_labels, stamp)
        except BagError:
            raise
        except Exception as err:
            raise BagError(
                f"cannot read bag {self.path} ({type(err).__name__}: {err}); "
                "the storage file looks truncated or corrupt: write it again with make-bags"
            ) from err
        self._check_unpaired(pending_images, pending_labels, None)

    def _verify(self, index: int, stamp: int, image_id: str | None, image: bytes, label: bytes) -> None:
        """Raise BagError unless frame ``index`` has the checksum the writer recorded."""
        if self.checksums is None:
            return
        expected = self.checksums[index] if index < len(self.checksums) else None
        if frame_checksum(image, label) != expected:
            name = f"frame {index}" + (f" (image id {image_id})" if image_id else "") + f" at stamp {stamp} ns"
            raise BagError(
                f"bag {self.path}: {name} does not match its checksum: the bag's storage file is damaged; "
                "write the bag again with make-bags (remove the folder first)"
            )

    def _check_unpaired(self, images: dict[int, Any], labels: dict[int, Any], now: int | None) -> None:
        """Raise for a frame whose partner can no longer arrive (messages come in stamp order)."""
        for pending, what, partner in ((images, "image", "label"), (labels, "label", "image")):
            stale = [s for s in pending if now is None or s < now]
            if stale:
                raise BagError(
                    f"bag {self.path}: the {what} at stamp {min(stale)} ns has no {partner} with the same "
                    f"stamp on {LABEL_TOPIC if partner == 'label' else IMAGE_TOPIC}; every image needs its "
                    "ground truth at the same header stamp"
                )


def _resolve_bag_dir(path: Path) -> Path:
    if not path.exists():
        raise BagError(f"bag {path} does not exist; write it with 'mlmp-bench make-bags' (or give the folder of a bag it wrote)")
    if path.is_file():
        if (path.parent / "metadata.yaml").is_file():
            return path.parent
        raise BagError(f"{path} is a file; pass the bag folder, the one that holds metadata.yaml")
    if not (path / "metadata.yaml").is_file():
        raise BagError(
            f"{path} has no metadata.yaml, so it is not a rosbag2 bag folder "
            "(an interrupted make-bags run leaves no bag; write it again)"
        )
    return path


def open_bag(path: str | os.PathLike[str], *, verify: bool = True) -> BagFile:
    """Open a bench bag and check it: readable, ours, and with as many labels as images.

    With ``verify`` (the default) the bag must carry its frame checksums, and reading
    its frames checks each one; ``verify=False`` reads a bag without them.
    """
    bag_dir = _resolve_bag_dir(Path(path))
    topics, custom, text = _read_description(bag_dir)
    advice = "write a bench bag with make-bags, or play a foreign bag to the node directly"
    for topic in (INFO_TOPIC, IMAGE_TOPIC):
        if topic not in topics:
            listed = ", ".join(sorted(topics)) or "none"
            raise BagError(f"bag {bag_dir} {_NOT_OURS}: it has no {topic} topic (topics: {listed}); {advice}")
    if text is None:
        raise BagError(f"bag {bag_dir} {_NOT_OURS}: {INFO_TOPIC} holds no {STRING_TYPE} message; {advice}")
    try:
        info = json.loads(text)
    except json.JSONDecodeError as err:
        raise BagError(f"bag {bag_dir} {_NOT_OURS}: {INFO_TOPIC} is not JSON ({err}); {advice}") from err
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise BagError(f"bag {bag_dir} {_NOT_OURS}: its {INFO_TOPIC} does not declare format '{FORMAT}'; {advice}")
    if LABEL_TOPIC not in topics:
        raise BagError(f"bag {bag_dir} has no ground truth on {LABEL_TOPIC}, so it cannot be scored")
    images, labels = topics[IMAGE_TOPIC].msgcount, topics[LABEL_TOPIC].msgcount
    if images != labels:
        raise BagError(
            f"bag {bag_dir} has {images} images but {labels} ground-truth label images; "
            "every image needs its label at the same stamp: write the bag again"
        )
    if custom.get(INFO_KEY) not in (None, text):
        raise BagError(
            f"bag {bag_dir}: the description in metadata.yaml differs from the one on {INFO_TOPIC}; "
            "the bag was edited or damaged: write it again with make-bags"
        )
    checksums = _read_checksums(bag_dir, custom.get(CHECKSUM_KEY), images) if verify else None
    return BagFile(bag_dir, info, images, str(info.get("storage", "")), checksums)


def _read_description(bag_dir: Path) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(topic -> connection, metadata custom data, the description's JSON text or None) of a bag."""
    text: str | None = None
    try:
        with Reader(bag_dir) as reader:
            custom = dict(getattr(getattr(reader.storage, "metadata", None), "custom", None) or {})
            topics = {c.topic: c for c in reader.connections}
            info_conn = topics.get(INFO_TOPIC)
            if info_conn is not None and info_conn.msgtype == STRING_TYPE:
                raw = next((raw for _, _, raw in reader.messages(connections=[info_conn])), None)
                text = typestore().deserialize_cdr(raw, STRING_TYPE).data if raw is not None else None
    except Exception as err:
        raise BagError(
            f"cannot open bag {bag_dir} ({type(err).__name__}: {err}); the storage file looks truncated or "
            "corrupt: write it again with make-bags"
        ) from err
    return topics, custom, text


def _read_checksums(bag_dir: Path, text: str | None, frames: int) -> list[str]:
    """The per-frame checksums of a bag's metadata; a bag without them is refused."""
    again = "write the bag again with make-bags (remove the folder first)"
    if text is None:
        raise BagError(
            f"bag {bag_dir} carries no frame checksums ({CHECKSUM_KEY} in metadata.yaml), so its frames cannot be "
            f"verified (it was written by an older mlmp_ros, or its metadata was replaced); {again}"
        )
    try:
        payload = json.loads(text)
        checksums = [str(c) for c in payload["frames"]]
        algorithm = payload["algorithm"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise BagError(f"bag {bag_dir}: its frame checksums in metadata.yaml are unreadable ({err}); {again}") from None
    if algorithm != CHECKSUM_ALGORITHM:
        raise BagError(f"bag {bag_dir}: unknown checksum algorithm {algorithm!r}; {again}")
    if len(checksums) != frames:
        raise BagError(f"bag {bag_dir} holds {frames} frames but {len(checksums)} frame checksums; {again}")
    return checksums


