"""The small interface every test-time adaptation method implements.

A method owns the parameters it adapts and their optimiser.  The base class handles
what is common: which parameters train, the optimiser, the episodic / continual /
off settings, resets, and the safeguard that puts the last good parameters back when
an adaptation fails (NaN or inf loss or weights, out of memory: core/methods/guards.py).
Subclasses define the loss of one step (:meth:`Method.step_loss`) and, where they differ
from the default, how a batch is made (:meth:`Method.make_batch`) and predicted.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, ConfigError
from ..dense import DenseCLIP, DenseFeatures
from ..text import TextBank
from .compiler import Compiler, resolve_compile
from .guards import AdaptationCancelled, FailureWarning, checked_adapt
from .losses import fuse_and_score
from .precision import Precision


@dataclass
class Batch:
    """One adaptation batch: all windows of the batch's images, normalised."""

    x: torch.Tensor  # (N, 3, wh, ww)
    z_pre: torch.Tensor | None = None  # cached tokens before ln_pre, when they cannot change
    grid: tuple[int, int] = (0, 0)
    extras: dict = field(default_factory=dict)


@dataclass
class MethodOutput:
    window_logits: torch.Tensor  # (N, Q, wh, ww) over queries
    losses: list[float]
    layer_weights: torch.Tensor | None  # (S, N) entropy weights, when fused that way
    status: str = "ok"  # "ok", "skipped" (mode off), or "restored: <reason>"


def visual_layernorm_names(visual: nn.Module) -> list[str]:
    names = []
    for mod_name, mod in visual.named_modules():
        if isinstance(mod, nn.LayerNorm):
            names += [f"{mod_name}.{p}" for p, _ in mod.named_parameters(recurse=False) if p in ("weight", "bias")]
    return names


