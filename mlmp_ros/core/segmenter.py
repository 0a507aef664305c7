"""The segmenter a robot runs: images in, labels and confidence out, adapting per frame.

Frame -> resize -> windows -> (adapt) -> window logits -> per-pixel average over
windows -> softmax over names -> max over each class's names -> labels and confidence.
The ROS node and the benchmark both call :meth:`Segmenter.segment`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .backbone import LoadedCLIP, load_clip, resolve_device
from .config import Config, ConfigError
from .dense import DenseCLIP
from .methods import METHODS, Method, Precision
from .methods.precision import cpu_has_native_bf16
from .schema import SEGMENTER, runtime_names
from .text import ClassList, TextBank, resolve_templates
from .windows import (
    average_windows,
    extract_windows,
    fit_to_window,
    pair,
    resize_image,
    target_size,
    window_grid,
    window_plan,
)

LOG = logging.getLogger("mlmp_ros.segmenter")

# Settings that can change while the segmenter runs (the rest need a new Segmenter).
# Declared in core/config.py (``runtime=SEGMENTER``): classes, adaptation.mode, .steps, .lr.
RUNTIME_SETTINGS = runtime_names(Config, SEGMENTER)

# Upsampled class probabilities held at once (float elements, 64 MB): the full-resolution
# (C, H, W) volume is never built, whatever the input size.
POST_BUDGET = 1 << 24


class FrameLimitError(ValueError):
    """An image would need more windows than the segmenter's ``max_windows``."""


@dataclass
class FrameResult:
    """One image's segmentation at the requested resolution."""

    labels: np.ndarray  # (H, W) uint8 (<= 255 classes) or uint16
    confidence: np.ndarray  # (H, W) float32, probability of the winning class
    probabilities: np.ndarray | None = None  # (C, H, W) float32 when asked for


@dataclass(frozen=True)
class SegmenterStatus:
    """``Segmenter.status()``: counters and identity of a running segmenter."""

    adaptation_failures: int  # adaptation runs that ended non-finite and were rolled back
    last_adaptation_failure: str  # "" if none
    resets: int  # times reset() put the source weights back
    weights: str  # what was loaded: a tag, a file path, or "random"
    random_weights: bool
    class_names: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]  # the query names of each class


@dataclass
class BatchResult:
    frames: list[FrameResult]
    losses: list[float]  # loss at every adaptation step
    layer_weights: np.ndarray | None  # (S, n_windows) entropy weights of the layers
    status: str  # "ok", "skipped" or "restored: <reason>"
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


@dataclass
class _Layout:
    sizes: list[tuple[int, int]]  # original (H, W) per image
    processing: list[tuple[int, int]]  # (H, W) after the protocol resize
    corners: list[list[tuple[int, int]]]  # window corners per image


def default_layers(kind: str, num_layers: int) -> list[int]:
    """The method's layers: the last block, or MLMP's last 75% of the blocks."""
    if kind == "mlmp":
        return [-(i + 1) for i in range(max(1, round(0.75 * num_layers)))]
    return [-1]


