"""What both runs of mlmp-demo share (:mod:`mlmp_ros.demo.main` on the sample stream and
:mod:`mlmp_ros.demo.world` on the world model): the output folder and the node's diagnostics."""

from __future__ import annotations

import shutil
from pathlib import Path

# What a run writes into its output folder; a new run removes the last run's before it starts.
RUN_OUTPUTS = ("outputs", "outputs_*", "overlay_*.png", "node.log", "node_*.log", "summary.json")


def prepare_out(out: Path) -> None:
    """Create the output folder, removing what a previous run wrote there (its outputs bags, overlays,
    node logs and summary): a new run replaces the last one.  Other files in the folder are left alone."""
    if out.exists() and not out.is_dir():
        from .arguments import usage_error

        usage_error(f"--out: {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for pattern in RUN_OUTPUTS:
        for old in out.glob(pattern):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()


def node_diagnostics(live, result):
    """The node's last diagnostics report that saw a frame (a later, idle period reports no model
    time).  A short run can end before the node's first report (one per ``diagnostics.period``):
    then wait for the report that covers it, a few periods at most."""
    from ..ros.live import SessionTimeout

    def saw_frames(d) -> bool:
        return bool(d.values.get("model_ms"))

    diag = next((d for d in reversed(live.diagnostics) if saw_frames(d)), None)
    if diag is None:
        try:
            diag = live.wait_for_diagnostics(saw_frames, timeout=10.0, after=0.0)
        except SessionTimeout:
            diag = result.diagnostics
    return diag
