"""An independent, step-by-step computation of the spec, written from the block weights.

Nothing here calls mlmp_ros.core's dense code: attention is explicit bmm + softmax in
the sequence-first layout, Omega is built from a Gaussian window by convolution, the
ordinary CLIP block runs through open_clip's own nn.MultiheadAttention, and the
prediction runs the encoder twice (weights, then fused feature) as the reference does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_window_omega(h: int, w: int, std: float) -> torch.Tensor:
    """Omega via a (2h-1)x(2w-1) Gaussian window convolved over one-hot patch maps."""
    ys = torch.arange(-(h - 1), h, dtype=torch.float32)
    xs = torch.arange(-(w - 1), w, dtype=torch.float32)
    window = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * std**2))
    onehot = torch.eye(h * w).view(h * w, 1, h, w)
    spread = F.conv2d(onehot, window[None, None], padding=(h - 1, w - 1))  # (hw, 1, h, w)
    omega = torch.zeros(h * w + 1, h * w + 1)
    omega[1:, 1:] = spread.view(h * w, h * w)
    return omega


def explicit_attention(attn, x: torch.Tensor, strategy: str, grid, std: float = 5.0) -> torch.Tensor:
    """x: (L, N, D) after ln_1 -> attention branch output (L, N, D)."""
    length, n, dim = x.shape
    heads = attn.num_heads
    dh = dim // heads
    scale = dh**-0.5
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q = q.contiguous().view(length, n * heads, dh).transpose(0, 1)
    k = k.contiguous().view(length, n * heads, dh).transpose(0, 1)
    v = v.contiguous().view(length, n * heads, dh).transpose(0, 1)
    if strategy == "naclip":
        weights = torch.softmax(torch.bmm(k, k.transpose(1, 2)) * scale + gaussian_window_omega(*grid, std), -1)
    elif strategy == "sclip":
        weights = torch.softmax(torch.bmm(q, q.transpose(1, 2)) * scale, -1) + torch.softmax(
            torch.bmm(k, k.transpose(1, 2)) * scale, -1
        )
    else:
        weights = torch.softmax(torch.bmm(q * scale, k.transpose(1, 2)), -1)
    out = torch.bmm(weights, v).transpose(0, 1).contiguous().view(length, n, dim)
    return attn.out_proj(out)


def stepwise_features(visual, x, layers, strategy="naclip", arch="reduced", std=5.0, vanilla_cls=False):
    """Per-layer raw features [(N, L, D)] and the vanilla class token (N, D)."""
    n = x.shape[0]
    ph = visual.patch_size[0]
    grid = (x.shape[-2] // ph, x.shape[-1] // ph)
    t = visual.conv1(x).reshape(n, visual.conv1.out_channels, -1).permute(0, 2, 1)
    t = torch.cat([visual.class_embedding + torch.zeros(n, 1, t.shape[-1]), t], dim=1)
    t = visual.ln_pre(t + visual.positional_embedding).permute(1, 0, 2)  # (L, N, D)
    blocks = visual.transformer.resblocks
    num = len(blocks)
    layers = sorted({i % num for i in layers})
    last = layers[-1]
    feats, cls = [], None
    for idx in range(last + 1):
        blk = blocks[idx]
        if idx != last:
            red = explicit_attention(blk.attn, blk.ln_1(t), "vanilla", grid)
            t = t + red
            t = t + blk.mlp(blk.ln_2(t))
            full = t
        else:
            red = explicit_attention(blk.attn, blk.ln_1(t), strategy, grid, std)
            full = t + red
            full = full + blk.mlp(blk.ln_2(full))
            if vanilla_cls:
                cls = blk(t.permute(1, 0, 2))[:, 0]  # open_clip's own block, batch-first
        if idx in layers:
            feats.append((red if arch == "reduced" else full).permute(1, 0, 2))
    return feats, cls, grid


def embed(visual, f: torch.Tensor) -> torch.Tensor:
    out = visual.ln_post(f) @ visual.proj
    return out / out.norm(dim=-1, keepdim=True)


def softmax_entropy(x: torch.Tensor, dim: int) -> torch.Tensor:
    return -(x.softmax(dim) * x.log_softmax(dim)).sum(dim)


def text_embeddings(clip, tokenizer, queries, templates):
    """(T+1, Q, D): per template, then the ensemble, class by class as the reference does."""
    per_class = []
    with torch.no_grad():
        for q in queries:
            e = clip.encode_text(tokenizer([t.format(q) for t in templates]))
            e = e / e.norm(dim=-1, keepdim=True)
            avg = e.mean(0)
            per_class.append(torch.cat([e, (avg / avg.norm())[None]], 0))
    return torch.stack(per_class, 1)


def stepwise_mlmp(clip, tokenizer, x, queries, templates, layers, steps=10, lr=1e-3, alpha=1.0, fusion="entropy"):
    """The MLMP loop written out: returns (losses, window logits after adaptation, layer weights)."""
    visual = clip.visual
    clip.requires_grad_(False)
    params = []
    for m in visual.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.requires_grad_(True)
            params += [m.weight, m.bias]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    text = text_embeddings(clip, tokenizer, queries, templates)
    scale = clip.logit_scale.exp()
    losses = []
    for _ in range(steps):
        feats, cls, _ = stepwise_features(visual, x, layers, vanilla_cls=alpha > 0)
        fused = torch.mean(torch.stack(feats), dim=0) if len(feats) > 1 else feats[0]
        emb = embed(visual, fused)
        logits = scale * torch.einsum("bsd,tcd->tbsc", emb, text[:-1])[:, :, 1:]
        loss = softmax_entropy(logits, -1).mean()
        if alpha > 0:
            c = embed(visual, cls)
            loss = loss + alpha * softmax_entropy(scale * torch.einsum("bd,tcd->tbc", c, text[:-1]), -1).mean()
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        logits, weights = stepwise_predict(visual, x, layers, text[-1], scale, fusion)
    return losses, logits, weights


def stepwise_predict(visual, x, layers, ensemble, scale, fusion="entropy"):
    """Two encoder passes: entropy weights from the first, the fused feature from the second."""
    feats, _, grid = stepwise_features(visual, x, layers)
    weights = None
    if fusion == "entropy" and len(feats) > 1:
        per_layer = torch.stack([embed(visual, f) for f in feats])  # (S, N, L, D)
        lg = scale * torch.einsum("obsd,cd->obsc", per_layer, ensemble)[:, :, 1:]
        weights = torch.softmax(-softmax_entropy(lg, -1).mean(-1), dim=0)  # (S, N)
        feats2, _, _ = stepwise_features(visual, x, layers)  # second pass, as the reference
        fused = torch.sum(torch.stack(feats2) * weights[:, :, None, None], dim=0)
    else:
        fused = torch.mean(torch.stack(feats), dim=0) if len(feats) > 1 else feats[0]
    emb = embed(visual, fused)[:, 1:]
    logits = scale * emb @ ensemble.t()  # (N, P, Q)
    n, _, q = logits.shape
    logits = logits.permute(0, 2, 1).reshape(n, q, grid[0], grid[1])
    return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False), weights


def reference_pos_resize(pos: torch.Tensor, grid0, grid) -> torch.Tensor:
    """The reference's positional-embedding resize (scale factor (g + 0.1) / g0)."""
    dim = pos.shape[-1]
    n0 = pos.shape[0] - 1
    side = int(math.sqrt(n0))
    patch = pos[1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch = F.interpolate(
        patch,
        mode="bicubic",
        scale_factor=((grid[0] + 0.1) / side, (grid[1] + 0.1) / side),
        align_corners=False,
        recompute_scale_factor=False,
    )
    return torch.cat([pos[:1], patch.permute(0, 2, 3, 1).reshape(-1, dim)], 0)
