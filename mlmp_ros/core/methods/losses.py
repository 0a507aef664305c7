"""The scores and losses the methods share: layer fusion, patch embeddings, token entropy."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ..dense import DenseCLIP, DenseFeatures, entropy, patch_logits, to_grid


def fuse_and_score(
    encoder: DenseCLIP, feats: DenseFeatures, text: torch.Tensor, fusion: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Patch logits (N, Q, h, w) against ``text`` (Q, D) after fusing the layers.

    ``mean``: the mean of the raw layer features.  ``entropy_weighted``: each layer's
    mean patch entropy H_b gives the weight softmax_b(-H_b) per image; the raw features
    are summed with these weights.  One encoder pass serves both.
    """
    scale = encoder.logit_scale
    raw = torch.stack(feats.raw, 0)  # (S, N, L, D)
    weights = None
    if fusion == "entropy_weighted" and raw.shape[0] > 1:
        per_layer = patch_logits(encoder.project(raw[:, :, 1:]), text, scale)  # (S, N, P, Q)
        weights = torch.softmax(-entropy(per_layer, -1).mean(-1), dim=0)  # (S, N)
        fused = (raw * weights[:, :, None, None].to(raw.dtype)).sum(0)
    else:
        fused = raw.mean(0) if raw.shape[0] > 1 else raw[0]
    logits = patch_logits(encoder.project(fused[:, 1:]), text, scale)
    return to_grid(logits, feats.grid), weights


def mean_patch_embeddings(encoder: DenseCLIP, feats: DenseFeatures) -> torch.Tensor:
    """The patch tokens' embeddings (N, P, D) of the mean of the selected layers' raw features."""
    fused = torch.stack(feats.raw, 0).mean(0) if len(feats.raw) > 1 else feats.raw[0]
    return encoder.project(fused[:, 1:])


def token_entropy_loss(
    encoder: DenseCLIP, feats: DenseFeatures, per_template: torch.Tensor, reliable_e0: float = 0.0
) -> torch.Tensor:
    """Mean over templates, images and patches of the entropy of the fused features' logits.

    ``reliable_e0 > 0`` (EATA's reliable-sample filter, per token): only tokens whose
    entropy is below ``reliable_e0 * ln(Q)`` count (Q text queries); none -> loss 0.
    """
    emb = mean_patch_embeddings(encoder, feats)  # (N, P, D)
    logits = encoder.logit_scale * torch.einsum("npd,tqd->tnpq", emb, per_template)
    ent = entropy(logits, -1)
    if reliable_e0 <= 0:
        return ent.mean()
    keep = (ent.detach() < reliable_e0 * math.log(logits.shape[-1])).to(ent.dtype)
    return (ent * keep).sum() / keep.sum().clamp(min=1.0)


def iter_chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of consecutive chunks of at most ``size`` out of ``total``."""
    for start in range(0, total, size):
        yield start, min(total, start + size)


__all__ = ["fuse_and_score", "iter_chunks", "mean_patch_embeddings", "token_entropy_loss"]
