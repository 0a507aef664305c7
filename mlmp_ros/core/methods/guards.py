"""What stops an adaptation or makes it fail: a cancel request, running out of memory, and
non-finite losses or weights.  The method puts the last good weights back either way."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch

LOG = logging.getLogger("mlmp_ros.methods")
WARN_THROTTLE = 5.0  # seconds between "adaptation failed" warnings


class AdaptationCancelled(Exception):
    """Raised by a step hook to stop an adaptation between steps (the weights go back)."""


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def checked_adapt(
    adapt: Callable[[], list[torch.Tensor]], weights_finite: Callable[[], bool], *, cuda: bool
) -> tuple[list[float], str]:
    """Run ``adapt()``; its losses and why it failed ("" when it did not).

    A failure is a non-finite loss, non-finite weights after the steps, or running out of
    memory (then CUDA's cached blocks are freed when ``cuda``).  Other errors, and
    :class:`AdaptationCancelled`, are raised.
    """
    losses: list[float] = []
    try:
        loss_tensors = adapt()
        if loss_tensors:
            losses = torch.stack([t.float() for t in loss_tensors]).tolist()
        if not all(map(math.isfinite, losses)):
            return losses, "non-finite loss"
        if not weights_finite():
            return losses, "non-finite weights"
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        if cuda:
            torch.cuda.empty_cache()
        return losses, "out of memory"
    return losses, ""


class FailureWarning:
    """The "adaptation failed" warning, at most once per :data:`WARN_THROTTLE` seconds; the
    failures in between are counted in the next one."""

    def __init__(self) -> None:
        self._warned_at = -float("inf")
        self._unwarned = 0

    def warn(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_THROTTLE:
            more = f" ({self._unwarned} more failures since the last warning)" if self._unwarned else ""
            LOG.warning("adaptation failed (%s); the last good weights are back%s", reason, more)
            self._warned_at, self._unwarned = now, 0
        else:
            self._unwarned += 1


__all__ = ["WARN_THROTTLE", "AdaptationCancelled", "FailureWarning", "checked_adapt", "is_out_of_memory"]
