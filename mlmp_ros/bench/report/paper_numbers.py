"""The paper's published mIoU (%), to print beside ours where the same setting ran.

Source: MLMP, NeurIPS 2025, Table 5 and the appendix (NACLIP attention, ViT-L/14 with
OpenAI weights, 10 steps, lr 1e-3).  Rows are
``"original"`` (clean images) or ``"-C"`` (the mean over the 15 corruptions).  A value
of ``None`` is a dash in the paper (CLIPArTT on Cityscapes ran out of memory there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...catalog import METHOD_NAMES
from ...resources import config_path
from ..data.corruptions import CHANNEL_ORDERS, DRAWS, ORIGINAL, SEVERITY
from ..suite.file import load_suite
from ..suite.records import RESULT_NEUTRAL, TrialRecord

CLEAN = "original"
C_AVERAGE = "-C"

PAPER_BACKBONES = ("ViT-L-14", "ViT-L-14-quickgelu")
PAPER_WEIGHTS = "openai"
PAPER_ATTENTION = "naclip"
# Validation images per split (the data sets' val lists); a smaller run is a subset and is not compared.
SPLIT_SIZES = {
    "voc20": 1449, "voc21": 1449, "context59": 5105, "context60": 5105,
    "coco_object": 5000, "coco_stuff": 5000, "cityscapes": 500,
}  # fmt: skip


@dataclass(frozen=True)
class PaperSetting:
    """How the paper ran a table: batch size and adaptation mode."""

    name: str
    batch_size: int
    mode: str
    description: str


MAIN = PaperSetting("main", 2, "episodic", "main tables: batch of 2 images, episodic")
SINGLE = PaperSetting("single_sample", 1, "episodic", "single sample: batch of 1 image, episodic")
# The paper does not give the continual run's batch size; the main tables' 2 is assumed.
CONTINUAL = PaperSetting("continual", 2, "continual", "continual: never reset, batch of 2 assumed")
SETTINGS = (MAIN, SINGLE, CONTINUAL)


def _row(values: str) -> dict[str, float | None]:
    """One row of the paper's tables: a number per method (in the catalog's order, the paper's), '-' for none."""
    return {m: (None if v.strip() == "-" else float(v)) for m, v in zip(METHOD_NAMES, values.split("/"))}


# (setting, data set, row) -> method -> mIoU
PAPER_MIOU: dict[tuple[str, str, str], dict[str, float | None]] = {
    ("main", "voc20", CLEAN): _row("75.91 / 77.00 / 75.93 / 57.73 / 72.77 / 83.76"),
    ("main", "voc20", C_AVERAGE): _row("69.01 / 69.33 / 69.03 / 48.30 / 63.39 / 77.58"),
    ("main", "voc21", CLEAN): _row("45.12 / 45.65 / 45.17 / 28.58 / 39.50 / 50.78"),
    ("main", "voc21", C_AVERAGE): _row("40.75 / 40.95 / 40.77 / 24.12 / 34.16 / 46.25"),
    ("main", "context59", CLEAN): _row("28.23 / 28.73 / 28.26 / 16.55 / 24.60 / 31.95"),
    ("main", "context59", C_AVERAGE): _row("23.88 / 23.88 / 23.88 / 13.37 / 19.72 / 27.03"),
    ("main", "context60", CLEAN): _row("24.95 / 25.29 / 24.98 / 14.77 / 21.88 / 27.99"),
    ("main", "context60", C_AVERAGE): _row("21.39 / 21.25 / 21.49 / 12.08 / 17.79 / 24.07"),
    ("main", "cityscapes", CLEAN): _row("29.49 / 30.54 / 29.57 / 20.77 / - / 33.35"),
    ("main", "cityscapes", C_AVERAGE): _row("21.63 / 21.64 / 21.60 / 13.45 / - / 23.02"),
    ("main", "coco_object", CLEAN): _row("23.80 / 24.88 / 23.84 / 14.14 / 21.34 / 28.84"),
    ("main", "coco_stuff", CLEAN): _row("18.34 / 18.76 / 18.35 / 9.49 / 15.48 / 21.25"),
    ("main", "acdc_fog", CLEAN): {"noadapt": 23.88, "tent": 26.89, "mlmp": 33.33},
    ("main", "acdc_night", CLEAN): {"noadapt": 22.12, "tent": 24.17, "mlmp": 24.76},
    ("main", "acdc_rain", CLEAN): {"noadapt": 23.86, "tent": 26.84, "mlmp": 32.44},
    ("main", "acdc_snow", CLEAN): {"noadapt": 23.54, "tent": 27.25, "mlmp": 30.59},
    ("main", "gta5", CLEAN): {"noadapt": 25.09, "tent": 26.62, "mlmp": 28.84},
    ("single_sample", "voc20", CLEAN): {"mlmp": 84.68},
    ("single_sample", "voc20", C_AVERAGE): {"mlmp": 78.41},
    ("continual", "voc20", CLEAN): {"mlmp": 79.19},
    ("continual", "voc20", C_AVERAGE): {"mlmp": 71.77},
}

