"""Entropy-minimisation methods: NoAdapt, TENT and MLMP share one loss.

MLMP minimises, over the LayerNorm weights of the image encoder, the mean entropy of
the patch predictions of the mean-fused selected layers, computed for every prompt
template separately, plus alpha times the entropy of the ordinary CLIP class token.
TENT is the same loss on the last layer with one template and no class-token term.
"""

from __future__ import annotations

import torch

from ..dense import entropy
from .base import Batch, Method
from .losses import token_entropy_loss
from .registry import register


@register
class NoAdapt(Method):
    """The segmenter alone: last layer, "a photo of a {}", no adaptation."""

    name = "noadapt"
    adapts = False


@register
class TENT(Method):
    """Pixel entropy of the last layer with the single template "a photo of a {}"."""

    name = "tent"
    use_class_token = False

    def step_loss(self, batch: Batch) -> torch.Tensor:
        alpha = self.adaptation.alpha if self.use_class_token else 0.0
        feats = self.features(batch, vanilla_cls=alpha > 0)
        loss = token_entropy_loss(self.encoder, feats, self.text.per_template, self.adaptation.safeguards.reliable_e0)
        if alpha > 0:
            cls = self.encoder.project(feats.vanilla_cls)  # (N, D)
            cls_logits = self.encoder.logit_scale * torch.einsum("nd,tqd->tnq", cls, self.text.per_template)
            loss = loss + alpha * entropy(cls_logits, -1).mean()
        return loss


@register
class MLMP(TENT):
    """Multi-level, multi-prompt entropy minimisation with entropy-weighted layer fusion."""

    name = "mlmp"
    default_templates = "templates_7"
    default_layers = "mlmp"
    default_fusion = "entropy_weighted"
    use_class_token = True
