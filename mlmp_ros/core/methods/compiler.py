"""torch.compile of a method's hot functions (``compile: auto | on | off``)."""

from __future__ import annotations

import logging

import torch

from .guards import is_out_of_memory

LOG = logging.getLogger("mlmp_ros.methods")


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


__all__ = ["Compiler", "resolve_compile"]
