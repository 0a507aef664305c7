"""TPT, CLIPArTT and WATT: what they adapt, resets, losses, averaging, prompts, chunking."""

from __future__ import annotations

import copy

import pytest
import torch

from mlmp_ros.core import METHODS, Segmenter
from mlmp_ros.core.methods.pseudo import token_distillation_loss

from ...conftest import tiny_clip, tiny_config
from ..stepwise import embed, stepwise_features


def _seg(method, seed=0, **overrides):
    loaded = tiny_clip(seed)
    return Segmenter(tiny_config(adaptation__method=method, **overrides), loaded=loaded), loaded


def _x(n=1, seed=3):
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def test_all_methods_are_registered():
    assert {"noadapt", "tent", "mlmp", "tpt", "clipartt", "watt"} <= set(METHODS)


@pytest.mark.parametrize("method", ["tpt", "clipartt", "watt"])
def test_adapts_exactly_its_parameters_and_reset_restores(method):
    overrides = {"adaptation__watt__m": 2} if method == "watt" else {}
    seg, loaded = _seg(method, **overrides)
    before = copy.deepcopy(loaded.model.state_dict())
    source = [p.detach().clone() for _, p in seg.method.named_params]
    out = seg.method.run(_x())
    after = loaded.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    names = [n for n, _ in seg.method.named_params]
    if method == "tpt":
        assert names == ["tpt.ctx"] and changed == set()
        assert seg.method.ctx.shape == (4, 64)
    else:
        assert changed and changed <= set(names)
        assert all(".ln_" in k or k.startswith(("visual.ln_pre", "visual.ln_post")) for k in changed)
    assert not all(torch.equal(p, s) for (_, p), s in zip(seg.method.named_params, source))
    seg.reset()
    assert all(torch.equal(p, s) for (_, p), s in zip(seg.method.named_params, source))
    assert not seg.method.optimizer.state
    assert torch.isfinite(out.window_logits).all() and out.window_logits.shape == (1, 5, 224, 224)  # over the 5 queries


def test_tpt_loss_decreases_and_context_starts_from_a_photo_of_a():
    seg, loaded = _seg("tpt")
    ids = loaded.tokenizer(["a photo of a"])[0][1:5]
    with torch.no_grad():
        assert torch.equal(seg.method.ctx, loaded.model.token_embedding(ids))
        # with the initial context the text features are those of "a photo of a <name>"
        plain = seg.text.encode([f"a photo of a {q}" for q in seg.text.classes.queries])
        assert torch.allclose(seg.method.text_features(), plain, atol=1e-5)
    out = seg.method.run(_x())
    assert out.losses[-1] < out.losses[0]


def test_clipartt_loss_decreases_and_prompts_are_top_k_in_order():
    seg, loaded = _seg("clipartt", classes=["cat", "dog", "sky", "grass", "road"])
    x = _x(seed=4)
    out = seg.method.run(x)
    assert out.losses[-1] < out.losses[0]
    seg.reset()
    # independent top-3 from the step-by-step features with the source weights
    with torch.no_grad():
        feats, _, _ = stepwise_features(loaded.model.visual, x, [-1])
        emb = embed(loaded.model.visual, feats[0])[0, 1:]
        scores = emb @ seg.text.per_template[0].t()
        order = scores.argsort(dim=-1, descending=True)[:, :3]
    queries = seg.text.classes.queries
    token = 17
    expected = "a photo of a " + " or ".join(queries[i] for i in order[token].tolist())
    assert seg.method.prompt_texts([tuple(order[token].tolist())]) == [expected]
    labels = seg.method.prompt_embeddings(order)
    assert torch.allclose(labels[token], seg.text.encode([expected])[0], atol=1e-5)


def test_watt_result_is_the_average_of_its_per_template_runs():
    seg, _ = _seg("watt", adaptation__watt__m=1, adaptation__watt__l=2)
    method = seg.method
    batch = method.make_batch(_x(seed=5))
    source = method.snapshot()
    runs = []
    for t in range(7):
        method.restore(source)
        for _ in range(2):
            loss = method.step_loss(batch, t)
            method.precision.backward_and_step(loss, method.optimizer)
        runs.append([p.detach().clone() for _, p in method.named_params])
    method.restore(source)
    method.adapt(batch)
    for i, (_, p) in enumerate(method.named_params):
        expected = sum(r[i] for r in runs) / 7
        assert torch.allclose(p, expected, atol=1e-7)


def test_watt_loss_goes_down_over_rounds_and_sequential_differs():
    seg, _ = _seg("watt", adaptation__watt__m=3)
    seg.method.run(_x(seed=6))
    assert seg.method.round_losses[-1] < seg.method.round_losses[0]
    seq, _ = _seg("watt", adaptation__watt__m=3, adaptation__watt__sequential=True)
    seq.method.run(_x(seed=6))
    assert seq.method.round_losses != seg.method.round_losses


def test_chunked_token_loss_equals_the_full_matrix_with_gradients():
    g = torch.Generator().manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(300, 16, generator=g), dim=-1).requires_grad_(True)
    t = torch.nn.functional.normalize(torch.randn(300, 16, generator=g), dim=-1)
    scale = torch.tensor(100.0)
    full = token_distillation_loss(f, t, scale, 0.01, chunk_rows=1000)
    (g_full,) = torch.autograd.grad(full, f)
    chunked = token_distillation_loss(f, t, scale, 0.01, chunk_rows=64)
    (g_chunk,) = torch.autograd.grad(chunked, f)
    assert torch.allclose(full, chunked, rtol=1e-5)
    assert torch.allclose(g_full, g_chunk, atol=1e-6)
    # brute force, token by token
    targets = torch.softmax(((f @ f.t()) + (t @ t.t())) / 2 / 0.01, -1)
    logits = 100.0 * f @ t.t()
    brute = sum(-(targets[i] * torch.log_softmax(logits[i], -1)).sum() for i in range(300)) / 300
    assert torch.allclose(full, brute, rtol=1e-5)


def test_reference_layout_is_the_reference_reshape():
    g = torch.Generator().manual_seed(1)
    f = torch.nn.functional.normalize(torch.randn(2 * 6, 8, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(2 * 6, 8, generator=g), dim=-1)
    scale = torch.tensor(100.0)
    ref = token_distillation_loss(f, t, scale, 0.01, 64, layout="reference", windows=2)
    # the reference: logits (windows, prompts, tokens) flattened and cut into rows of M
    logits = (scale * torch.einsum("npd,md->nmp", f.view(2, 6, 8), t)).reshape(-1, 12)
    targets = torch.softmax(((f @ f.t()) + (t @ t.t())) / 2 / 0.01, -1)
    assert torch.allclose(ref, (-(targets * torch.log_softmax(logits, -1)).sum(1)).mean())
    assert not torch.allclose(ref, token_distillation_loss(f, t, scale, 0.01, 64))


def test_methods_run_through_the_segmenter_and_switch_classes():
    for method in ("tpt", "clipartt"):
        seg, _ = _seg(method, adaptation__steps=2)
        img = (torch.rand(200, 300, 3) * 255).to(torch.uint8).numpy()
        r = seg.segment([img])
        assert r.frames[0].labels.shape == (200, 300) and len(r.losses) == 2
        seg.update(classes=["road", "car, truck"])
        r = seg.segment([img])
        assert r.frames[0].labels.max() <= 1
