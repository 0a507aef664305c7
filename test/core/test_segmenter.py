"""The Segmenter end to end: any size and aspect, mixed batches, outputs, and the protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlmp_ros.core import Config, ConfigError, Segmenter

from ..conftest import tiny_clip, tiny_config


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def seg():
    return Segmenter(tiny_config(adaptation__steps=2, resize=[224]), loaded=tiny_clip(0))


def test_portrait_landscape_and_mixed_sizes_in_one_batch(seg):
    images = [_img(480, 640, 1), _img(640, 360, 2), _img(224, 224, 3), _img(100, 150, 4)]
    res = seg.segment(images)
    assert [f.labels.shape for f in res.frames] == [(480, 640), (640, 360), (224, 224), (100, 150)]
    for f in res.frames:
        assert f.labels.dtype == np.uint8 and f.labels.max() < 4
        assert f.confidence.dtype == np.float32
        assert f.confidence.min() > 0.0 and f.confidence.max() <= 1.0
    assert len(res.losses) == 2 and res.status == "ok"
    proc = seg.segment(images[:2], output="processing", probabilities=True)
    assert proc.frames[0].labels.shape == (224, 299) and proc.frames[1].labels.shape == (398, 224)
    p = proc.frames[0].probabilities
    assert p.shape == (4, 224, 299)
    np.testing.assert_array_equal(p.argmax(0), proc.frames[0].labels)
    np.testing.assert_allclose(p.max(0), proc.frames[0].confidence)


def test_labels_at_input_size_follow_the_upsampled_probabilities(seg):
    res = seg.segment([_img(300, 400, 5)], probabilities=True)
    f = res.frames[0]
    assert f.probabilities.shape == (4, 300, 400)
    np.testing.assert_array_equal(f.probabilities.argmax(0), f.labels)


def test_same_frame_same_answer_in_episodic_mode(seg):
    a = seg.segment([_img(240, 320, 6)])
    b = seg.segment([_img(240, 320, 6)])
    np.testing.assert_array_equal(a.frames[0].labels, b.frames[0].labels)
    np.testing.assert_array_equal(a.frames[0].confidence, b.frames[0].confidence)


def test_paper_protocol_windows_are_one_batch():
    seg = Segmenter(tiny_config(resize=[1120, 560], adaptation__steps=1), loaded=tiny_clip(1))
    seen = {}
    orig = seg.method.run

    def spy(x):
        seen["shape"] = tuple(x.shape)
        return orig(x)

    seg.method.run = spy
    res = seg.segment([_img(512, 1024, 7), _img(1024, 512, 8)], output="processing")
    assert seen["shape"] == (72, 3, 224, 224)
    assert res.frames[0].labels.shape == (560, 1120) and res.frames[1].labels.shape == (1120, 560)
    assert res.layer_weights.shape == (3, 72)


def test_class_change_and_many_classes_use_mono16():
    seg = Segmenter(tiny_config(adaptation__steps=1), loaded=tiny_clip(2))
    seg.update(classes=[f"thing {i}" for i in range(300)])
    assert len(seg.class_names) == 300
    f = seg.segment([_img(224, 224, 9)]).frames[0]
    assert f.labels.dtype == np.uint16 and f.labels.max() < 300
    seg.update(classes="cityscapes")
    assert seg.class_names[0] == "road" and len(seg.class_names) == 19


def test_bad_images_are_refused_with_a_reason(seg):
    with pytest.raises(ValueError, match="uint8 RGB"):
        seg.segment([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match="uint8 RGB"):
        seg.segment([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError, match="empty"):
        seg.segment([np.zeros((0, 10, 3), np.uint8)])


def test_config_problems_are_named():
    with pytest.raises(ConfigError) as err:
        Config(classes=[], adaptation=Config().adaptation).replace(adaptation__steps=-1, adaptation__lr=0)
    text = str(err.value)
    assert "classes" in text and "steps" in text and "lr" in text
    with pytest.raises(ConfigError, match="unknown setting 'bogus'"):
        Config.from_mapping({"bogus": 1})
    with pytest.raises(ConfigError, match="adaptation.method must be one of noadapt, tent, .*, not 'nope'"):
        Config.from_mapping({"adaptation": {"method": "nope"}})
    with pytest.raises(ConfigError, match="expected an integer"):
        Config.from_mapping({"adaptation.steps": 1.5})
    with pytest.raises(ConfigError, match="multiple of the patch"):
        Segmenter(tiny_config(window=[100]), loaded=tiny_clip(0))


def test_node_yaml_loads_as_core_config():
    cfg = Config.from_yaml("config/segment.yaml")
    assert cfg.model == "ViT-B-16-quickgelu" and cfg.layers == [] and cfg.resize == [224]
    assert cfg.replace(layers="-1,-3").layers == [-1, -3]


def test_bf16_autocast_path_runs_and_stays_close():
    fp32 = Segmenter(tiny_config(adaptation__steps=2), loaded=tiny_clip(3))
    bf16 = Segmenter(tiny_config(adaptation__steps=2, precision="bf16"), loaded=tiny_clip(3))
    img = _img(224, 224, 10)
    a = fp32.segment([img], probabilities=True).frames[0]
    b = bf16.segment([img], probabilities=True).frames[0]
    assert np.abs(a.probabilities - b.probabilities).max() < 0.05
    assert all(p.dtype == torch.float32 for _, p in bf16.method.named_params)
