"""What MLMP's steps do to one image: the instrument behind "why MLMP loses where it loses".

For an MLMP cell of the world table (:mod:`mlmp_ros.bench.study.method_table`) this records,
next to the scene's per-class areas after the steps:

- the same areas for MLMP's fused prediction at 0 steps (``inter0``/``union0``), so the
  difference to NoAdapt splits into what the fusion does and what the steps do;
- how much the blocks MLMP fuses agree, before and after the steps, on the patch grid of
  the windows: the mean pairwise argmax agreement of the blocks' class predictions, the
  mean pairwise KL divergence between them, each block's agreement with the last block,
  and the entropy weights the fusion gave the blocks;
- the mean entropy of the fused prediction (divided by ln of the class count) before and
  after the steps;
- the class transitions of the steps: a classes x classes count of pixels whose label the
  steps changed (from the 0-step label to the adapted one), with how many of those moved
  pixels were right before and after.

Each block is read as MLMP's fusion reads it (its raw features projected and scored
against the template ensemble), all in one encoder pass.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...core.dense import patch_logits
from ...core.methods.losses import fuse_and_score
from ...world.textures import CLASSES
from ..scoring.metrics import SegmentationMetrics


def areas_record(pred: np.ndarray, labels: np.ndarray, losses: Sequence[float], seconds: float) -> dict[str, Any]:
    metrics = SegmentationMetrics(len(CLASSES), class_names=list(CLASSES))
    metrics.update(pred, labels)
    rec: dict[str, Any] = {
        "inter": metrics.intersection.tolist(),
        "union": metrics.union.tolist(),
        "seconds": round(seconds, 4),
    }
    if losses:
        rec["loss_first"], rec["loss_last"] = round(float(losses[0]), 5), round(float(losses[-1]), 5)
    return rec


def mlmp_cell(scorer, image: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """MLMP on one image with its diagnostics; the shared model is reset afterwards."""
    seg0 = scorer.segmenter("mlmp", steps=0)
    before_labels = seg0.segment([image]).frames[0].labels
    before = block_diagnostics(seg0)(image)
    seg = scorer.segmenter("mlmp")
    try:
        t0 = time.perf_counter()
        out = seg.segment([image])
        seconds = time.perf_counter() - t0
        after = block_diagnostics(seg)(image)  # episodic: the adapted weights stay until the next frame
    finally:
        seg.reset()
    after_labels = out.frames[0].labels
    rec = areas_record(after_labels, labels, out.losses, seconds)
    zero = areas_record(before_labels, labels, [], 0.0)
    rec["inter0"], rec["union0"] = zero["inter"], zero["union"]
    rec["precision"] = seg.precision.name
    rec["diag"] = {"before": before, "after": after,
                   "transitions": transitions(before_labels, after_labels, labels, seg.text.num_classes)}  # fmt: skip
    return rec


def block_diagnostics(seg):
    """A function of an image giving the block agreement and fused entropy of ``seg``'s current weights."""

    @torch.no_grad()
    def run(image: np.ndarray) -> dict[str, Any]:
        method, text, encoder = seg.method, seg.text, seg.encoder
        seg.check([image])
        x, _ = seg.prepare([image])
        batch = method.make_batch(x)
        with method.precision.autocast():
            feats = method.features(batch)
            fused, weights = fuse_and_score(encoder, feats, text.ensemble, method.fusion)
            raw = torch.stack(feats.raw, 0)
            per_layer = patch_logits(encoder.project(raw[:, :, 1:]), text.ensemble, encoder.logit_scale)
        blocks = _class_probs(text, per_layer.float().softmax(-1))  # (S, N, P, C)
        fused_p = _class_probs(text, fused.float().flatten(2).transpose(1, 2).softmax(-1))  # (N, P, C)
        out = block_agreement(blocks)
        out["fused_entropy"] = round(float(_entropy(fused_p).mean() / math.log(text.num_classes)), 5)
        out["layers"] = [int(b) for b in feats.layers]
        if weights is not None:
            out["layer_weights"] = [round(float(v), 5) for v in weights.float().mean(1)]
        return out

    return run


def _class_probs(text, query_probs: torch.Tensor) -> torch.Tensor:
    p = text.class_probabilities(query_probs, dim=-1)
    return p / p.sum(-1, keepdim=True)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def block_agreement(blocks: torch.Tensor) -> dict[str, Any]:
    """``blocks`` (S, ..., C) class probabilities of S blocks: pairwise agreement and KL, per-block entropy."""
    s = blocks.shape[0]
    arg = blocks.argmax(-1)
    logp = blocks.clamp_min(1e-12).log()
    agree, kl = [], []
    for i, j in itertools.combinations(range(s), 2):
        agree.append(float((arg[i] == arg[j]).float().mean()))
        kl_ij = (blocks[i] * (logp[i] - logp[j])).sum(-1).mean()
        kl_ji = (blocks[j] * (logp[j] - logp[i])).sum(-1).mean()
        kl.append(float(kl_ij + kl_ji) / 2)
    c = blocks.shape[-1]
    return {
        "agreement": round(float(np.mean(agree)), 5) if agree else 1.0,
        "kl": round(float(np.mean(kl)), 5) if kl else 0.0,
        "agreement_with_last": [round(float((arg[i] == arg[-1]).float().mean()), 5) for i in range(s)],
        "block_entropy": [round(float(_entropy(blocks[i]).mean() / math.log(c)), 5) for i in range(s)],
    }


def transitions(before: np.ndarray, after: np.ndarray, truth: np.ndarray, classes: int) -> dict[str, Any]:
    """Pixels whose label the steps changed: ``moved[a][b]`` from class a to b, and how many were right."""
    valid = truth < classes
    changed = (before != after) & valid
    b, a = before[changed].astype(np.int64), after[changed].astype(np.int64)
    moved = np.bincount(b * classes + a, minlength=classes * classes).reshape(classes, classes)
    t = truth[changed]
    return {
        "pixels": int(valid.sum()),
        "changed": int(changed.sum()),
        "right_before": int((b == t).sum()),
        "right_after": int((a == t).sum()),
        "moved": moved.tolist(),
    }
