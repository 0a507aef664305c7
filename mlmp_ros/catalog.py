"""The adaptation methods by name: the one list every other place reads.

Imports nothing of the package, so :mod:`mlmp_ros.core.config` can check a method name
without importing the methods (which import the config).  The classes themselves live in
:mod:`mlmp_ros.core.methods` and register with ``@register``, which refuses a class whose
name is missing here; a test checks that every name here has a class.
"""

from __future__ import annotations

from typing import NamedTuple


class MethodInfo(NamedTuple):
    help: str  # one line for parameter descriptions, --help texts and config/segment.yaml
    entropy_loss: bool  # the loss is a token entropy (adaptation.safeguards.reliable_e0 filters it)
    label: str  # the name tables and plots print


# In the order the paper's tables list them.
METHOD_INFO: dict[str, MethodInfo] = {
    "noadapt": MethodInfo("the segmenter alone, no adaptation", True, "NoAdapt"),
    "tent": MethodInfo("TENT: entropy of the last layer's patch predictions", True, "TENT"),
    "tpt": MethodInfo("TPT: a learnable prompt context", False, "TPT"),
    "watt": MethodInfo("WATT-S: per-template adaptation with weight averaging", False, "WATT"),
    "clipartt": MethodInfo("CLIPArTT: pseudo-labels from top-K class prompts", False, "CLIPArTT"),
    "mlmp": MethodInfo("MLMP: multi-level, multi-prompt entropy (the paper's method)", True, "MLMP"),
}

METHOD_NAMES: tuple[str, ...] = tuple(METHOD_INFO)
METHOD_LABELS: dict[str, str] = {name: info.label for name, info in METHOD_INFO.items()}
