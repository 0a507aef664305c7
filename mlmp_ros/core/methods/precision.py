"""Numerical precision of a method's matrix products: fp32, bf16 or fp16 (autocast)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..config import ConfigError

# CPU features that multiply bf16 matrices natively, as torch and Linux name them.
NATIVE_BF16 = ("avx512_bf16", "amx_tile")


def cpu_flags() -> set[str]:
    """The CPU features this machine reports: torch's capability list (``torch.cpu.get_capabilities``,
    the cpuinfo detection its kernels use) where this torch has it, else Linux's /proc/cpuinfo."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        return {name for name, value in capabilities().items() if value is True}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 matrices natively (AVX-512-BF16 or AMX)."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16)


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


__all__ = ["Precision", "cpu_flags", "cpu_has_native_bf16", "resolve_precision"]
