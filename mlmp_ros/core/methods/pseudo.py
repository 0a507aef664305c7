"""CLIPArTT and WATT: token-level pseudo-label distillation on the visual LayerNorms.

Both build, for every patch token of the batch, a text embedding that serves as its
pseudo-label (CLIPArTT: the prompt "a photo of a c1 or c2 or c3" of the token's top-K
classes; WATT: the token's top-1 class under one template).  With F the tokens'
normalised features and T their pseudo-label embeddings, the soft targets are
``softmax_rows(((F F^T + T T^T) / 2) / temperature)``, the logits are every token's
scores against every token's pseudo-label, and the loss is the cross-entropy of the
logits against the targets, averaged over tokens.

The similarity matrices have one row and one column per token of the batch, so their
memory grows with the square of the tokens (the reference ran out of GPU memory on
Cityscapes with CLIPArTT).  Here they are computed ``chunk_rows`` rows at a time with
activation checkpointing, so memory grows with ``chunk_rows x tokens`` instead.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch.utils.checkpoint import checkpoint

from .base import Batch, Method
from .losses import iter_chunks, mean_patch_embeddings
from .registry import register


def _row_block(feats: torch.Tensor, labels: torch.Tensor, r0: int, r1: int, scale: torch.Tensor, temperature: float):
    f_rows, t_rows = feats[r0:r1], labels[r0:r1]
    targets = torch.softmax(((f_rows @ feats.t()) + (t_rows @ labels.t())) / 2 / temperature, dim=-1)
    log_probs = torch.log_softmax(scale * (f_rows @ labels.t()), dim=-1)
    return -(targets * log_probs).sum()


def token_distillation_loss(
    feats: torch.Tensor,
    labels: torch.Tensor,
    scale: torch.Tensor,
    temperature: float,
    chunk_rows: int,
    layout: str = "token",
    windows: int = 1,
) -> torch.Tensor:
    """Mean token cross-entropy against the soft targets (see module docs).

    ``feats`` (M, D) normalised token features with gradients, ``labels`` (M, D)
    normalised pseudo-label embeddings.  ``layout="reference"`` reproduces the
    reference port, which reshapes its (windows, M, h, w) logits to (-1, M) so a row
    is not one token's scores; it needs the full M x M matrices.
    """
    feats, labels = feats.float(), labels.float()
    m = feats.shape[0]
    if layout == "reference":
        per_window = feats.view(windows, m // windows, -1)
        logits = (scale * torch.einsum("npd,md->nmp", per_window, labels)).reshape(-1, m)
        targets = torch.softmax(((feats @ feats.t()) + (labels @ labels.t())) / 2 / temperature, dim=-1)
        return (-(targets * torch.log_softmax(logits, dim=-1)).sum(1)).mean()
    if m <= chunk_rows:
        return _row_block(feats, labels, 0, m, scale, temperature) / m
    total = feats.new_zeros(())
    for r0, r1 in iter_chunks(m, chunk_rows):
        total = total + checkpoint(_row_block, feats, labels, r0, r1, scale, temperature, use_reentrant=False)
    return total / m


class _TokenDistillation(Method):
    """Shared machinery: patch features with gradients and the token loss."""

    def _patch_features(self, batch: Batch) -> torch.Tensor:
        return mean_patch_embeddings(self.encoder, self.features(batch))  # (N, P, D)

    def _loss(self, patches: torch.Tensor, labels: torch.Tensor, temperature: float, chunk_rows: int, layout: str):
        n, p, d = patches.shape
        return token_distillation_loss(
            patches.reshape(n * p, d), labels, self.encoder.logit_scale, temperature, chunk_rows, layout, windows=n
        )

    def describe(self) -> dict:
        cfg = self._settings()
        if cfg.layout == "reference":
            return {"token_loss": "full token x token matrices (reference layout); memory grows with tokens^2"}
        return {"token_loss": f"chunked: {cfg.chunk_rows} rows of the token x token matrices at a time"}

    def _settings(self):
        raise NotImplementedError


@register
class CLIPArTT(_TokenDistillation):
    """CLIPArTT with K classes per token-level prompt."""

    name = "clipartt"
    cache_size = 20000

    def setup_text(self) -> None:
        """An empty prompt-embedding cache (its keys are indices into the class list)."""
        self._prompt_cache: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()

    def _settings(self):
        return self.adaptation.clipartt

    def prompt_texts(self, combos: list[tuple[int, ...]]) -> list[str]:
        """"a photo of a c1 or c2 or c3" for each combination of query indices."""
        queries = self.text.classes.queries
        template = self.text.templates[0]
        return [template.format(" or ".join(queries[i] for i in combo)) for combo in combos]

    @torch.no_grad()
    def prompt_embeddings(self, top: torch.Tensor) -> torch.Tensor:
        """Embeddings (M, D) of the prompts of each row of ``top`` (M, K), cached by combination."""
        uniq, inverse = torch.unique(top, dim=0, return_inverse=True)
        keys = [tuple(r) for r in uniq.tolist()]
        missing = [k for k in keys if k not in self._prompt_cache]
        if missing:
            for key, emb in zip(missing, self.text.encode(self.prompt_texts(missing))):
                self._prompt_cache[key] = emb
        for key in keys:
            self._prompt_cache.move_to_end(key)
        table = torch.stack([self._prompt_cache[k] for k in keys])
        while len(self._prompt_cache) > self.cache_size:
            self._prompt_cache.popitem(last=False)
        return table[inverse]

    def step_loss(self, batch: Batch) -> torch.Tensor:
        cfg = self.adaptation.clipartt
        patches = self._patch_features(batch)
        with torch.no_grad():
            scores = self.encoder.logit_scale * (patches.detach().float() @ self.text.per_template[0].t())
            k = min(cfg.k, scores.shape[-1])
            top = scores.topk(k, dim=-1).indices  # (N, P, K): each token's top-K, best first
            if cfg.layout == "reference":
                # the reference views its (N, K, h, w) top-K map as rows of K, so a prompt
                # holds the rank-r classes of K neighbouring tokens, not one token's top-K
                top = top.permute(0, 2, 1)
            labels = self.prompt_embeddings(top.reshape(-1, k))
        return self._loss(patches, labels, cfg.temperature, cfg.chunk_rows, cfg.layout)


@register
class WATT(_TokenDistillation):
    """WATT-S: L steps per template from the current average, averaged, M times."""

    name = "watt"
    default_templates = "templates_7"

    def setup(self) -> None:
        self.round_losses: list[float] = []  # the mean last loss of each round of the last frame
        super().setup()

    def _settings(self):
        return self.adaptation.watt

    def step_loss(self, batch: Batch, template: int = 0) -> torch.Tensor:
        cfg = self.adaptation.watt
        text = self.text.per_template[template]
        patches = self._patch_features(batch)
        with torch.no_grad():
            top1 = (patches.detach().float() @ text.t()).argmax(-1).reshape(-1)
        return self._loss(patches, text[top1], cfg.temperature, cfg.chunk_rows, cfg.layout)

    @torch.no_grad()
    def _set_params(self, values: list[torch.Tensor]) -> None:
        for (_, p), v in zip(self.named_params, values):
            p.copy_(v)

    def adapt(self, batch: Batch) -> list[torch.Tensor]:
        """M rounds; in each, L steps per template (from the current average unless
        ``sequential``), then the parameters become the average of the templates' runs.

        With a control (``method.control``, core/safeguards.py) the budgets apply here too:

        - ``adaptation.budget_ms``: checked before every one of the L x M x templates
          steps, as in the plain loop (no step starts that would pass the budget).  A
          round cut short ends there: the runs it has (the interrupted template's run as
          its last step left it, if it took a step) are averaged as a whole round's would
          be; a round that took no step leaves the previous average.
        - ``adaptation.plateau``: compared between rounds, not steps (within a round the
          templates' losses are not comparable): the next round does not start when the
          last round's mean loss (:attr:`round_losses`) improved on the round before by
          less than ``plateau`` times that loss.  So at least two rounds run.
        - ``ensemble_alpha`` pulls toward the source after every step, as in the plain loop.
        """
        cfg = self.adaptation.watt
        control = self.control
        losses: list[torch.Tensor] = []
        average = [p.detach().clone() for _, p in self.named_params]
        self.round_losses.clear()
        for _ in range(cfg.m):
            if control is not None and len(self.round_losses) >= 2 and control.plateau_stop(*self.round_losses[-2:]):
                break
            runs, round_loss, cut = self._round(batch, average, losses)
            if runs:
                average = [sum(values) / len(values) for values in zip(*runs)]
                self.round_losses.append(float(torch.stack(round_loss).mean()))
            self._set_params(average)
            if cut:
                break
        return losses

    def _round(self, batch: Batch, average: list[torch.Tensor], losses: list[torch.Tensor]):
        """One round: each template's run of L steps.  Returns the runs' parameters, their
        last losses, and whether the budget cut the round short."""
        cfg = self.adaptation.watt
        control = self.control
        runs: list[list[torch.Tensor]] = []
        round_loss: list[torch.Tensor] = []
        for t in range(self.text.per_template.shape[0]):
            if not cfg.sequential:
                self._set_params(average)
                self.optimizer.state.clear()
            for i in range(cfg.l):
                if control is not None and not control.before_step(self, len(losses), ()):
                    if i:  # the interrupted run counts as it stands
                        round_loss.append(losses[-1])
                        runs.append([p.detach().clone() for _, p in self.named_params])
                    return runs, round_loss, True
                self.before_step()
                with self.precision.autocast():
                    loss = self.step_loss(batch, t)
                losses.append(loss.detach())
                self.precision.backward_and_step(loss, self.optimizer)
                if control is not None:
                    control.after_step(self)
            round_loss.append(losses[-1])
            runs.append([p.detach().clone() for _, p in self.named_params])
        return runs, round_loss, False
