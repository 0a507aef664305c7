"""Weights: every format round-trips bit-exactly; every failure names the problem."""

from __future__ import annotations

import warnings

import pytest
import torch

from mlmp_ros.core import ModelNameError, WeightsError, load_clip

from ..conftest import TINY_MODEL, tiny_clip


@pytest.fixture(scope="module")
def source():
    """A float32 tiny model whose values are not representable in float16."""
    loaded = tiny_clip(0)
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.add_(torch.randn_like(p) * 1e-4 + 1.2345e-5)
    return {k: v.clone() for k, v in loaded.model.state_dict().items()}


def _check_same(model, state):
    got = model.state_dict()
    assert set(got) == set(state)
    for k, v in state.items():
        assert got[k].dtype == torch.float32
        assert torch.equal(got[k], v.float()), k


def test_open_clip_checkpoint_with_module_prefix(tmp_path, source):
    path = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.items()}}, path)
    loaded = load_clip(TINY_MODEL, str(path))
    _check_same(loaded.model, source)
    assert not loaded.random_weights and loaded.weights == str(path)


def test_safetensors(tmp_path, source):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    _check_same(load_clip(TINY_MODEL, str(path)).model, source)


def test_openai_format_state_dict_keeps_float32(tmp_path, source):
    path = tmp_path / "openai_format.pt"
    torch.save(dict(source), path)  # what torch.save(model.state_dict()) of the CLIP code writes
    assert "visual.conv1.weight" in source and "logit_scale" in source
    _check_same(load_clip(TINY_MODEL, str(path)).model, source)


def test_float16_openai_weights_upcast_exactly(tmp_path, source):
    half = {k: v.half() for k, v in source.items()}
    path = tmp_path / "fp16.pt"
    torch.save(half, path)
    model = load_clip(TINY_MODEL, str(path)).model
    for k, v in half.items():
        assert torch.equal(model.state_dict()[k], v.float())


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_clip(TINY_MODEL, str(tmp_path / "nope.safetensors"))


def test_file_for_another_architecture(tmp_path, source):
    path = tmp_path / "tiny.pt"
    torch.save(dict(source), path)
    with pytest.raises(WeightsError) as err:
        load_clip("ViT-B-16-quickgelu", str(path))
    msg = str(err.value)
    assert "does not fit ViT-B-16-quickgelu" in msg and "width 64" in msg and "shapes differ" in msg


def test_unknown_model_name_suggests_close_ones():
    with pytest.raises(ModelNameError, match="unknown model 'ViT-B-61-quickgelu'.*ViT-B-16-quickgelu"):
        load_clip("ViT-B-61-quickgelu", "random")


def test_torchscript_archive_is_refused_without_running_it(tmp_path):
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(WeightsError, match="TorchScript archive"):
        load_clip(TINY_MODEL, str(path))


def test_garbage_and_pickled_code_are_refused(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"definitely not weights")
    with pytest.raises(WeightsError, match="cannot|not a weights file|refused"):
        load_clip(TINY_MODEL, str(junk))
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": warnings.warn}, evil)
    with pytest.raises(WeightsError, match="weights_only"):
        load_clip(TINY_MODEL, str(evil))


def test_pretrained_tag_offline_and_not_cached(tmp_path):
    with pytest.raises(WeightsError) as err:
        load_clip("ViT-B-16-quickgelu", "openai", cache_dir=str(tmp_path), offline=True)
    msg = str(err.value)
    assert "offline" in msg and "openai" in msg and str(tmp_path) in msg


def test_unknown_pretrained_tag_lists_tags():
    with pytest.raises(WeightsError, match="tags: .*openai"):
        load_clip("ViT-B-16-quickgelu", "laion9000")


def test_random_weights_warn_loudly():
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        loaded = load_clip(TINY_MODEL, "random")
    assert loaded.random_weights and loaded.weights == "random"


def test_pretrained_tag_from_the_hub_cache_works_offline(tmp_path, source, monkeypatch):
    """A tag resolves through the Hugging Face cache layout without any network."""
    from open_clip import pretrained
    from safetensors.torch import save_file

    monkeypatch.setitem(pretrained._PRETRAINED, TINY_MODEL, {"cached": {"hf_hub": "mlmp-test/tiny-clip/", "url": ""}})
    repo = tmp_path / "models--mlmp-test--tiny-clip"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    save_file({k: v.contiguous() for k, v in source.items()}, str(snap / "open_clip_model.safetensors"))
    loaded = load_clip(TINY_MODEL, "cached", cache_dir=str(tmp_path), offline=True)
    _check_same(loaded.model, source)
    assert loaded.weights == "cached"
