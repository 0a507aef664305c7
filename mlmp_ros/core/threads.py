"""Which thread runs PyTorch's CPU work, and why it matters (no ROS imports).

PyTorch's CPU kernels run their parallel regions on OpenMP (GNU libgomp on Linux).  Every thread
that enters a parallel region keeps a pool of worker threads for the next one.  Once the process
has more pool threads than CPUs, libgomp lets idle pool threads spin only briefly before they
sleep, so each of the model's thousands of small parallel regions pays a wake-up.  A node that
loads the model on its main thread and runs it on its worker thread has two pools: on the world
model (4 frames of 640x480 a pass, bf16, 2 cores) a pass took 140 ms on the worker against 90 ms
when one thread did both (``benchmarks/thread_pools.py``).

A pool goes away when its thread ends, so the model is loaded on a thread that ends
(:func:`in_passing_thread`) and runs on the worker, the one thread with a pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def in_passing_thread(fn: Callable[..., T], *args: Any, name: str = "mlmp_load", **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a new thread that ends when it returns; its result, or its
    exception raised here.  The calling thread keeps no OpenMP pool from ``fn``'s work."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as it is
            box["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
