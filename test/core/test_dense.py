"""Dense CLIP features against open_clip itself and a step-by-step computation of the spec."""

from __future__ import annotations

import pytest
import torch

from mlmp_ros.core.dense import DenseCLIP, neighbourhood_prior

from ..conftest import tiny_clip
from .stepwise import explicit_attention, gaussian_window_omega, reference_pos_resize, stepwise_features

torch.set_grad_enabled(True)


@pytest.fixture(scope="module")
def clip():
    return tiny_clip(0).model


def _input(n=2, h=224, w=224, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, h, w, generator=g)


def test_vanilla_last_layer_class_token_equals_open_clip(clip):
    enc = DenseCLIP(clip, attention="clip", features="vanilla")
    x = _input()
    with torch.no_grad():
        feats = enc(x, layers=[-1])
        ours = enc.project(feats.raw[0][:, 0])
        theirs = clip.encode_image(x, normalize=True)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


@pytest.mark.parametrize("grid", [(3, 3), (3, 5), (4, 2)])
def test_omega_matches_formula_and_window_convolution(grid):
    h, w = grid
    omega = neighbourhood_prior(h, w, 5.0)
    assert omega.shape == (h * w + 1, h * w + 1)
    assert torch.all(omega[0] == 0) and torch.all(omega[:, 0] == 0)
    for p in range(h * w):
        for q in range(h * w):
            (i, j), (k, m) = divmod(p, w), divmod(q, w)
            expect = torch.exp(torch.tensor(-((i - k) ** 2 + (j - m) ** 2) / (2 * 25.0)))
            assert torch.isclose(omega[p + 1, q + 1], expect, atol=1e-7)
    assert torch.allclose(omega, gaussian_window_omega(h, w, 5.0), atol=1e-6)


@pytest.mark.parametrize("strategy", ["naclip", "sclip", "clip"])
@pytest.mark.parametrize("grid", [(3, 4), (5, 2)])
def test_ovss_attention_equals_direct_formula(clip, strategy, grid):
    enc = DenseCLIP(clip, attention=strategy)
    blk = enc.blocks[0]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, grid[0] * grid[1] + 1, 64, generator=g)
    with torch.no_grad():
        q, k, v = enc._split_heads(blk, x)
        ours = enc._merge_heads(blk, enc._ovss_attention(q, k, v, grid))
        direct = explicit_attention(blk.attn, x.transpose(0, 1), "vanilla" if strategy == "clip" else strategy, grid)
    assert torch.allclose(ours, direct.transpose(0, 1), atol=1e-5)


@pytest.mark.parametrize("strategy,arch", [("naclip", "reduced"), ("sclip", "vanilla"), ("clip", "vanilla"), ("clip", "reduced")])
def test_multilevel_features_and_mean_fusion_match_stepwise(clip, strategy, arch):
    enc = DenseCLIP(clip, attention=strategy, features=arch)
    x = _input(seed=5)
    layers = [-1, -2, -4]
    with torch.no_grad():
        feats = enc(x, layers=layers, vanilla_cls=True)
        ref, ref_cls, _ = stepwise_features(clip.visual, x, layers, strategy, arch, vanilla_cls=True)
    assert feats.layers == (0, 2, 3)
    assert len(feats.raw) == len(ref) == 3
    for ours, theirs in zip(feats.raw, ref):
        assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    assert torch.allclose(feats.vanilla_cls, ref_cls, atol=1e-5)
    fused = torch.stack(feats.raw).mean(0)
    assert torch.allclose(enc.project(fused), enc.project(torch.stack(ref).mean(0)), atol=1e-5)


def test_blocks_after_the_deepest_selected_layer_do_not_matter(clip):
    enc = DenseCLIP(clip)
    x = _input(seed=6)
    with torch.no_grad():
        before = enc(x, layers=[-2]).raw[0].clone()
        saved = enc.blocks[-1].mlp.c_fc.weight.clone()
        enc.blocks[-1].mlp.c_fc.weight.mul_(3.0)
        after = enc(x, layers=[-2]).raw[0]
        enc.blocks[-1].mlp.c_fc.weight.copy_(saved)
    assert torch.equal(before, after)


def test_positional_embedding_resized_like_the_reference_for_other_grids(clip):
    enc = DenseCLIP(clip)
    for grid in [(7, 21), (20, 10), (14, 14)]:
        pos = enc.positional_embedding(grid)
        assert pos.shape == (grid[0] * grid[1] + 1, 64)
        if grid == (14, 14):
            assert pos is clip.visual.positional_embedding
        else:
            assert torch.allclose(pos, reference_pos_resize(clip.visual.positional_embedding.detach(), (14, 14), grid))
    x = _input(n=1, h=112, w=336)
    with torch.no_grad():
        feats = enc(x, layers=[-1, -2])
    assert feats.grid == (7, 21) and feats.raw[0].shape == (1, 7 * 21 + 1, 64)


def test_input_must_be_a_multiple_of_the_patch(clip):
    enc = DenseCLIP(clip)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        enc(_input(n=1, h=100, w=224))
    with pytest.raises(ValueError, match="out of range"):
        enc.resolve_layers([-5])
