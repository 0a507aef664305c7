"""Why MLMP loses where it loses: the MLMP diagnostics of the world table, compared.

A *cell* is one scene under one condition.  Its MLMP - NoAdapt difference is the scene's
own mIoU after MLMP's steps minus NoAdapt's; cells are split into those where MLMP gains
(> +1 point), loses (< -1) and the rest.  For each diagnostic recorded by
:mod:`mlmp_ros.bench.study.why` this gives its mean in the losing and the gaining cells,
the difference with a 95% interval (scenes resampled, all of a scene's cells together),
and its Spearman correlation with the cell's difference and with what the steps alone
did (MLMP after minus MLMP at 0 steps; intervals likewise).  Per
condition it gives the mean diagnostics next to the condition's pooled difference, and for
the losing and gaining cells the class transitions the steps made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...world.textures import CLASSES
from ..scoring.intervals import RESAMPLES, bootstrap, pooled_miou

OPTIONS = {"resamples": RESAMPLES}  # bootstrap settings of every interval of the world summary (tests lower them)
MARGIN = 1.0  # mIoU points: a cell gains / loses beyond this

FEATURES = {
    "agreement_before": "pairwise argmax agreement of the fused blocks before the steps",
    "kl_before": "mean pairwise symmetric KL of the fused blocks before the steps (nats)",
    "agreement_with_last_before": "mean agreement of the other fused blocks with the last block, before",
    "entropy_before": "fused prediction entropy / ln(classes), before the steps",
    "entropy_after": "fused prediction entropy / ln(classes), after the steps",
    "entropy_drop": "entropy before minus after",
    "agreement_after": "pairwise argmax agreement of the fused blocks after the steps",
    "changed": "fraction of pixels whose label the steps changed",
    "moved_right_before": "of the changed pixels, the fraction right before the steps",
    "moved_right_after": "of the changed pixels, the fraction right after the steps",
    "noadapt_miou": "NoAdapt's mIoU of the cell",
    "fusion_delta": "MLMP at 0 steps minus NoAdapt (mIoU of the cell)",
    "steps_delta": "MLMP after its steps minus MLMP at 0 steps (mIoU of the cell)",
}


def _cell_miou(rec: dict[str, Any], inter: str = "inter", union: str = "union") -> float:
    return pooled_miou(np.asarray([rec[inter]]), np.asarray([rec[union]]))


def cells(records, scenes: Sequence[int], conditions: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (scene, condition): the differences and the diagnostics."""
    index = {(int(r["scene"]), r["condition"], r["method"]): r for r in records}
    rows = []
    for s in scenes:
        for c in conditions:
            na, ml = index[(s, c, "noadapt")], index[(s, c, "mlmp")]
            d, t = ml["diag"], ml["diag"]["transitions"]
            before, after = d["before"], d["after"]
            n0 = _cell_miou(na)
            rows.append({
                "scene": s, "condition": c,
                "delta": _cell_miou(ml) - n0,
                "steps_delta": _cell_miou(ml) - _cell_miou(ml, "inter0", "union0"),
                "fusion_delta": _cell_miou(ml, "inter0", "union0") - n0,
                "noadapt_miou": n0,
                "agreement_before": before["agreement"], "kl_before": before["kl"],
                "agreement_with_last_before": float(np.mean(before["agreement_with_last"][:-1])),
                "entropy_before": before["fused_entropy"], "entropy_after": after["fused_entropy"],
                "entropy_drop": before["fused_entropy"] - after["fused_entropy"],
                "agreement_after": after["agreement"],
                "changed": t["changed"] / max(t["pixels"], 1),
                "moved_right_before": t["right_before"] / t["changed"] if t["changed"] else np.nan,
                "moved_right_after": t["right_after"] / t["changed"] if t["changed"] else np.nan,
                "moved": np.asarray(t["moved"], np.int64), "right": (t["right_before"], t["right_after"], t["changed"]),
            })  # fmt: skip
    return rows


def _by_scene(rows, scenes, values, mask) -> tuple[np.ndarray, np.ndarray]:
    pos = {s: i for i, s in enumerate(scenes)}
    sums, counts = np.zeros(len(scenes)), np.zeros(len(scenes))
    for r, v, m in zip(rows, values, mask):
        if m and np.isfinite(v):
            sums[pos[r["scene"]]] += v
            counts[pos[r["scene"]]] += 1
    return sums, counts


