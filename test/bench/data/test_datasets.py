"""Data set readers against miniature copies of the nine on-disk layouts.

Each miniature is written here as real JPEG/PNG files (VOC labels as palette PNGs).
Image ``k`` is a solid colour whose red level encodes ``k`` (blue stays low, so a BGR/RGB
mix-up shows) and its label map is built from ``k``, so a mis-paired image and label,
a wrong order or a wrong label mapping all fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlmp_ros.bench.data.datasets import DATASETS
from mlmp_ros.bench.data.entry import DatasetError
from mlmp_ros.bench.data.registry import open_dataset
from mlmp_ros.resources import config_path

# The largest raw id each layout's labels may hold (before any mapping).
RAW_MAX = {
    "voc20": 20, "voc21": 20, "context59": 59, "context60": 59, "coco_object": 80,
    "coco_stuff": 170, "cityscapes": 18, "acdc": 18, "gta5": 33,
}  # fmt: skip
GTA_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
BLUE = 7


def image_for(k: int, height: int = 40, width: int = 56) -> np.ndarray:
    """Solid RGB image whose red level says which sample it is."""
    image = np.empty((height + 2 * k, width, 3), dtype=np.uint8)
    image[...] = (20 + 10 * k, 200 - 10 * k, BLUE)
    return image


def raw_labels_for(k: int, shape: tuple[int, int], raw_max: int) -> np.ndarray:
    """Top half id k+1, bottom half 0 (background/first id), a border of 255, and raw_max."""
    labels = np.zeros(shape, dtype=np.uint8)
    labels[: shape[0] // 2] = (k + 1) % (raw_max + 1)
    labels[:, :3] = 255
    labels[-1, -1] = raw_max
    return labels


def _palette() -> list[int]:
    palette = []
    for i in range(256):
        palette += [(i * 37) % 256, (i * 91) % 256, (i * 53) % 256]
    return palette


def write_pair(image_path: Path, label_path: Path, image: np.ndarray, labels: np.ndarray, *, palette: bool) -> None:
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    if image_path.suffix == ".jpg":
        Image.fromarray(image).save(image_path, quality=98)
    else:
        Image.fromarray(image).save(image_path)
    label_image = Image.fromarray(labels)
    if palette:
        label_image.putpalette(_palette())
        assert label_image.mode == "P"
    label_image.save(label_path)


def make_layout(name: str, root: Path, n: int = 3, condition: str = "fog") -> list[tuple[str, int, np.ndarray]]:
    """Write a miniature of ``name``'s layout; returns (id, k, raw labels) in the reader's expected order."""
    raw_max = RAW_MAX[name]
    written: list[tuple[str, int, np.ndarray]] = []

    def add(image_id: str, image_path: Path, label_path: Path, palette: bool = False) -> None:
        k = len(written)
        image = image_for(k)
        labels = raw_labels_for(k, image.shape[:2], raw_max)
        write_pair(image_path, label_path, image, labels, palette=palette)
        written.append((image_id, k, labels))

    if name in ("voc20", "voc21", "context59", "context60"):
        context = name.startswith("context")
        label_dir = "SegmentationClassContext" if context else "SegmentationClass"
        split = "ImageSets/SegmentationContext/val.txt" if context else "ImageSets/Segmentation/val.txt"
        ids = ["2011_000002", "2007_000033", "2009_000005", "2008_000001"][:n]  # deliberately not sorted
        for image_id in ids:
            add(image_id, root / "JPEGImages" / f"{image_id}.jpg", root / label_dir / f"{image_id}.png", palette=True)
        # An image outside the split must not appear.
        write_pair(root / "JPEGImages/2000_000000.jpg", root / label_dir / "2000_000000.png",
                   image_for(9), raw_labels_for(9, (58, 56), raw_max), palette=True)  # fmt: skip
        (root / split).parent.mkdir(parents=True, exist_ok=True)
        (root / split).write_text("\n".join(ids) + "\n")
        return written

    if name in ("coco_object", "coco_stuff"):
        suffix = "_instanceTrainIds.png" if name == "coco_object" else "_labelTrainIds.png"
        for image_id in sorted(f"{i:012d}" for i in (632, 139, 285)[:n]):
            add(image_id, root / "images/val2017" / f"{image_id}.jpg", root / "annotations/val2017" / f"{image_id}{suffix}")
        return written

    if name == "cityscapes":
        names = ["frankfurt/frankfurt_000000_000294", "lindau/lindau_000001_000019", "munster/munster_000000_000019"]
        for image_id in names[:n]:
            add(image_id, root / "leftImg8bit/val" / f"{image_id}_leftImg8bit.png",
                root / "gtFine/val" / f"{image_id}_gtFine_labelTrainIds.png")  # fmt: skip
        # Files without the image suffix, and hidden ones, are not images of the split.
        (root / "leftImg8bit/val/frankfurt/notes.txt").write_text("not an image")
        (root / "leftImg8bit/val/frankfurt/.hidden_leftImg8bit.png").write_bytes(b"")
        return written

    if name == "acdc":
        names = ["GOPR0475/GOPR0475_frame_000041", "GOPR0475/GOPR0475_frame_000247", "GP010475/GP010475_frame_000009"]
        for image_id in names[:n]:
            add(image_id, root / "rgb_anon" / condition / "val" / f"{image_id}_rgb_anon.png",
                root / "gt" / condition / "val" / f"{image_id}_gt_labelTrainIds.png")  # fmt: skip
        return written

    if name == "gta5":
        for image_id in ["00001", "00002", "00010"][:n]:
            add(image_id, root / "images" / f"{image_id}.png", root / "labels" / f"{image_id}.png", palette=True)
        return written

    raise AssertionError(name)


def expected_labels(name: str, raw: np.ndarray) -> np.ndarray:
    """The train ids the reader must return, computed independently of it."""
    if name in ("voc20", "context59"):
        return np.where((raw == 0) | (raw == 255), 255, raw.astype(np.int64) - 1).astype(np.uint8)
    if name == "gta5":
        return np.vectorize(lambda v: GTA_TO_TRAIN.get(int(v), 255), otypes=[np.uint8])(raw)
    return raw


def class_file_lines(key: str) -> int:
    text = Path(config_path("class_names", f"{key}.classes.txt")).read_text()
    return len([line for line in text.splitlines() if line.strip()])


@pytest.mark.parametrize("name", DATASETS)
def test_layout_pairs_images_labels_in_order(tmp_path: Path, name: str) -> None:
    written = make_layout(name, tmp_path)
    dataset = open_dataset(name, tmp_path, condition="fog" if name == "acdc" else None)

    assert len(dataset) == len(written)
    assert dataset.ids == [image_id for image_id, _, _ in written]
    for i, (image_id, k, raw) in enumerate(written):
        sample = dataset[i]
        assert (sample.index, sample.id) == (i, image_id)
        assert sample.image.dtype == np.uint8 and sample.image.shape == image_for(k).shape
        red, green, blue = (float(sample.image[..., c].mean()) for c in range(3))
        assert abs(red - (20 + 10 * k)) < 3 and abs(green - (200 - 10 * k)) < 3 and abs(blue - BLUE) < 3
        assert sample.labels.dtype == np.uint8
        np.testing.assert_array_equal(sample.labels, expected_labels(name, raw))


@pytest.mark.parametrize("name", DATASETS)
def test_class_lists_and_protocol(tmp_path: Path, name: str) -> None:
    make_layout(name, tmp_path, n=1)
    dataset = open_dataset(name, tmp_path, condition="fog" if name == "acdc" else None)
    key = "cityscapes" if name in ("acdc", "gta5") else name
    assert dataset.class_key == key
    assert dataset.num_classes == len(dataset.class_names) == class_file_lines(key)
    expected = {"voc20": 20, "voc21": 21, "context59": 59, "context60": 60, "coco_object": 81, "coco_stuff": 171}
    assert dataset.num_classes == expected.get(name, 19)
    assert dataset.ignore_index == 255 and (dataset.window, dataset.stride) == (224, 112)
    assert dataset.protocol_resize == ([1120, 560] if key == "cityscapes" else [224, 224])


def test_reduce_zero_label_and_identity(tmp_path: Path) -> None:
    """VOC20 turns background into ignore and shifts ids down; VOC21 keeps them."""
    raw = np.array([[0, 1, 2, 20, 255, 0]], dtype=np.uint8).repeat(4, 0)
    image = image_for(0)[:4, :6]
    write_pair(tmp_path / "JPEGImages/a.jpg", tmp_path / "SegmentationClass/a.png", image, raw, palette=True)
    (tmp_path / "ImageSets/Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets/Segmentation/val.txt").write_text("a\n")
    np.testing.assert_array_equal(open_dataset("voc20", tmp_path)[0].labels[0], [255, 0, 1, 19, 255, 255])
    np.testing.assert_array_equal(open_dataset("voc21", tmp_path)[0].labels[0], [0, 1, 2, 20, 255, 0])


def test_gta5_maps_every_cityscapes_id(tmp_path: Path) -> None:
    raw = np.array([list(range(34)) + [255, 34, 200]], dtype=np.uint8).repeat(2, 0)
    write_pair(tmp_path / "images/00001.png", tmp_path / "labels/00001.png", image_for(0)[:2, : raw.shape[1]], raw, palette=True)
    labels = open_dataset("gta5", tmp_path)[0].labels
    expected = [GTA_TO_TRAIN.get(v, 255) for v in range(34)] + [255, 255, 255]
    np.testing.assert_array_equal(labels[0], expected)
    assert sorted(set(labels[0]) - {255}) == list(range(19))


def test_sorted_order_is_by_path_not_by_creation(tmp_path: Path) -> None:
    """mmseg sorts the recursive listing; files written out of order still come sorted."""
    for image_id in ["b/z_9", "a/y_1", "a/x_5", "ab/a_0"]:
        write_pair(tmp_path / "leftImg8bit/val" / f"{image_id}_leftImg8bit.png",
                   tmp_path / "gtFine/val" / f"{image_id}_gtFine_labelTrainIds.png",
                   image_for(0), np.zeros((40, 56), np.uint8), palette=False)  # fmt: skip
    assert open_dataset("cityscapes", tmp_path).ids == ["a/x_5", "a/y_1", "ab/a_0", "b/z_9"]


def test_acdc_condition_spellings(tmp_path: Path) -> None:
    make_layout("acdc", tmp_path, condition="night")
    by_name = open_dataset("acdc_night", tmp_path)
    by_arg = open_dataset("acdc", tmp_path, condition="night")
    assert by_name.ids == by_arg.ids and len(by_name) == 3
    assert (by_name.name, by_name.condition, by_name.class_key) == ("acdc_night", "night", "cityscapes")
    with pytest.raises(DatasetError, match="condition"):
        open_dataset("acdc", tmp_path)
    with pytest.raises(DatasetError, match="rgb_anon/fog/val"):
        open_dataset("acdc_fog", tmp_path)  # only night was written
    with pytest.raises(DatasetError, match="no conditions"):
        open_dataset("voc21", tmp_path, condition="fog")


def test_sixteen_bit_labels_stay_wide(tmp_path: Path) -> None:
    labels = np.array([[1, 300], [255, 7]], dtype=np.uint16).repeat(20, 0).repeat(20, 1)
    image_path = tmp_path / "images/val2017/000000000001.jpg"
    write_pair(image_path, tmp_path / "annotations/val2017/000000000001_labelTrainIds.png", image_for(0), labels, palette=False)
    out = open_dataset("coco_stuff", tmp_path)[0].labels
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, labels)


def test_errors_name_the_expected_layout(tmp_path: Path) -> None:
    assert issubclass(DatasetError, ValueError)
    with pytest.raises(DatasetError, match="JPEGImages/<id>.jpg"):
        open_dataset("voc21", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="leftImg8bit/val"):
        open_dataset("cityscapes", tmp_path)
    with pytest.raises(DatasetError, match="unknown data set 'voc22'.*voc21"):
        open_dataset("voc22", tmp_path)

    voc = tmp_path / "VOCdevkit" / "VOC2012"
    make_layout("voc21", voc)
    with pytest.raises(DatasetError, match="did you mean root=.*VOC2012"):
        open_dataset("voc21", tmp_path)

    (voc / "SegmentationClass/2007_000033.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of 3 label files are missing.*2007_000033\.png"):
        open_dataset("voc21", voc)

    (voc / "ImageSets/Segmentation/val.txt").write_text("\n")
    with pytest.raises(DatasetError, match="empty"):
        open_dataset("voc21", voc)
    (voc / "ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DatasetError, match=r"split file .*val\.txt is missing"):
        open_dataset("voc21", voc)


def test_colour_label_images_are_refused(tmp_path: Path) -> None:
    write_pair(tmp_path / "images/1.png", tmp_path / "labels/1.png", image_for(0), image_for(1)[:40], palette=False)
    with pytest.raises(DatasetError, match="single-channel"):
        open_dataset("gta5", tmp_path)[0]


def test_index_bounds(tmp_path: Path) -> None:
    make_layout("coco_object", tmp_path, n=2)
    dataset = open_dataset("coco_object", tmp_path)
    assert dataset[-1].index == 1
    with pytest.raises(IndexError):
        dataset[2]


def test_bench_imports_without_ros() -> None:
    """The bench runs offline: importing it must not pull in rclpy."""
    code = "import sys, mlmp_ros.bench; assert 'rclpy' not in sys.modules, 'rclpy imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_a_registered_data_set_is_offered_by_make_bags_and_accepted_by_a_suite(tmp_path: Path) -> None:
    """Adding a data set is one entry plus its reader: make-bags offers it, a suite file takes it, a bag is
    written from it through the registry (a toy generated data set: two 40x48 frames, two classes)."""
    from types import SimpleNamespace

    from mlmp_ros.bench.cli.main import build_parser, main
    from mlmp_ros.bench.data.bags import open_bag
    from mlmp_ros.bench.data.entry import DataSet
    from mlmp_ros.bench.data.registry import register, unregister
    from mlmp_ros.bench.suite.file import parse_suite

    class Toy:
        name = base_name = "toy"
        condition, split, class_key, ignore_index = None, "val", "toy", 255
        class_names, num_classes, protocol_resize, window, stride = ["a", "b"], 2, [48, 40], 32, 16
        ids = ["t0", "t1"]

        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int):
            labels = np.zeros((40, 48), np.uint8)
            labels[:, i * 10 :] = 1
            return SimpleNamespace(index=i, id=self.ids[i], image=np.full((40, 48, 3), 60 * i, np.uint8), labels=labels)

    parser = build_parser()
    (make_bags,) = [a.choices["make-bags"] for a in parser._subparsers._group_actions]
    assert "toy" not in make_bags._actions[1].choices  # not there before it is registered
    register(DataSet(key="toy", open=lambda name, root, condition: Toy(), help="toy (two frames)", needs_root=False))
    try:
        parser = build_parser()
        (make_bags,) = [a.choices["make-bags"] for a in parser._subparsers._group_actions]
        dataset_arg = next(a for a in make_bags._actions if a.dest == "dataset")
        assert "toy" in dataset_arg.choices and "toy (two frames)" in dataset_arg.help
        suite = parse_suite({"core": {"model": "mlmp-tiny-test", "weights": "random"}, "methods": ["noadapt"],
                             "scenarios": [{"dataset": "toy", "corruptions": ["original", "fog"]}]})  # fmt: skip
        assert [s.name for s in suite.scenarios] == ["toy/original", "toy/fog"]
        assert main(["make-bags", "toy", "--out", str(tmp_path), "--no-progress"]) == 0  # no root: generated
        info = open_bag(tmp_path / "toy" / "original").info
        assert (info["dataset"], info["frame_count"], info["class_names"]) == ("toy", 2, ["a", "b"])
    finally:
        unregister("toy")
    with pytest.raises(DatasetError, match="unknown data set 'toy'"):
        open_dataset("toy")
