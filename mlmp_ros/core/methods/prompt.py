"""TPT: test-time prompt tuning of a context shared by all classes.

A learnable context of ``n_ctx`` token embeddings, initialised from the embeddings of
"a photo of a", replaces the first tokens of "a photo of a <name>" for every query.
Each step runs the text encoder with the current context against the batch's patch
embeddings (last layer) and minimises the mean pixel entropy; Adam updates only the
context.  The image encoder never changes, so its features are computed once per batch.
"""

from __future__ import annotations

import torch
from torch import nn

from ..dense import entropy, patch_logits, to_grid
from ..text import encode_tokens
from .base import Batch, Method
from .losses import mean_patch_embeddings
from .registry import register


@register
class TPT(Method):
    """Test-time prompt tuning (see module docs)."""

    name = "tpt"

    def setup(self) -> None:
        """The learnable context, initialised from ``adaptation.tpt.init``, then the tokens."""
        clip = self.encoder.clip
        n_ctx = self.adaptation.tpt.n_ctx
        init = self.adaptation.tpt.init
        tok = self.text.tokenizer([init])[0]
        length = int(tok.argmax()) - 1  # tokens between <start> and <end>
        self._prefix = init if length == n_ctx else " ".join(["X"] * n_ctx)
        with torch.no_grad():
            ids = tok[1 : 1 + min(length, n_ctx)].to(clip.token_embedding.weight.device)
            init_ctx = clip.token_embedding(ids).float()
            if length < n_ctx:  # pad a short initial phrase with small random embeddings
                gen = torch.Generator().manual_seed(0)
                extra = torch.randn(n_ctx - length, init_ctx.shape[1], generator=gen) * 0.02
                init_ctx = torch.cat([init_ctx, extra.to(init_ctx.device)], 0)
        self.ctx = nn.Parameter(init_ctx.clone())
        super().setup()  # -> setup_text: the tokens of every query

    def setup_text(self) -> None:
        """The tokenised "<context> <query>" of every query of the current class list."""
        texts = [f"{self._prefix} {q}" for q in self.text.classes.queries]
        self.tokens = self.text.tokenizer(texts).to(self.ctx.device)

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [("tpt.ctx", self.ctx)]

    def text_features(self) -> torch.Tensor:
        return encode_tokens(self.encoder.clip, self.tokens, self.ctx)

    def make_batch(self, x: torch.Tensor) -> Batch:
        batch = super().make_batch(x)
        with torch.no_grad(), self.precision.autocast():
            feats = self.features(batch)
            batch.extras["patches"] = mean_patch_embeddings(self.encoder, feats)
        batch.grid = feats.grid
        return batch

    def step_loss(self, batch: Batch) -> torch.Tensor:
        logits = patch_logits(batch.extras["patches"], self.text_features(), self.encoder.logit_scale)
        return entropy(logits, -1).mean()

    @torch.no_grad()
    def predict(self, batch: Batch):
        logits = patch_logits(batch.extras["patches"], self.text_features(), self.encoder.logit_scale)
        logits = to_grid(logits, batch.grid)
        window = batch.x.shape[-2:]
        return torch.nn.functional.interpolate(logits, size=window, mode="bilinear", align_corners=False), None
