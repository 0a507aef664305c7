"""The world table's summary, from its records alone: pooled mIoU with 95% intervals over scenes.

Every number here is computed from the per-scene, per-class areas of
:mod:`mlmp_ros.bench.study.method_table`'s records, by the bootstrap helpers of
:mod:`mlmp_ros.bench.scoring.intervals` (scenes resampled; a difference resamples the same
scenes on both sides).  Only scenes with every (condition, method) cell count.  A
difference is worded by :meth:`Interval.verdict`: "gains" / "loses" only when its interval
excludes zero.  ``mlmp@0`` is MLMP's fused prediction before any step (recorded with every
MLMP cell), so MLMP - NoAdapt splits into the fusion (``mlmp@0`` - NoAdapt) and the steps
(MLMP - ``mlmp@0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..scoring.intervals import bootstrap, paired_pooled_difference, pooled_miou_interval
from .method_table import area_arrays, cell_key, complete_scenes, read_records
from .why_summary import OPTIONS, why

ZERO_STEP = "mlmp@0"


def load(files: Sequence[str]) -> list[dict[str, Any]]:
    """Records of several files, one per cell (the first one kept), with ``mlmp@0`` cells split out."""
    from pathlib import Path

    seen, out = set(), []
    for f in files:
        for rec in read_records(Path(f)):
            key = cell_key(rec)
            if key in seen:
                continue
            seen.add(key)
            out.append(rec)
            if rec["method"] == "mlmp" and "inter0" in rec:
                out.append({**rec, "method": ZERO_STEP, "inter": rec["inter0"], "union": rec["union0"], "steps": 0})
    return out


def _areas(records, scenes, conditions, method) -> list[tuple[np.ndarray, np.ndarray]]:
    return [area_arrays(records, scenes, c, method) for c in conditions]


def mean_over_conditions(areas: list[tuple[np.ndarray, np.ndarray]], base=None):
    """Mean over conditions of the pooled mIoU (minus ``base``'s, paired), scenes resampled.

    Each condition's pooled mIoU is :func:`pooled_miou`'s (classes with no union left out),
    computed for all conditions at once."""
    stacked = [np.stack([a[k] for a in areas]) for k in (0, 1)]  # (conditions, scenes, classes)
    paired = [np.stack([a[k] for a in base]) for k in (0, 1)] if base is not None else None

    def stat(idx: np.ndarray) -> float:
        value = _mean_pooled(stacked, idx)
        return value - _mean_pooled(paired, idx) if paired is not None else value

    return bootstrap(stat, len(areas[0][0]), **OPTIONS)


def _mean_pooled(areas: list[np.ndarray], idx: np.ndarray) -> float:
    inter, union = areas[0][:, idx].sum(1), areas[1][:, idx].sum(1)  # (conditions, classes)
    valid = union > 0
    iou = np.where(valid, inter / np.where(valid, union, 1), 0.0)
    return float(np.mean(iou.sum(1) / np.maximum(valid.sum(1), 1)) * 100)


def _row(iv, signed: bool = False) -> dict[str, Any]:
    out = {k: round(v, 3) if isinstance(v, float) else v for k, v in iv.as_dict().items()}
    out["text"] = iv.text(1, signed=signed)
    if signed:
        out["verdict"] = iv.verdict()
    return out


def method_table(records, scenes, conditions, methods) -> dict[str, Any]:
    """Per method and condition: pooled mIoU [95%], and the paired difference to NoAdapt [95%]."""
    base = _areas(records, scenes, conditions, "noadapt")
    table: dict[str, Any] = {}
    for method in methods:
        areas = base if method == "noadapt" else _areas(records, scenes, conditions, method)
        per: dict[str, Any] = {}
        for c, a, b in zip(conditions, areas, base):
            per[c] = {"miou": _row(pooled_miou_interval(*a, **OPTIONS))}
            if method != "noadapt":
                per[c]["vs_noadapt"] = _row(paired_pooled_difference(a, b, **OPTIONS), signed=True)
        entry: dict[str, Any] = {"per_condition": per, "mean": _row(mean_over_conditions(areas))}
        if method != "noadapt":
            entry["mean_vs_noadapt"] = _row(mean_over_conditions(areas, base), signed=True)
            verdicts = [per[c]["vs_noadapt"]["verdict"] for c in conditions]
            entry["conditions_gains"] = [c for c, v in zip(conditions, verdicts) if v == "gains"]
            entry["conditions_loses"] = [c for c, v in zip(conditions, verdicts) if v == "loses"]
            entry["conditions_no_measurable_difference"] = len(conditions) - len(entry["conditions_gains"]) - len(
                entry["conditions_loses"])  # fmt: skip
        table[method] = entry
    return table


def steps_effect(records, scenes, conditions) -> dict[str, Any]:
    """MLMP after its steps against its own 0-step fusion, per condition and on average."""
    after = _areas(records, scenes, conditions, "mlmp")
    before = _areas(records, scenes, conditions, ZERO_STEP)
    per = {
        c: _row(paired_pooled_difference(a, b, **OPTIONS), signed=True) for c, a, b in zip(conditions, after, before)
    }
    return {"per_condition": per, "mean": _row(mean_over_conditions(after, before), signed=True)}


def timings(records, scenes, methods) -> dict[str, float]:
    keep = set(scenes)
    out = {}
    for m in methods:
        secs = [r["seconds"] for r in records if r["method"] == m and int(r["scene"]) in keep]
        out[m] = round(float(np.mean(secs)), 3) if secs else float("nan")
    return out


def summarise(records: list[dict[str, Any]], conditions: Sequence[str], methods: Sequence[str]) -> dict[str, Any]:
    """The table, the steps' effect and the diagnostics of MLMP, from ``records``."""
    scenes = complete_scenes([r for r in records if r["method"] != ZERO_STEP], conditions, methods)
    if len(scenes) < 2:
        raise ValueError(f"{len(scenes)} complete scene(s) in the records: intervals need at least 2")
    shown = list(methods) + ([ZERO_STEP] if "mlmp" in methods else [])
    one = next(r for r in records if r["method"] == "mlmp") if "mlmp" in methods else records[0]
    out: dict[str, Any] = {
        "scenes": len(scenes),
        "scene_seeds": scenes,
        "conditions": list(conditions),
        "methods": shown,
        "settings": {k: one.get(k) for k in ("lr", "steps", "mode", "size", "severity", "precision", "classes")},
        "seconds_per_frame": timings(records, scenes, methods),
        "table": method_table(records, scenes, conditions, shown),
    }
    if "mlmp" in methods:
        out["mlmp_steps_vs_0_steps"] = steps_effect(records, scenes, conditions)
        out["why"] = why(records, scenes, conditions)
    return out


def summarise_files(files: Sequence[str], conditions: Sequence[str], methods: Sequence[str]) -> dict[str, Any]:
    from .model_card import host_info

    report = summarise(load(files), conditions, methods)
    report["host"] = {k: v for k, v in host_info().items() if k != "torch_threads"}  # the summary's, not the run's
    report["records"] = list(files)
    report["note"] = ("mIoU in percent, scenes pooled (summed per-class areas); 95% BCa bootstrap intervals "
                      f"over scenes (scipy.stats.bootstrap, {OPTIONS['resamples']} resamples, paired for differences; "
                      "the diagnostics' group differences and correlations: percentile intervals); "
                      "world model numbers, not CLIP's")  # fmt: skip
    return report


NAMES = {"noadapt": "NoAdapt", "tent": "TENT", "tpt": "TPT", "clipartt": "CLIPArTT", "watt": "WATT", "mlmp": "MLMP",
         ZERO_STEP: "MLMP fusion, 0 steps"}  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    """The summary as a Markdown table: mIoU [95%] per method, then each difference to NoAdapt [95%]."""
    methods, table = report["methods"], report["table"]
    others = [m for m in methods if m != "noadapt"]
    head = ["condition"] + [NAMES.get(m, m) for m in methods] + [f"{NAMES.get(m, m)} − NoAdapt" for m in others]
    steps = report.get("mlmp_steps_vs_0_steps")
    head += ["MLMP − its 0 steps"] if steps else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in report["conditions"]:
        cells = [_name(c)] + [table[m]["per_condition"][c]["miou"]["text"] for m in methods]
        cells += [_diff(table[m]["per_condition"][c]["vs_noadapt"]) for m in others]
        cells += [_diff(steps["per_condition"][c])] if steps else []
        lines.append("| " + " | ".join(cells) + " |")
    cells = [f"**mean, {len(report['conditions'])} conditions**"] + [table[m]["mean"]["text"] for m in methods]
    cells += [_diff(table[m]["mean_vs_noadapt"]) for m in others]
    cells += [_diff(steps["mean"])] if steps else []
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _name(condition: str) -> str:
    return (
        "clean"
        if condition == "original"
        else f"stream {condition[6:]} (full)"
        if condition.startswith("shift:")
        else condition
    )


def _diff(row: dict[str, Any]) -> str:
    """Bold where the interval excludes zero (a gain or a loss), plain otherwise."""
    return f"**{row['text']}**" if row["verdict"] != "no measurable difference" else row["text"]
