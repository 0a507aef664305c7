"""The small interface every test-time adaptation method implements.

A method owns the parameters it adapts and their optimiser.  The base class handles
what is common: which parameters train, the optimiser, the episodic / continual /
off settings, resets, and the safeguard that puts the last good parameters back when
an adaptation fails (NaN or inf loss or weights, out of memory).  Subclasses define
the loss of one step (:meth:`Method.step_loss`) and, where they differ from the
default, how a batch is prepared and predicted.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, ConfigError
from ..dense import DenseCLIP, DenseFeatures, entropy, patch_logits, to_grid
from ..text import TextBank

LOG = logging.getLogger("mlmp_ros.methods")
WARN_THROTTLE = 5.0  # seconds between "adaptation failed" warnings


class AdaptationCancelled(Exception):
    """Raised by a step hook to stop an adaptation between steps (the weights go back)."""


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 matrices natively (AVX-512-BF16 or AMX)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:  # noqa: BLE001 - private API may move
        return False


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA with bf16 and on CPUs with native bf16, else fp32."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


class Precision:
    """Autocast for the matrix products; LayerNorm, softmax, entropy and Adam stay float32."""

    def __init__(self, name: str, device: torch.device):
        self.setting = name
        name = resolve_precision(name, device)
        self.name = name
        self.device = device
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
        if self.dtype is torch.float16 and device.type != "cuda":
            raise ConfigError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype is torch.float16 else None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        optimizer.zero_grad(set_to_none=True)


def resolve_compile(setting: str, device: torch.device) -> bool:
    """``compile: auto`` -> on for CUDA, off on the CPU.

    Measured on ViT-B/16 (docs/performance.md): on the CPU the matrix products are the
    same oneDNN kernels compiled or not, the fusable element-wise work is a small share,
    and inductor needs minutes of C++ compilation per shape, so it does not pay there.
    """
    if setting in ("on", "off"):
        return setting == "on"
    return device.type == "cuda"


class Compiler:
    """torch.compile (inductor) of a method's hot functions, once per input shape.

    Each function is compiled the first time it is called; a new input shape compiles
    again (frames of the same shape reuse it).  ``seconds`` adds up the frames that
    compiled (compilation, including the backward graph's, plus that frame's run).  If
    compilation or a compiled call fails, a warning says why and the method runs eager
    from then on.
    """

    backend = "inductor"

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.failed = ""
        self.seconds = 0.0
        self.compilations = 0
        self._fns: dict[str, object] = {}
        self._seen: set[tuple] = set()

    def __call__(self, name: str, fn, *args):
        if not self.enabled or self.failed:
            return fn(*args)
        compiled = self._fns.get(name)
        if compiled is None:
            compiled = self._fns[name] = torch.compile(fn, dynamic=False, backend=self.backend)
        key = (name, torch.is_grad_enabled(), *(_shape_key(a) for a in args))
        first = key not in self._seen
        try:
            out = compiled(*args)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            self.failed = f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
            LOG.warning("torch.compile of %s failed (%s); running eager from now on", name, self.failed)
            return fn(*args)
        if first:
            self._seen.add(key)
            self.compilations += 1
        return out

    def info(self) -> dict:
        return {"enabled": self.enabled, "compilations": self.compilations, "seconds": self.seconds, "failed": self.failed}


def _shape_key(value) -> tuple:
    if torch.is_tensor(value):
        return (tuple(value.shape), value.dtype)
    tensors = [v for v in getattr(value, "__dict__", {}).values() if torch.is_tensor(v)]
    return tuple((tuple(t.shape), t.dtype) for t in tensors)


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
        # Budgets and continual safeguards (core/safeguards.py); None = the paper's loop.
        self.control = None
        self.reset_reasons: dict[str, int] = {}
        # Called before every optimiser step; may raise AdaptationCancelled (a node stopping).
        self.step_hook: Callable[[], None] | None = None
        self._warned_at = -float("inf")
        self._unwarned = 0
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
        self.restore(self._source)
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
    def prepare(self, x: torch.Tensor) -> Batch:
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
        batch = self.prepare(x)
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
                self.restore(self._source)
            elif self.adaptation.reset_every and self.frames >= self.adaptation.reset_every:
                self.reset("periodic")
            elif control is not None and (reason := control.reset_reason()):
                self.reset(reason)
            before = self.snapshot() if self.mode == "continual" else self._source
            status, losses = self._guarded_adapt(batch, before)
            self.frames += 1
        return status, losses

    def _guarded_adapt(self, batch: Batch, before: dict) -> tuple[str, list[float]]:
        reason = ""
        losses: list[float] = []
        try:
            loss_tensors = self.adapt(batch)
            if loss_tensors:
                losses = torch.stack([t.float() for t in loss_tensors]).tolist()
            if not all(map(_finite, losses)):
                reason = "non-finite loss"
            elif not self.parameters_finite():
                reason = "non-finite weights"
        except AdaptationCancelled:
            self.restore(before)  # no half-adapted weights
            raise
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            reason = "out of memory"
            if self.encoder.visual.conv1.weight.is_cuda:
                torch.cuda.empty_cache()
        if not reason:
            return "ok", losses
        self.restore(before)
        self.failures += 1
        self.last_failure = reason
        now = time.monotonic()
        if now - self._warned_at >= WARN_THROTTLE:
            more = f" ({self._unwarned} more failures since the last warning)" if self._unwarned else ""
            LOG.warning("adaptation failed (%s); the last good weights are back%s", reason, more)
            self._warned_at, self._unwarned = now, 0
        else:
            self._unwarned += 1
        return f"restored: {reason}", losses

    def parameter_count(self) -> int:
        return sum(p.numel() for _, p in self.named_params)


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


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
    for start in range(0, total, size):
        yield start, min(total, start + size)