# What the paper says about a cell it leaves empty.
PAPER_NOTES: dict[tuple[str, str], str] = {
    ("cityscapes", "clipartt"): "the paper reports no CLIPArTT number on Cityscapes (the reference ran out of GPU memory)",
}


def paper_setting(record: TrialRecord) -> PaperSetting | None:
    """The paper's setting a result belongs to, or None when no published number compares.

    Compares only full splits run with real weights, the paper's backbone, weights
    and attention, a batch size and mode the paper used, and exactly the paper's
    protocol otherwise: every setting of the method as in ``config/suites/paper87.yaml``
    (steps, lr, templates, layers, precision, …) and, for corrupted images, severity 5
    on the BGR array with the reference's random draws.  A record that does not say
    how it was made (an older store) is not compared.
    """
    if (
        record.backbone not in PAPER_BACKBONES
        or record.weights != PAPER_WEIGHTS
        or record.attention != PAPER_ATTENTION
        or record.limit
        or record.random_weights
        or (record.frames or 0) < SPLIT_SIZES.get(str(record.dataset), 0)
        or (record.split_size and (record.frames or 0) < record.split_size)
        or not _paper_protocol(record)
    ):
        return None
    for setting in SETTINGS:
        if record.batch_size == setting.batch_size and record.mode == setting.mode:
            return setting
    return None


def paper_miou(setting: PaperSetting | None, dataset: str, row: str, method: str) -> float | None:
    """The published mIoU, or None when the paper has none for this cell (see :func:`paper_has`)."""
    if setting is None:
        return None
    return PAPER_MIOU.get((setting.name, dataset, row), {}).get(method)


def paper_has(setting: PaperSetting | None, dataset: str, row: str, method: str) -> bool:
    """True when the paper's table has this cell, even as a dash."""
    return setting is not None and method in PAPER_MIOU.get((setting.name, dataset, row), {})


# Config keys that do not change a number, come from the bag (the data set's protocol) or are
# compared on their own (the backbone: either of PAPER_BACKBONES).
_NOT_COMPARED = RESULT_NEUTRAL | {"classes", "resize", "window", "stride", "model"}


def _paper_protocol(record: TrialRecord) -> bool:
    """True when the record's images and method settings are exactly the paper's."""
    if record.corruption != ORIGINAL and (
        record.severity != SEVERITY or record.channel_order != CHANNEL_ORDERS[0] or record.corruption_draws != DRAWS
    ):
        return False
    config = record.config
    paper = paper_config(str(record.method))
    if not isinstance(config, Mapping) or paper is None:
        return False
    ours = {k: v for k, v in config.items() if k not in _NOT_COMPARED}
    return ours == {k: v for k, v in paper.items() if k not in _NOT_COMPARED}


_PAPER_CONFIGS: dict[str, dict[str, Any] | None] = {}


def paper_config(method: str) -> dict[str, Any] | None:
    """The flat config of ``method`` in the paper's suite (config/suites/paper87.yaml), or None."""
    if method not in _PAPER_CONFIGS:
        try:
            suite = load_suite(config_path("suites", "paper87.yaml"))
            _PAPER_CONFIGS[method] = suite.method_config(method).flat() if method in suite.methods else None
        except Exception:  # noqa: BLE001 - no suite file installed: nothing is compared
            _PAPER_CONFIGS[method] = None
    return _PAPER_CONFIGS[method]