class Segmenter:
    """A CLIP segmenter with a test-time adaptation method (see module docs).

    >>> seg = Segmenter(Config(classes=["cat", "dog", "sky"], weights="openai"))  # doctest: +SKIP
    >>> result = seg.segment([image_rgb_uint8])                                  # doctest: +SKIP
    >>> result.frames[0].labels, result.frames[0].confidence                       # doctest: +SKIP
    """

    def __init__(self, config: Config, *, loaded: LoadedCLIP | None = None):
        config.validate()
        self.config = config
        self.device = resolve_device(config.device)
        self.precision = Precision(config.precision, self.device)
        if config.precision == "auto":
            LOG.info("precision auto: %s on %s", self.precision.name, self.device)
        if self.device.type == "cpu" and config.flush_denormal:
            torch.set_flush_denormal(True)
        if self.precision.name == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            LOG.warning("this CPU has no native bf16 matrix instructions; bf16 will be slower than fp32 here")
        if loaded is None:
            loaded = load_clip(
                config.model,
                config.weights,
                cache_dir=config.cache_dir or None,
                offline=config.offline,
                device=self.device,
            )
        else:
            loaded.model.to(self.device)
        self.loaded = loaded
        self.encoder = DenseCLIP(loaded.model, config.attention, config.features, config.gaussian_std).to(self.device)
        method_cls = METHODS[config.adaptation.method]
        self.method_cls = method_cls
        try:
            self.templates = resolve_templates(config.templates or method_cls.default_templates)
            self.layers = self.encoder.resolve_layers(
                config.layers or default_layers(method_cls.default_layers, self.encoder.num_layers)
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.window = pair(config.window)
        self.stride = pair(config.stride)
        ph, pw = self.encoder.patch_size
        if self.window[0] % ph or self.window[1] % pw:
            raise ConfigError(f"window {config.window} must be a multiple of the patch size {ph}x{pw}")
        self.text = self._text_bank(ClassList.resolve(config.classes))
        # Refuse images that would need more windows than this (None: no limit); see plan().
        self.max_windows: int | None = None
        self.method: Method = method_cls(self.encoder, self.text, config, self.layers, self.precision)
        if uses_control(config.adaptation):  # budgets or safeguards (core/safeguards.py)
            from .safeguards import ControlOwner

            ControlOwner(config.adaptation).steer(self.method)

    # --------------------------------------------------------------- classes
    def _text_bank(self, classes: ClassList) -> TextBank:
        return TextBank(self.loaded.model, self.loaded.tokenizer, classes, self.templates)

    @property
    def class_names(self) -> list[str]:
        return list(self.text.classes.names)

    @property
    def random_weights(self) -> bool:
        return self.loaded.random_weights

    def set_classes(self, classes: Sequence[str] | str) -> None:
        """Switch to another class list; the text bank is recomputed once."""
        bank = self._text_bank(ClassList.resolve(classes))
        self.text = bank
        self.method.set_text(bank)
        self.config = self.config.replace(classes=list(classes) if not isinstance(classes, str) else [classes])

    def update(self, **changes) -> None:
        """Apply run-time changes (dotted names with ``__`` for dots): classes, mode, steps, lr."""
        names = {k.replace("__", "."): v for k, v in changes.items()}
        unknown = [k for k in names if k not in RUNTIME_SETTINGS]
        if unknown:
            raise ConfigError(f"{', '.join(unknown)} cannot change at run time (only {', '.join(RUNTIME_SETTINGS)})")
        new = self.config.replace(**names)
        if "classes" in names:
            self.set_classes(new.classes)
        self.method.set_runtime(mode=new.adaptation.mode, steps=new.adaptation.steps, lr=new.adaptation.lr)
        self.config = new

    def status(self) -> SegmenterStatus:
        """A snapshot of what callers report (the node's diagnostics), without reaching into the method."""
        return SegmenterStatus(
            adaptation_failures=self.method.failures,
            last_adaptation_failure=self.method.last_failure,
            resets=self.method.resets,
            weights=self.loaded.weights,
            random_weights=self.loaded.random_weights,
            class_names=tuple(self.text.classes.names),
            synonyms=self.text.classes.synonyms,
        )

    def reset(self) -> None:
        """Put the adapted parameters back to the source weights."""
        self.method.reset()

    # ----------------------------------------------------------------- frames
    def plan(self, height: int, width: int) -> tuple[tuple[int, int], int]:
        """(processing size, window count) of a height x width image; allocates nothing."""
        return window_plan(height, width, self.config.resize, self.window, self.stride)

    def check_size(self, height: int, width: int) -> None:
        """Raise :class:`FrameLimitError` if the image needs more than ``max_windows`` windows."""
        if self.max_windows is None:
            return
        size, count = self.plan(height, width)
        if count > self.max_windows:
            raise FrameLimitError(
                f"a {width}x{height} image needs {count} windows of {self.window[1]}x{self.window[0]} "
                f"(resize {list(self.config.resize)} makes it {size[1]}x{size[0]}), more than the limit of "
                f"{self.max_windows}; its aspect ratio or size is too extreme"
            )

    def check(self, images: Sequence[np.ndarray]) -> None:
        """Refuse images that are not uint8 RGB arrays (``ValueError``) or that need more windows than
        ``max_windows`` (:class:`FrameLimitError`).  Each frame is checked once, where it enters the
        core (:meth:`segment`, or the schedule's ``adapt_only``); :meth:`prepare` trusts that."""
        for i, img in enumerate(images):
            check_image(img, i)
            self.check_size(*img.shape[:2])

    def prepare(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, _Layout]:
        """Resize each image (passed :meth:`check` already), cut its windows and normalise them into one batch."""
        layout = _Layout([], [], [])
        windows = []
        for img in images:
            h, w = img.shape[:2]
            size = fit_to_window(target_size(h, w, self.config.resize), self.window)
            resized = resize_image(img, size)
            corners = window_grid(size[0], size[1], self.window, self.stride)
            tensor = torch.from_numpy(np.ascontiguousarray(resized)).to(self.device, non_blocking=True)
            windows.append(extract_windows(tensor.permute(2, 0, 1), corners, self.window))
            layout.sizes.append((h, w))
            layout.processing.append(size)
            layout.corners.append(corners)
        x = self.encoder.normalize(torch.cat(windows, 0))
        return x, layout

    def segment(
        self,
        images: Sequence[np.ndarray] | np.ndarray,
        *,
        output: str = "input",
        probabilities: bool = False,
    ) -> BatchResult:
        """Segment a batch of uint8 RGB images (any sizes) as one adaptation batch.

        ``output="input"`` returns maps at each image's own size, ``"processing"`` at
        the protocol resolution (where the benchmark scores).
        """
        if output not in ("input", "processing"):
            raise ValueError("output must be 'input' or 'processing'")
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif isinstance(images, np.ndarray):
            images = [images]
        if not images:
            raise ValueError("no images given")
        t0 = time.perf_counter()
        self.check(images)
        x, layout = self.prepare(images)
        t1 = self._sync_time()
        out = self.method.run(x)
        t2 = self._sync_time()
        frames = []
        start = 0
        for size, proc, corners in zip(layout.sizes, layout.processing, layout.corners):
            logits = average_windows(out.window_logits[start : start + len(corners)].float(), corners, proc)
            start += len(corners)
            probs = self.text.class_probabilities(logits.softmax(0), dim=0)  # (C, h, w)
            frames.append(self._finish(probs, size if output == "input" else proc, probabilities))
        t3 = time.perf_counter()
        weights = out.layer_weights.float().cpu().numpy() if out.layer_weights is not None else None
        timings = {"prepare": t1 - t0, "model": t2 - t1, "post": t3 - t2, "total": t3 - t0}
        return BatchResult(frames, out.losses, weights, out.status, timings)

    def _sync_time(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _finish(self, probs: torch.Tensor, size: tuple[int, int], keep: bool) -> FrameResult:
        if tuple(probs.shape[-2:]) != tuple(size):
            conf, labels, probs = upsample_argmax(probs, size, keep)
        else:
            conf, labels = probs.max(0)
        dtype = np.uint8 if probs.shape[0] <= 255 else np.uint16
        return FrameResult(
            labels=labels.to(torch.int32).cpu().numpy().astype(dtype),
            confidence=conf.float().cpu().numpy(),
            probabilities=probs.cpu().numpy() if keep else None,
        )


def upsample_argmax(probs: torch.Tensor, size: tuple[int, int], keep: bool, chunk: int | None = None):
    """Bilinear upsampling of class probabilities, then max / argmax, a few classes at a time.

    ``chunk`` classes are upsampled at once: 16 while that fits in :data:`POST_BUDGET`
    elements (up to 1 Mpx: exactly the computation of earlier versions), fewer for larger
    outputs, down to one class at a time, so memory is bounded by the output size, not
    classes x output size.  Each class is interpolated on its own and ties go to the
    lowest class index, so the labels do not depend on ``chunk`` (PyTorch may round a
    3-class chunk differently in the last bit of the confidence).  ``keep`` (the full
    volume) is for callers that ask for it.
    """
    n = probs.shape[0]
    if chunk is None:
        chunk = max(1, min(16, POST_BUDGET // max(1, size[0] * size[1])))
    best = labels = None
    kept = []
    for c0 in range(0, n, chunk):
        up = F.interpolate(probs[None, c0 : c0 + chunk], size=size, mode="bilinear", align_corners=False)[0]
        if keep:
            kept.append(up)
        if up.shape[0] == 1:
            val, idx = up[0], None
        else:
            val, idx = up.max(0)
        if best is None:
            best = val.clone() if keep and idx is None else val
            labels = torch.full(size, c0, dtype=torch.int64, device=val.device) if idx is None else idx + c0
            continue
        better = val > best
        torch.where(better, val, best, out=best)
        if idx is None:
            labels.masked_fill_(better, c0)
        else:
            torch.where(better, idx + c0, labels, out=labels)
        del up, val, idx, better
    return best, labels, (torch.cat(kept, 0) if keep else probs)


def uses_control(adaptation) -> bool:
    """True when budgets or safeguards differ from the paper's loop (which runs without a control)."""
    from .config import AdaptationConfig

    default = AdaptationConfig()
    return (adaptation.every, adaptation.budget_ms, adaptation.plateau, adaptation.safeguards) != (
        default.every, default.budget_ms, default.plateau, default.safeguards
    ) or adaptation.safeguards.reliable_e0 > 0


def check_image(img: np.ndarray, index: int = 0) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        got = f"{type(img).__name__} {getattr(img, 'dtype', '')} {getattr(img, 'shape', '')}"
        raise ValueError(f"image {index} must be a uint8 RGB array (H, W, 3), got {got}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"image {index} is empty")


