"""The world-model method table on many fresh held-out scenes, one record per cell.

    python benchmarks/world_methods.py measure --records R.jsonl --scenes 48 [--methods noadapt,tent,mlmp]
    python benchmarks/world_methods.py summary --records R.jsonl --out benchmarks/results/world_methods_48.json

``measure`` scores every (scene, condition, method) cell (episodic, batch 1, each method's
paper settings: 10 steps, lr 1e-3 unless told) through the public
:class:`~mlmp_ros.core.Segmenter` on one shared model, reset to the source weights after
every adapting run.  Each cell is one JSON line holding the per-class intersection and
union of that scene (so a pooled mIoU and its bootstrap interval over scenes can be
computed from the records alone), appended and flushed as soon as it is done: a rerun
skips the cells already recorded, and an interrupted run loses at most the cell it was in.
Scenes are taken scene by scene (every condition and method of a scene before the next
scene), so a run stopped early leaves whole scenes.

MLMP cells also record, before and after the steps, how much the blocks MLMP fuses agree
(:mod:`mlmp_ros.bench.study.why`), the entropy of its prediction, and which classes the
steps moved pixels from and into (against MLMP's own 0-step prediction of the same image).

Scenes use seeds from :data:`FRESH_SEED` up: apart from training (below
``HELD_OUT_SEED``), the benchmark's ``world`` bags (``HELD_OUT_SEED`` up), the 8 scenes of
``world_methods.json`` and the model card (+200 000), the tests (+300 000 to +500 000)
and the streams (+500 000).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...world.scenes import render_scene
from ...world.shifts import SHIFTS, apply_shift
from ...world.textures import CLASSES
from ...world.train import HELD_OUT_SEED
from ..data.corruptions import CORRUPTIONS, corrupt_image
from .why import areas_record, mlmp_cell

FRESH_SEED = HELD_OUT_SEED + 600_000
STREAM_SHIFTS = tuple(s for s in SHIFTS if s != "none")
ALL_CONDITIONS = ("original", *CORRUPTIONS, *(f"shift:{s}" for s in STREAM_SHIFTS))
SEVERITY = 5


@dataclass
class Plan:
    """What one measurement covers (every record carries these settings)."""

    scenes: Sequence[int]  # scene seeds
    conditions: Sequence[str] = ALL_CONDITIONS
    methods: Sequence[str] = ("noadapt", "tent", "mlmp")
    lr: float = 1e-3
    steps: int = 10
    height: int = 480
    width: int = 640
    weights: str = "world"
    diagnostics: bool = True  # MLMP's block agreement, entropy and class transitions
    extra: dict[str, Any] = field(default_factory=dict)  # further core settings (e.g. precision)


def scene_seeds(count: int, first: int = FRESH_SEED) -> list[int]:
    return [first + i for i in range(count)]


def condition_image(image: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """One scene under ``condition``: ``original``, an ImageNet-C corruption at severity 5, or
    ``shift:<name>`` at full strength; the noise of either is drawn from the scene's seed."""
    if condition == "original":
        return image
    if condition.startswith("shift:"):
        shift = condition.split(":", 1)[1]
        return apply_shift(image, shift, 1.0, np.random.default_rng([FRESH_SEED, seed]), {})
    return corrupt_image(image, condition, SEVERITY, seed=seed)


