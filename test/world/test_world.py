"""The procedural world: scenes with ground truth, streams with shifts, world bench bags."""

from __future__ import annotations

import numpy as np
import pytest

from mlmp_ros.world import CLASSES, LAYOUTS, render_scene
from mlmp_ros.world.camera_stream import WorldStream
from mlmp_ros.world.shifts import SHIFTS, apply_shift, ramp


def test_a_seed_gives_the_same_scene_and_other_seeds_other_scenes():
    a, b, c = render_scene(5, 120, 160), render_scene(5, 120, 160), render_scene(6, 120, 160)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (120, 160, 3) and a.image.dtype == np.uint8
    assert a.labels.shape == (120, 160) and a.labels.dtype == np.uint8


def test_scenes_cover_every_class_and_every_layout_at_any_resolution():
    seen: set[int] = set()
    for seed in range(40):
        scene = render_scene(seed, 96, 128)
        assert scene.labels.max() < len(CLASSES)
        seen |= set(np.unique(scene.labels).tolist())
    assert len(CLASSES) >= 10 and seen == set(range(len(CLASSES)))
    for layout in LAYOUTS:
        for h, w in ((480, 640), (720, 1280), (37, 51)):
            scene = render_scene(3, h, w, layout=layout)
            assert scene.image.shape == (h, w, 3) and scene.labels.shape == (h, w)
    with pytest.raises(ValueError, match="unknown layout"):
        render_scene(0, 64, 64, layout="maze")


def test_the_ground_truth_follows_the_pixels():
    """Pixels of one class look alike and unlike other classes: the labels describe the image."""
    scene = render_scene(11, 240, 320, layout="outdoor")
    img, lab = scene.image.astype(np.float32), scene.labels
    sky = CLASSES.index("sky")
    assert (lab[0] == sky).mean() > 0.5 and (lab[-1] == sky).mean() == 0  # sky on top, ground below
    means = {c: img[lab == c].mean(0) for c in np.unique(lab) if (lab == c).sum() > 200}
    assert len(means) >= 3
    for c, m in means.items():
        own = np.abs(img[lab == c] - m).sum(1).mean()
        others = [np.abs(m - m2).sum() for c2, m2 in means.items() if c2 != c]
        assert own < 3 * max(others)


def test_a_stream_moves_smoothly_and_its_shift_sets_in():
    stream = WorldStream(3, 30, height=120, width=160, shift="fog")
    frames = list(stream)
    assert len(frames) == 30 and frames[0].severity == 0.0 and frames[-1].severity == 1.0
    sev = [f.severity for f in frames]
    assert sev == sorted(sev)
    # neighbours overlap: their labels agree far more than frames ten apart
    near = np.mean([(frames[i].labels == frames[i + 1].labels).mean() for i in range(0, 9)])
    far = np.mean([(frames[i].labels == frames[i + 10].labels).mean() for i in range(0, 9)])
    assert near > 0.7 and near > far
    clean = WorldStream(3, 30, height=120, width=160, shift="none")
    np.testing.assert_array_equal(clean.frame(29).labels, frames[29].labels)  # a shift never moves the truth
    fogged, plain = frames[29].image.astype(float), clean.frame(29).image.astype(float)
    assert fogged.std() < 0.6 * plain.std()  # fog washes the contrast out


@pytest.mark.parametrize("shift", [s for s in SHIFTS if s != "none"])
def test_every_shift_changes_the_image_more_as_it_grows(shift):
    img = render_scene(2, 96, 128).image
    rng = np.random.default_rng
    weak = apply_shift(img, shift, 0.2, rng(0), {})
    strong = apply_shift(img, shift, 1.0, rng(0), {})
    assert weak.shape == img.shape and weak.dtype == np.uint8
    d_weak = np.abs(weak.astype(int) - img).mean()
    d_strong = np.abs(strong.astype(int) - img).mean()
    assert 0 < d_weak < d_strong
    np.testing.assert_array_equal(apply_shift(img, shift, 0.0, rng(0), {}), img)


def test_ramp_and_bad_arguments():
    assert ramp(0.1, 0.2, 0.9) == 0.0 and ramp(0.95, 0.2, 0.9) == 1.0 and 0 < ramp(0.5, 0.2, 0.9) < 1
    with pytest.raises(ValueError, match="unknown shift"):
        WorldStream(0, 5, shift="smoke")
    with pytest.raises(ValueError, match="at least one frame"):
        WorldStream(0, 0)


def test_make_bags_world_writes_scene_and_stream_bags_that_read_back(tmp_path, capsys):
    from mlmp_ros.bench.cli.main import main
    from mlmp_ros.bench.data.bags import open_bag
    from mlmp_ros.world.dataset import WorldDataset

    code = main(["make-bags", "world", "--corruptions", "original,gaussian_noise", "--streams", "night",
                 "--count", "3", "--size", "160x120", "--out", str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    clean = WorldDataset("world", count=3, height=120, width=160)
    for corruption in ("original", "gaussian_noise"):
        bag = open_bag(tmp_path / "world" / corruption)
        assert bag.info["class_key"] == "world" and bag.info["class_names"] == list(CLASSES)
        assert bag.info["corruption"] == corruption and bag.info["frame_count"] == 3
        frames = list(bag)
        assert len(frames) == 3
        for i, frame in enumerate(frames):
            truth = clean[i].labels
            assert frame.labels.shape == frame.image.shape[:2]
            # presized to the protocol (320x240) with nearest-neighbour labels
            import cv2

            expected = cv2.resize(truth, (frame.labels.shape[1], frame.labels.shape[0]), interpolation=cv2.INTER_NEAREST)
            np.testing.assert_array_equal(frame.labels, expected)
    stream = open_bag(tmp_path / "world_stream_night" / "original")
    assert stream.info["dataset"] == "world_stream_night" and stream.info["frame_count"] == 3
    # a second call keeps the bags
    assert main(["make-bags", "world", "--count", "3", "--size", "160x120", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "kept" in capsys.readouterr().out
    assert main(["make-bags", "world", "--streams", "smoke", "--out", str(tmp_path)]) == 2
