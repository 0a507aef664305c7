"""Bench bags: written by make_bag, read back bit-exact, readable by standard tools, and
refused with a clear BagError when damaged or foreign."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from mlmp_ros.bench.data.bags import FORMAT, INFO_TOPIC, LABEL_TOPIC, START_NS, BagError, BagWriter, open_bag
from mlmp_ros.bench.data.corruptions import corrupt_image
from mlmp_ros.bench.data.make_bags import make_bag
from mlmp_ros.bench.data.messages import image_to_msg, msg_to_image
from mlmp_ros.bench.data.registry import open_dataset
from mlmp_ros.constants import IMAGE_TOPIC

from .test_datasets import image_for, make_layout, write_pair

STORE = get_typestore(Stores.ROS2_KILTED)


@pytest.fixture
def voc(tmp_path: Path):
    """A three-image VOC21 miniature (landscape images of 40-44 x 56)."""
    root = tmp_path / "VOC2012"
    make_layout("voc21", root)
    return open_dataset("voc21", root)


def expected_frames(dataset, corruption: str, presize: bool = True):
    """What make_bag must write, computed here with plain OpenCV."""
    out = []
    for sample in dataset:
        image = corrupt_image(sample.image, corruption, 5, seed=sample.index)
        if presize:
            image = cv2.resize(image, (224, 224), interpolation=cv2.INTER_LINEAR)
            labels = cv2.resize(sample.labels, (224, 224), interpolation=cv2.INTER_NEAREST)
        else:
            labels = sample.labels
        out.append((sample.id, image, labels))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_make_bag_round_trip_is_bit_exact(voc, tmp_path: Path, storage: str) -> None:
    out = make_bag(voc, "gaussian_noise", tmp_path / "bags" / "voc21_gaussian_noise", storage=storage, progress=False)
    bag = open_bag(out)
    expected = expected_frames(voc, "gaussian_noise")
    frames = list(bag)
    assert len(bag) == len(frames) == len(expected) == 3
    for i, (frame, (image_id, image, labels)) in enumerate(zip(frames, expected)):
        assert (frame.index, frame.image_id, frame.stamp_ns) == (i, image_id, START_NS + i * 100_000_000)
        assert frame.image.dtype == np.uint8 and frame.labels.dtype == np.uint8
        np.testing.assert_array_equal(frame.image, image)
        np.testing.assert_array_equal(frame.labels, labels)

    info = bag.info
    assert info["format"] == FORMAT and info["storage"] == storage
    assert (info["dataset"], info["corruption"], info["severity"], info["channel_order"]) == (
        "voc21", "gaussian_noise", 5, "bgr",
    )  # fmt: skip
    assert info["class_names"] == voc.class_names and info["class_key"] == "voc21"
    assert info["image_ids"] == voc.ids and info["ignore_index"] == 255 and info["presized"] is True
    assert info["protocol"] == {"resize": [224, 224], "window": 224, "stride": 112}
    assert info["frame_period_ns"] == 100_000_000

    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == storage and meta["version"] >= 8
    assert json.loads(meta["custom_data"]["mlmp.dataset_info"]) == info
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert counts == {INFO_TOPIC: 1, IMAGE_TOPIC: 3, LABEL_TOPIC: 3}
    assert all((out / name).is_file() for name in meta["relative_file_paths"])
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_messages_are_standard_images_with_shared_stamps(voc, tmp_path: Path) -> None:
    out = make_bag(voc, "original", tmp_path / "bag", storage="sqlite3", progress=False)
    stamps: dict[str, list[tuple[int, int]]] = {IMAGE_TOPIC: [], LABEL_TOPIC: []}
    with Reader(out) as reader:
        for conn, timestamp, raw in reader.messages():
            msg = STORE.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == INFO_TOPIC:
                assert conn.msgtype == "std_msgs/msg/String" and timestamp == START_NS
                continue
            assert conn.msgtype == "sensor_msgs/msg/Image" and msg.header.frame_id == "camera"
            assert msg.encoding == ("rgb8" if conn.topic == IMAGE_TOPIC else "mono8")
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            stamps[conn.topic].append((timestamp, stamp))
    assert stamps[IMAGE_TOPIC] == stamps[LABEL_TOPIC] and len(stamps[IMAGE_TOPIC]) == 3
    assert all(t == s for t, s in stamps[IMAGE_TOPIC])


def test_mcap_opens_with_the_independent_mcap_reader(voc, tmp_path: Path) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out = make_bag(voc, "original", tmp_path / "bag", storage="mcap", progress=False)
    mcap_file = next(out.glob("*.mcap"))
    expected = expected_frames(voc, "original")
    with mcap_file.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert {c.compression for c in summary.chunk_indexes} == {"zstd"}
        assert summary.statistics.message_count == 7
        images = []
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            if channel.topic == INFO_TOPIC:
                assert schema.name == "std_msgs/msg/String" and json.loads(decoded.data)["dataset"] == "voc21"
            elif channel.topic == IMAGE_TOPIC:
                assert schema.name == "sensor_msgs/msg/Image" and message.log_time == (
                    decoded.header.stamp.sec * 10**9 + decoded.header.stamp.nanosec
                )
                images.append(np.frombuffer(bytes(decoded.data), np.uint8).reshape(decoded.height, decoded.width, 3))
    assert len(images) == 3
    for image, (_, want, _) in zip(images, expected):
        np.testing.assert_array_equal(image, want)


def test_presize_off_keeps_original_sizes(voc, tmp_path: Path) -> None:
    out = make_bag(voc, "original", tmp_path / "bag", presize=False, limit=2, progress=False)
    bag = open_bag(out)
    frames = list(bag)
    assert len(frames) == 2 and bag.info["presized"] is False and bag.info["image_ids"] == voc.ids[:2]
    for frame, (_, image, labels) in zip(frames, expected_frames(voc, "original", presize=False)):
        np.testing.assert_array_equal(frame.image, image)
        np.testing.assert_array_equal(frame.labels, labels)


def test_portrait_images_use_the_swapped_size(tmp_path: Path) -> None:
    root = tmp_path / "cityscapes"
    write_pair(root / "leftImg8bit/val/a/p_leftImg8bit.png", root / "gtFine/val/a/p_gtFine_labelTrainIds.png",
               image_for(0, 60, 40), np.zeros((60, 40), np.uint8), palette=False)  # fmt: skip
    frame = next(iter(open_bag(make_bag(open_dataset("cityscapes", root), "original", tmp_path / "bag", progress=False))))
    assert frame.image.shape == (1120, 560, 3) and frame.labels.shape == (1120, 560)


def test_interrupted_make_bag_leaves_nothing(voc, tmp_path: Path) -> None:
    _, label_path = voc.paths(1)
    label_path.write_bytes(b"not a png")
    out = tmp_path / "bags" / "broken"
    with pytest.raises(ValueError, match="cannot decode label map"):
        make_bag(voc, "original", out, progress=False)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_existing_output_and_bad_arguments(voc, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(BagError, match="already exists"):
        make_bag(voc, "original", tmp_path / "taken", progress=False)
    with pytest.raises(ValueError, match="unknown corruption"):
        make_bag(voc, "rain", tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="storage"):
        make_bag(voc, "original", tmp_path / "x", storage="rosbag1", progress=False)


def test_sixteen_bit_labels_travel_as_mono16(tmp_path: Path) -> None:
    labels = np.array([[0, 300], [65535, 255]], dtype=np.uint16).repeat(3, 0)
    image = np.zeros((6, 2, 3), np.uint8)
    with BagWriter(tmp_path / "bag", {"dataset": "synthetic"}, storage="mcap") as writer:
        writer.write(image, labels)
        writer.write(image, labels.astype(np.uint8) // 2)
    frames = list(open_bag(tmp_path / "bag"))
    assert frames[0].labels.dtype == np.uint16 and frames[1].labels.dtype == np.uint8
    np.testing.assert_array_equal(frames[0].labels, labels)


def test_msg_to_image_handles_padding_and_endianness() -> None:
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    msg = image_to_msg(image, 5)
    padded = np.zeros((4, 5 * 3 + 7), np.uint8)
    padded[:, :15] = image.reshape(4, 15)
    padded_msg = type(msg)(header=msg.header, height=4, width=5, encoding="rgb8", is_bigendian=0, step=22,
                           data=padded.reshape(-1))  # fmt: skip
    np.testing.assert_array_equal(msg_to_image(padded_msg), image)
    bgr_msg = image_to_msg(np.ascontiguousarray(image[..., ::-1]), 5, encoding="bgr8")
    np.testing.assert_array_equal(msg_to_image(bgr_msg), image)

    deep = np.array([[1, 258], [513, 65535]], dtype=np.uint16)
    big = type(msg)(header=msg.header, height=2, width=2, encoding="mono16", is_bigendian=1, step=4,
                    data=deep.astype(">u2").view(np.uint8).reshape(-1))  # fmt: skip
    np.testing.assert_array_equal(msg_to_image(big), deep)
    np.testing.assert_array_equal(msg_to_image(image_to_msg(deep, 0)), deep)
    assert image_to_msg(deep, 1_500_000_000).header.stamp.nanosec == 500_000_000
    with pytest.raises(ValueError, match="needs"):
        msg_to_image(type(msg)(header=msg.header, height=4, width=5, encoding="rgb8", is_bigendian=0, step=15,
                               data=image.reshape(-1)[:-1]))  # fmt: skip


def write_raw_bag(path: Path, images: list[int], labels: list[int] | None, info: str | None = None) -> Path:
    """A valid rosbag2 bag written directly (not by make-bags), with chosen stamp offsets."""
    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    if info is not None:
        info_conn = writer.add_connection(INFO_TOPIC, "std_msgs/msg/String", typestore=STORE)
        string = STORE.types["std_msgs/msg/String"](data=info)
        writer.write(info_conn, START_NS, STORE.serialize_cdr(string, "std_msgs/msg/String"))
    topics = [(IMAGE_TOPIC, images, np.zeros((4, 4, 3), np.uint8))]
    if labels is not None:
        topics.append((LABEL_TOPIC, labels, np.zeros((4, 4), np.uint8)))
    for topic, offsets, pixels in topics:
        conn = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=STORE)
        for offset in offsets:
            msg = image_to_msg(pixels, START_NS + offset)
            writer.write(conn, START_NS + offset, STORE.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    writer.close()
    return path


OURS = json.dumps({"format": FORMAT})


def test_foreign_and_unpaired_bags_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BagError, match=f"was not written by mlmp-bench make-bags.*no {INFO_TOPIC}"):
        open_bag(write_raw_bag(tmp_path / "camera_only", [0], [0]))
    with pytest.raises(BagError, match="was not written by mlmp-bench make-bags.*format"):
        open_bag(write_raw_bag(tmp_path / "other_json", [0], [0], info='{"format": "something-else"}'))
    with pytest.raises(BagError, match="was not written by mlmp-bench make-bags.*not JSON"):
        open_bag(write_raw_bag(tmp_path / "not_json", [0], [0], info="hello"))
    with pytest.raises(BagError, match="no ground truth"):
        open_bag(write_raw_bag(tmp_path / "no_labels", [0], None, info=OURS))
    with pytest.raises(BagError, match="2 images but 1 ground-truth"):
        open_bag(write_raw_bag(tmp_path / "short", [0, 100], [0], info=OURS))
    with pytest.raises(BagError, match="carries no frame checksums"):
        open_bag(write_raw_bag(tmp_path / "unsummed", [0], [0], info=OURS))
    bag = open_bag(write_raw_bag(tmp_path / "shifted", [0, 100], [0, 1000], info=OURS), verify=False)
    frames = iter(bag)
    assert next(frames).stamp_ns == START_NS
    with pytest.raises(BagError, match="image at stamp .* has no label with the same stamp"):
        next(frames)
    with pytest.raises(BagError, match="two image messages at stamp"):
        list(open_bag(write_raw_bag(tmp_path / "twice", [0, 0], [0, 0], info=OURS), verify=False))


def test_missing_and_damaged_bags(voc, tmp_path: Path) -> None:
    with pytest.raises(BagError, match="does not exist"):
        open_bag(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no metadata.yaml"):
        open_bag(tmp_path / "empty")

    mcap_bag = make_bag(voc, "original", tmp_path / "cut", storage="mcap", progress=False)
    mcap_file = next(mcap_bag.glob("*.mcap"))
    os.truncate(mcap_file, mcap_file.stat().st_size // 2)
    with pytest.raises(BagError, match="truncated or corrupt"):
        open_bag(mcap_bag)

    db_bag = make_bag(voc, "original", tmp_path / "garbage", storage="sqlite3", progress=False)
    db_file = next(db_bag.glob("*.db3"))
    db_file.write_bytes(np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    with pytest.raises(BagError, match="truncated or corrupt"):
        open_bag(db_bag)

    # A single storage file is accepted in place of its folder.
    sound = make_bag(voc, "original", tmp_path / "sound", storage="mcap", progress=False)
    assert open_bag(next(sound.glob("*.mcap"))).path == sound