def cell_key(rec: dict[str, Any]) -> tuple[int, str, str]:
    return int(rec["scene"]), str(rec["condition"]), str(rec["method"])


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; a torn last line (a run killed mid-write) is dropped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class RecordFile:
    """Append-only JSONL of cells; knows which cells are done."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records = read_records(self.path)
        self.done = {cell_key(r) for r in records}
        if self.path.is_file() and self.path.read_text() and not self.path.read_text().endswith("\n"):
            with self.path.open("a") as fh:  # a torn line: start the next record on a line of its own
                fh.write("\n")

    def add(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done.add(cell_key(record))


class Scorer:
    """One loaded world model; a fresh segmenter per cell over it, reset after adapting."""

    def __init__(self, plan: Plan):
        from ...core.segmenter import Segmenter
        from ...world.model import world_config

        self.plan = plan
        self._config = lambda **s: world_config(weights=plan.weights, **{**plan.extra, **s})
        self.base = Segmenter(self._config(**{"adaptation.method": "noadapt"}))

    def segmenter(self, method: str, steps: int | None = None):
        from ...core.segmenter import Segmenter

        settings: dict[str, Any] = {"adaptation.method": method, "adaptation.mode": "episodic"}
        if method != "noadapt":
            settings["adaptation.lr"] = self.plan.lr
            settings["adaptation.steps"] = self.plan.steps if steps is None else steps
        return Segmenter(self._config(**settings), loaded=self.base.loaded)

    def cell(self, image: np.ndarray, labels: np.ndarray, method: str) -> dict[str, Any]:
        """Score ``method`` on one image; MLMP also gets its diagnostics."""
        if method == "mlmp" and self.plan.diagnostics:
            return mlmp_cell(self, image, labels)
        seg = self.segmenter(method)
        try:
            t0 = time.perf_counter()
            out = seg.segment([image])
            seconds = time.perf_counter() - t0
        finally:
            seg.reset()  # the shared model back to the source weights for the next run
        return areas_record(out.frames[0].labels, labels, out.losses, seconds)


def measure(plan: Plan, records: RecordFile, *, log: Callable[[str], None] = print,
            deadline: float | None = None) -> int:  # fmt: skip
    """Score every missing cell of ``plan`` into ``records``; returns the number of cells added.
    ``deadline`` (a time.time()): no new scene is started after it."""
    scorer = None
    added = 0
    for seed in plan.scenes:
        todo = [(c, m) for c in plan.conditions for m in plan.methods if (seed, c, m) not in records.done]
        if not todo:
            continue
        if deadline is not None and time.time() > deadline:
            log(f"deadline passed: stopping before scene {seed}")
            break
        scorer = scorer or Scorer(plan)
        scene = render_scene(seed, plan.height, plan.width)
        images: dict[str, np.ndarray] = {}
        for condition, method in todo:
            if condition not in images:
                images = {condition: condition_image(scene.image, condition, seed)}
            rec = scorer.cell(images[condition], scene.labels, method)
            rec.update(_settings(plan, seed, condition, method))
            records.add(rec)
            added += 1
            log(f"scene {seed} {condition} {method} {rec['seconds']:.2f}s")
    return added


def _settings(plan: Plan, seed: int, condition: str, method: str) -> dict[str, Any]:
    adapting = method != "noadapt"
    return {"scene": seed, "condition": condition, "method": method,
            "lr": plan.lr if adapting else None, "steps": plan.steps if adapting else 0,
            "mode": "episodic", "size": f"{plan.width}x{plan.height}", "severity": SEVERITY,
            "classes": list(CLASSES)}  # fmt: skip


def complete_scenes(records: Iterable[dict[str, Any]], conditions: Sequence[str], methods: Sequence[str]) -> list[int]:
    """Scenes that have every (condition, method) cell, in seed order."""
    have: dict[int, set] = {}
    for r in records:
        have.setdefault(int(r["scene"]), set()).add((r["condition"], r["method"]))
    need = {(c, m) for c in conditions for m in methods}
    return sorted(s for s, cells in have.items() if need <= cells)


def area_arrays(records: Sequence[dict[str, Any]], scenes: Sequence[int], condition: str,
                method: str) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(intersection, union)`` as ``[scenes, classes]`` for one condition and method."""
    by_scene = {int(r["scene"]): r for r in records if r["condition"] == condition and r["method"] == method}
    inter = np.array([by_scene[s]["inter"] for s in scenes], dtype=np.float64)
    union = np.array([by_scene[s]["union"] for s in scenes], dtype=np.float64)
    return inter, union
