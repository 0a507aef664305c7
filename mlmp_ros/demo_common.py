"""What both runs of mlmp-demo share (:mod:`mlmp_ros.demo` on the sample stream and
:mod:`mlmp_ros.demo_world` on the world model): the output folder and the node's diagnostics."""

from __future__ import annotations

import shutil
from pathlib import Path


def prepare_out(out: Path) -> None:
    """Create the output folder, clearing a previous run's bag and overlays."""
    if (out / "outputs").exists():
        shutil.rmtree(out / "outputs")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("overlay_*.png"):
        old.unlink()


def node_diagnostics(live, result):
    """The node's last diagnostics report that saw a frame (a later, idle period reports no model
    time).  A short run can end before the node's first report (one per ``diagnostics.period``):
    then wait for the report that covers it, a few periods at most."""
    from .ros.live import SessionTimeout

    def saw_frames(d) -> bool:
        return bool(d.values.get("model_ms"))

    diag = next((d for d in reversed(live.diagnostics) if saw_frames(d)), None)
    if diag is None:
        try:
            diag = live.wait_for_diagnostics(saw_frames, timeout=10.0, after=0.0)
        except SessionTimeout:
            diag = result.diagnostics
    return diag