def group_difference(rows, scenes, feature: str, lose: np.ndarray, gain: np.ndarray):
    """Mean of ``feature`` over losing cells minus over gaining cells; scenes resampled."""
    values = [r[feature] for r in rows]
    ls, ln = _by_scene(rows, scenes, values, lose)
    gs, gn = _by_scene(rows, scenes, values, gain)

    def stat(idx: np.ndarray) -> float:
        nl, ng = ln[idx].sum(), gn[idx].sum()
        return float(ls[idx].sum() / nl - gs[idx].sum() / ng) if nl and ng else float("nan")

    means = (ls.sum() / max(ln.sum(), 1), gs.sum() / max(gn.sum(), 1))
    return means, bootstrap(stat, len(scenes), method="percentile", **OPTIONS)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3:
        return float("nan")
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def correlation(rows, scenes, feature: str, target: str = "delta"):
    """Spearman correlation over cells of ``feature`` with ``target``; scenes resampled."""
    pos = {s: i for i, s in enumerate(scenes)}
    per_scene: list[list[int]] = [[] for _ in scenes]
    for k, r in enumerate(rows):
        per_scene[pos[r["scene"]]].append(k)
    x = np.array([r[feature] for r in rows], np.float64)
    y = np.array([r[target] for r in rows], np.float64)

    def stat(idx: np.ndarray) -> float:
        take = np.concatenate([per_scene[i] for i in idx])
        return _spearman(x[take], y[take])

    return bootstrap(stat, len(scenes), method="percentile", **OPTIONS)


def _iv(iv, digits: int = 3) -> dict[str, Any]:
    return {"value": round(iv.value, digits), "low": round(iv.low, digits), "high": round(iv.high, digits),
            "excludes_zero": iv.excludes_zero()}  # fmt: skip


def top_transitions(rows, mask, count: int = 6) -> dict[str, Any]:
    moved = sum((r["moved"] for r, m in zip(rows, mask) if m), np.zeros((len(CLASSES), len(CLASSES)), np.int64))
    right = np.array([r["right"] for r, m in zip(rows, mask) if m]).sum(0) if any(mask) else np.zeros(3)
    total = int(moved.sum())
    order = np.argsort(moved, axis=None)[::-1][:count]
    pairs = [{"from": CLASSES[i // len(CLASSES)], "to": CLASSES[i % len(CLASSES)],
              "pixels": int(moved.flat[i]), "share": round(float(moved.flat[i] / max(total, 1)), 3)}
             for i in order if moved.flat[i]]  # fmt: skip
    into = moved.sum(0) - moved.sum(1)
    return {
        "changed_pixels": total,
        "right_before": round(float(right[0] / max(right[2], 1)), 3),
        "right_after": round(float(right[1] / max(right[2], 1)), 3),
        "top": pairs,
        "net_into": {CLASSES[c]: int(into[c]) for c in np.argsort(into)[::-1] if into[c]},
    }


def per_condition(rows, conditions) -> dict[str, Any]:
    out = {}
    for c in conditions:
        sel = [r for r in rows if r["condition"] == c]
        out[c] = {k: round(float(np.nanmean([r[k] for r in sel])), 4)
                  for k in ("delta", "fusion_delta", "steps_delta", "agreement_before", "kl_before",
                            "entropy_before", "entropy_after", "changed", "moved_right_before",
                            "moved_right_after")}  # fmt: skip
    return out


BEFORE = ("agreement_before", "kl_before", "agreement_with_last_before", "entropy_before")


def across_conditions(per: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Spearman correlation over the conditions of their mean diagnostics before the steps with their
    mean cell differences; 95% percentile interval resampling the conditions."""
    names = list(per)
    out: dict[str, Any] = {"conditions": len(names)}
    for f in ("agreement_before", "kl_before", "entropy_before"):
        x = np.array([per[c][f] for c in names])
        for target in ("delta", "fusion_delta", "steps_delta"):
            y = np.array([per[c][target] for c in names])
            iv = bootstrap(lambda idx, x=x, y=y: _spearman(x[idx], y[idx]), len(names), method="percentile", **OPTIONS)
            out[f"{f}~{target}"] = _iv(iv)
    return out


def why(records, scenes: Sequence[int], conditions: Sequence[str]) -> dict[str, Any]:
    rows = cells(records, scenes, conditions)
    delta = np.array([r["delta"] for r in rows])
    lose, gain = delta < -MARGIN, delta > MARGIN
    features: dict[str, Any] = {}
    for f, text in FEATURES.items():
        (ml, mg), diff = group_difference(rows, scenes, f, lose, gain)
        features[f] = {
            "what": text,
            "mean_losing": round(float(ml), 4),
            "mean_gaining": round(float(mg), 4),
            "losing_minus_gaining": _iv(diff),
            "spearman_with_delta": _iv(correlation(rows, scenes, f)),
            "spearman_with_steps_delta": _iv(correlation(rows, scenes, f, "steps_delta")),
        }
        if f in BEFORE:
            features[f]["spearman_with_fusion_delta"] = _iv(correlation(rows, scenes, f, "fusion_delta"))
    return {
        "cells": len(rows),
        "margin": MARGIN,
        "losing_cells": int(lose.sum()),
        "gaining_cells": int(gain.sum()),
        "cell_delta_is": "the scene's own mIoU (MLMP after its steps) minus NoAdapt's, in points",
        "intervals": "95% percentile bootstrap over scenes (all of a scene's cells resampled together)",
        "features": features,
        "per_condition": per_condition(rows, conditions),
        "across_conditions": across_conditions(per_condition(rows, conditions)),
        "transitions_losing": top_transitions(rows, lose),
        "transitions_gaining": top_transitions(rows, gain),
    }
