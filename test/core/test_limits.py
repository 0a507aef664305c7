"""Input limits and bounded post-processing memory in the core (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlmp_ros.core import ClassList, ConfigError, Segmenter, window_grid
from mlmp_ros.core import segmenter as segmenter_module
from mlmp_ros.core.segmenter import FrameLimitError, upsample_argmax
from mlmp_ros.core.text import MAX_CLASSES
from mlmp_ros.core.windows import fit_to_window, target_size, window_plan


def previous_upsample_argmax(probs, size, chunk=16):
    """The post-processing before issue 9, kept here as the reference: 16 classes at full size at once."""
    best = labels = None
    for c0 in range(0, probs.shape[0], chunk):
        up = F.interpolate(probs[None, c0 : c0 + chunk], size=size, mode="bilinear", align_corners=False)[0]
        val, idx = up.max(0)
        if best is None:
            best, labels = val, idx
        else:
            better = val > best
            best = torch.where(better, val, best)
            labels = torch.where(better, idx + c0, labels)
    return best, labels


@pytest.mark.parametrize("size", [(224, 224), (128, 224), (224, 298)])
def test_window_plan_counts_what_window_grid_builds(size):
    for h, w in [(480, 640), (720, 1280), (640, 480), (1, 40), (3, 700), (224, 224), (100, 2000)]:
        for resize in ([224], [0], [448, 224], []):
            if resize == [0]:
                resize = []
            plan_size, count = window_plan(h, w, resize, (224, 224), (112, 112))
            expected = fit_to_window(target_size(h, w, resize), (224, 224))
            assert plan_size == expected
            assert count == len(window_grid(*expected, (224, 224), (112, 112)))


def test_a_thin_frame_is_refused_before_anything_is_allocated(make_config):
    seg = Segmenter(make_config(adaptation__steps=1))
    assert seg.plan(1, 4000)[1] == 7999  # the frame: 224 x 896000 after resize [224]
    seg.max_windows = 64
    with pytest.raises(FrameLimitError, match="7999 windows"):
        seg.segment([np.zeros((1, 4000, 3), np.uint8)])
    ok = seg.segment([np.zeros((48, 64, 3), np.uint8)])  # a normal frame still works
    assert ok.frames[0].labels.shape == (48, 64)


@pytest.mark.parametrize("classes, size", [(5, (480, 640)), (21, (720, 1280)), (40, (333, 251)), (17, (1500, 2000))])
def test_post_processing_gives_the_same_labels_as_before(classes, size):
    torch.manual_seed(classes)
    logits = torch.randn(classes, 56, 75) * 3
    probs = logits.softmax(0)
    ref_conf, ref_labels = previous_upsample_argmax(probs, size)
    conf, labels, _ = upsample_argmax(probs, size, keep=False)
    assert torch.equal(labels, ref_labels)
    if size[0] * size[1] * 16 <= segmenter_module.POST_BUDGET:  # normal sizes: bit for bit as before
        assert torch.equal(conf, ref_conf)
    else:  # large: fewer classes per chunk; PyTorch may round a 3-channel chunk differently in the last bit
        torch.testing.assert_close(conf, ref_conf, rtol=0, atol=1e-6)
    for chunk in (1, 3) if size[0] * size[1] > 10**6 else (1, 2, 3, 5):  # any chunking: the same labels
        conf_c, labels_c, _ = upsample_argmax(probs, size, keep=False, chunk=chunk)
        assert torch.equal(labels_c, ref_labels)
        torch.testing.assert_close(conf_c, ref_conf, rtol=0, atol=1e-6)


def test_ties_go_to_the_lowest_class_as_before():
    probs = torch.zeros(6, 8, 8)
    probs[[1, 4]] = 0.5  # classes 1 and 4 tie everywhere
    _, ref = previous_upsample_argmax(probs, (20, 20))
    for chunk in (None, 1, 2, 5):
        _, labels, _ = upsample_argmax(probs, (20, 20), keep=False, chunk=chunk)
        assert torch.equal(labels, ref) and int(labels.max()) == 1


def test_post_processing_never_builds_the_full_resolution_volume(monkeypatch):
    """The (C, H, W) probability volume at the input size is never held: at most POST_BUDGET elements."""
    monkeypatch.setattr(segmenter_module, "POST_BUDGET", 1 << 20)
    sizes = []
    real = F.interpolate

    def recording(x, *args, **kwargs):
        out = real(x, *args, **kwargs)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(segmenter_module.F, "interpolate", recording)
    probs = torch.rand(30, 40, 50).softmax(0)
    size = (600, 800)  # 480,000 pixels: two classes fit in the budget
    upsample_argmax(probs, size, keep=False)
    assert sizes and max(sizes) <= 1 << 20
    assert len(sizes) == 15
    sizes.clear()
    upsample_argmax(probs, (100, 100), keep=False)  # small: 16 classes at a time, as before
    assert sizes == [16 * 100 * 100, 14 * 100 * 100]
    sizes.clear()
    upsample_argmax(probs, (2000, 3000), keep=False)  # larger than the budget: one class at a time
    assert max(sizes) == 2000 * 3000


def test_the_segmenter_output_is_unchanged_at_the_input_size(make_config, monkeypatch):
    seg = Segmenter(make_config(adaptation__steps=0))
    image = np.random.default_rng(0).integers(0, 255, (333, 500, 3), dtype=np.uint8)
    new = seg.segment([image]).frames[0]
    monkeypatch.setattr(segmenter_module, "upsample_argmax",
                        lambda probs, size, keep: (*previous_upsample_argmax(probs, size), probs))
    old = seg.segment([image]).frames[0]
    np.testing.assert_array_equal(new.labels, old.labels)
    np.testing.assert_array_equal(new.confidence, old.confidence)


def test_class_lists_that_look_like_a_list_name_are_refused():
    for typo, hint in [("voc_21", "did you mean voc21"), ("coco-stuff", "coco_stuff"), ("nonexistent_dataset", "voc21")]:
        with pytest.raises(ConfigError, match="neither a built-in class list nor a file") as err:
            ClassList.resolve([typo])
        assert hint in str(err.value)
    with pytest.raises(ConfigError, match="class file not found"):
        ClassList.resolve(["missing/classes.txt"])
    assert len(ClassList.resolve(["voc21"])) == 21
    assert ClassList.resolve(["person"]).names == ("person",)  # a plain word is still one class
    assert len(ClassList.resolve(["cat", "voc_21"])) == 2  # several entries are class names


def test_more_classes_than_16_bit_labels_hold_are_refused():
    assert len(ClassList.from_lines([f"c{i}" for i in range(MAX_CLASSES)])) == MAX_CLASSES
    with pytest.raises(ConfigError, match="16-bit"):
        ClassList.from_lines([f"c{i}" for i in range(MAX_CLASSES + 1)])


def test_the_adaptation_failed_warning_is_throttled(make_config, caplog, monkeypatch):
    # The three frames must fall in one throttle interval however slow the machine: make it long.
    import mlmp_ros.core.methods.guards as guards

    monkeypatch.setattr(guards, "WARN_THROTTLE", 3600.0)
    # A huge learning rate: the second step's loss is NaN on every frame.
    seg = Segmenter(make_config(adaptation__steps=2, adaptation__lr=1e30))
    image = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    with caplog.at_level("WARNING", logger="mlmp_ros.methods"):
        statuses = [seg.segment([image]).status for _ in range(3)]
    assert all(s.startswith("restored") for s in statuses), statuses
    assert seg.method.failures == 3
    lines = [r for r in caplog.records if "adaptation failed" in r.getMessage()]
    assert len(lines) == 1  # one warning per 5 s, not one per frame


@pytest.mark.parametrize("schedule", ["sync", "async"])
def test_a_frame_is_checked_once_on_its_way_through(make_config, monkeypatch, schedule):
    # Once where it enters the core, whichever the schedule: under async the adaptation thread
    # prepares the same frame again, without checking it again.
    import time

    from mlmp_ros.core.schedule import ScheduledSegmenter

    checked = []
    original = Segmenter.check_size
    monkeypatch.setattr(Segmenter, "check_size", lambda self, h, w: (checked.append((h, w)), original(self, h, w))[1])
    seg = Segmenter(make_config(adaptation__steps=1, adaptation__schedule=schedule, adaptation__mode="episodic"))
    with ScheduledSegmenter(seg) as scheduled:
        for i in range(3):
            scheduled.segment([np.full((48 + i, 64, 3), 40 * i, np.uint8)])
            deadline = time.monotonic() + 60
            while scheduled.control.steps_total < i + 1 and time.monotonic() < deadline:
                time.sleep(0.01)  # under async: the adaptation thread has prepared this frame too
        assert scheduled.control.steps_total == 3
    assert checked == [(48 + i, 64) for i in range(3)]
