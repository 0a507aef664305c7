"""The adaptation settings recommended for robots, from the measurements in the documentation
(docs/configuration.md, docs/streaming.md).

One place for them: they are the node's defaults (``mlmp-segment`` with no parameter file runs
them), the demo's adapted run uses them (docs/configuration.md).  The benchmark keeps the paper's settings
(:class:`~mlmp_ros.core.Config`'s defaults).  Dotted names, as ``Config.replace`` takes.
"""

from __future__ import annotations

from typing import Any

# The bundled sample stream's classes and a 224-pixel short side: the node's defaults and
# config/segment.yaml's choices.
SAMPLE_SETTINGS: dict[str, Any] = {
    "classes": ["person", "cat", "dog", "car", "motorcycle", "bicycle", "rocket", "cup, mug", "table", "chair",
                "sky", "tree", "grass", "road", "building", "wall", "floor", "water"],
    "resize": [224],
}

ROBOT_ADAPTATION: dict[str, Any] = {
    # docs/streaming.md, "Measured: world streams at 10 Hz": the best guarded configuration at
    # camera rate on the chained world streams, and stable over the recurring long stream.
    "adaptation.method": "mlmp",
    "adaptation.schedule": "async",
    "adaptation.mode": "continual",
    "adaptation.safeguards.reliable_e0": 0.4,
    "adaptation.safeguards.ensemble_alpha": 0.99,
    "adaptation.safeguards.collapse": True,
    "adaptation.safeguards.drift": True,
}

__all__ = ["ROBOT_ADAPTATION", "SAMPLE_SETTINGS"]