class Method:
    """Base of every adaptation method (see module docs)."""

    name: ClassVar[str] = "base"
    default_templates: ClassVar[str] = "single"
    default_layers: ClassVar[str] = "last"  # "last" or "mlmp" (the last 75% of the blocks)
    default_fusion: ClassVar[str] = "mean"
    adapts: ClassVar[bool] = True  # False for methods that never change weights

    def __init__(self, encoder: DenseCLIP, text: TextBank, config: Config, layers: tuple[int, ...], precision: Precision):
        self.encoder = encoder
        self.text = text
        self.config = config
        self.adaptation = config.adaptation
        self.layers = layers
        self.fusion = self.default_fusion if config.fusion == "auto" else config.fusion
        self.precision = precision
        self.mode = self.adaptation.mode
        self.steps = self.adaptation.steps
        self.frames = 0
        self.failures = 0
        self.resets = 0
        self.last_failure = ""
        # Budgets and continual safeguards, set by core/safeguards.py's ControlOwner; None = the paper's loop.
        self.control = None
        self.reset_reasons: dict[str, int] = {}
        # Called before every optimiser step; may raise AdaptationCancelled (a node stopping).
        self.step_hook: Callable[[], None] | None = None
        self._failure_warning = FailureWarning()
        self.setup()
        self.named_params = self.trainable_parameters() if self.adapts else []
        self.compiler = Compiler(resolve_compile(config.compile, precision.device))
        self.configure()
        params = [p for _, p in self.named_params]
        self.optimizer = self.make_optimizer(params) if params else None
        self._source = self.snapshot()

    # ---------------------------------------------------------------- set-up
    def setup(self) -> None:
        """Build the method's own state (learnable tensors, caches, per-frame records).

        Called once by ``__init__``, after the common attributes are set and before
        :meth:`trainable_parameters`, which only reports what is built here.  The
        default builds nothing of its own and calls :meth:`setup_text`.  Subclasses
        that override it call ``super().setup()`` last (or :meth:`setup_text` themselves).
        """
        self.setup_text()

    def setup_text(self) -> None:
        """Rebuild the state that depends on the class list (``self.text``).

        Called by :meth:`setup` and again by :meth:`set_text`; learnable parameters and
        the optimiser are never rebuilt here (the adaptation is class-agnostic and stays).
        """

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The image encoder's parameters matched by ``adaptation.params`` (paper: every LayerNorm).

        A getter: it builds nothing (method state belongs in :meth:`setup`).
        """
        visual = self.encoder.visual
        named = dict(visual.named_parameters())
        ln_names = visual_layernorm_names(visual)
        chosen: list[str] = []
        for pattern in self.adaptation.params:
            hits = ln_names if pattern == "layernorm" else [n for n in named if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise ConfigError(f"adaptation.params pattern '{pattern}' matches no image-encoder parameter")
            chosen += [n for n in hits if n not in chosen]
        return [(f"visual.{n}", named[n]) for n in chosen]

    def configure(self) -> None:
        """Freeze everything, then let the adapted parameters train."""
        self.encoder.clip.requires_grad_(False)
        for _, p in self.named_params:
            p.requires_grad_(True)

    @property
    def embeddings_frozen(self) -> bool:
        """True when the patch embedding and positional embedding never change."""
        frozen = ("visual.conv1.", "visual.class_embedding", "visual.positional_embedding")
        return not any(n.startswith(frozen) for n, _ in self.named_params)

    def make_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        a = self.adaptation
        if a.optimizer == "adam":
            return torch.optim.Adam(params, lr=a.lr, betas=tuple(a.betas), weight_decay=a.weight_decay)
        if a.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=a.lr, betas=tuple(a.betas), weight_decay=a.weight_decay)
        return torch.optim.SGD(params, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)

    def set_text(self, text: TextBank) -> None:
        """Use another class list (the adapted weights are class-agnostic and stay)."""
        self.text = text
        self.setup_text()

    def set_lr(self, lr: float) -> None:
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    # --------------------------------------------------------------- state
    def snapshot(self) -> dict:
        """Adapted parameters and optimiser state, copied."""
        state = {}
        if self.optimizer is not None:
            state = {
                p: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
                for p, s in self.optimizer.state.items()
            }
        return {
            "params": [p.detach().clone() for _, p in self.named_params],
            "optim": state,
        }

    def source_weights(self) -> list[torch.Tensor]:
        """A copy of the adapted parameters' source values (what :meth:`reset` puts back)."""
        return [t.clone() for t in self._source["params"]]

    def take_source_from(self, other: Method) -> None:
        """Start from ``other``'s source weights (without optimiser state), whatever the model's
        adapted values are now: a second method on the same model resets to the same source."""
        self._source = {"params": other.source_weights(), "optim": {}}

    def restore_source(self) -> None:
        """The source weights and a fresh optimiser back (nothing counted; see :meth:`reset`)."""
        self.restore(self._source)

    @torch.no_grad()
    def blend_with_source(self, alpha: float) -> None:
        """``theta <- alpha * theta + (1 - alpha) * theta_source`` (ROID's weight ensembling)."""
        for (_, p), src in zip(self.named_params, self._source["params"]):
            p.mul_(alpha).add_(src, alpha=1.0 - alpha)

    @torch.no_grad()
    def restore(self, snap: dict) -> None:
        for (_, p), saved in zip(self.named_params, snap["params"]):
            p.copy_(saved)
        if self.optimizer is not None:
            self.optimizer.state.clear()
            for p, s in snap["optim"].items():
                self.optimizer.state[p] = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
            self.optimizer.zero_grad(set_to_none=True)

    def set_runtime(self, *, mode: str, steps: int, lr: float) -> None:
        """The settings that may change between frames (``Segmenter.update``, the node's parameters)."""
        self.mode = mode
        self.steps = steps
        self.set_lr(lr)

    def describe(self) -> dict:
        """Method-specific notes for the benchmark's trial record; none by default."""
        return {}

    def reset(self, reason: str = "manual") -> None:
        """Back to the source weights and a fresh optimiser; ``reason`` is counted."""
        self.restore_source()
        self.frames = 0
        self.resets += 1
        self.reset_reasons[reason] = self.reset_reasons.get(reason, 0) + 1
        if self.control is not None:
            self.control.on_reset()

    def parameters_finite(self) -> bool:
        if not self.named_params:
            return True
        return bool(torch.stack([p.detach().isfinite().all() for _, p in self.named_params]).all())

    # ------------------------------------------------------------ running
    def make_batch(self, x: torch.Tensor) -> Batch:
        """The adaptation batch of normalised windows ``x`` (the frozen embeddings' tokens cached)."""
        batch = Batch(x=x)
        if self.embeddings_frozen:
            with torch.no_grad(), self.precision.autocast():
                batch.z_pre, batch.grid = self.encoder.tokens(x)
        return batch

    def features(self, batch: Batch, layers: tuple[int, ...] | None = None, vanilla_cls: bool = False) -> DenseFeatures:
        if batch.z_pre is not None:
            z_pre, grid = batch.z_pre, batch.grid
        else:
            z_pre, grid = self.encoder.tokens(batch.x)
        return self.encoder.encode(z_pre, grid, layers or self.layers, vanilla_cls)

    def step_loss(self, batch: Batch) -> torch.Tensor:
        """The loss of one adaptation step on ``batch`` (with gradients)."""
        raise NotImplementedError

    def adapt(self, batch: Batch) -> list[torch.Tensor]:
        """Run the configured steps; the losses are returned as detached tensors."""
        losses = []
        control = self.control
        for i in range(self.steps):
            if control is not None and not control.before_step(self, i, losses):
                break
            self.before_step()
            loss = self.compiler("step", self._step, batch)
            losses.append(loss.detach())
            self.precision.backward_and_step(loss, self.optimizer)
            if control is not None:
                control.after_step(self)
        return losses

    def before_step(self) -> None:
        """Every adaptation loop calls this before each step (see ``step_hook``)."""
        if self.step_hook is not None:
            self.step_hook()

    def _step(self, batch: Batch) -> torch.Tensor:
        with self.precision.autocast():
            return self.step_loss(batch)

    def _scores(self, batch: Batch, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with self.precision.autocast():
            feats = self.features(batch)
            return fuse_and_score(self.encoder, feats, text, self.fusion)

    @torch.no_grad()
    def predict(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Window logits over queries (N, Q, wh, ww) and, if used, the layer weights (S, N)."""
        logits, weights = self.compiler("predict", self._scores, batch, self.text.ensemble)
        window = batch.x.shape[-2:]
        return F.interpolate(logits, size=window, mode="bilinear", align_corners=False), weights

    def run(self, x: torch.Tensor) -> MethodOutput:
        """Adapt on a batch of windows per the mode, then predict."""
        compiled_before = self.compiler.compilations
        t0 = time.perf_counter()
        out = self._run(x)
        if self.compiler.compilations != compiled_before:
            self.compiler.seconds += time.perf_counter() - t0
        return out

    def _run(self, x: torch.Tensor) -> MethodOutput:
        batch = self.make_batch(x)
        status, losses = self.adapt_frame(batch)
        window_logits, weights = self.predict(batch)
        if self.control is not None:
            self.control.observe(window_logits)
        return MethodOutput(window_logits=window_logits, losses=losses, layer_weights=weights, status=status)

    def adapt_frame(self, batch: Batch) -> tuple[str, list[float]]:
        """Adapt on one prepared batch per the mode (and the control's budgets and resets)."""
        losses: list[float] = []
        status = "skipped"
        control = self.control
        if self.mode != "off" and self.steps > 0 and self.adapts and (control is None or control.begin_frame(batch)):
            if self.mode == "episodic":
                self.restore_source()
            elif self.adaptation.reset_every and self.frames >= self.adaptation.reset_every:
                self.reset("periodic")
            elif control is not None and (reason := control.reset_reason()):
                self.reset(reason)
            before = self.snapshot() if self.mode == "continual" else self._source
            status, losses = self._guarded_adapt(batch, before)
            self.frames += 1
        return status, losses

    def _guarded_adapt(self, batch: Batch, before: dict) -> tuple[str, list[float]]:
        """Adapt on ``batch``; a failed adaptation puts ``before`` back (see core/methods/guards.py)."""
        cuda = self.encoder.visual.conv1.weight.is_cuda
        try:
            losses, reason = checked_adapt(lambda: self.adapt(batch), self.parameters_finite, cuda=cuda)
        except AdaptationCancelled:
            self.restore(before)  # no half-adapted weights
            raise
        if not reason:
            return "ok", losses
        self.restore(before)
        self.failures += 1
        self.last_failure = reason
        self._failure_warning.warn(reason)
        return f"restored: {reason}", losses

    def parameter_count(self) -> int:
        return sum(p.numel() for _, p in self.named_params)
