"""The world method table's measurement (benchmarks/world_methods.py): records, resume, summary.

Runs the real scoring (the bundled world model, real scenes, real segmenters) on 2 scenes x
1 condition x 2 methods at a tiny size (1 step)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlmp_ros.bench.scoring.intervals import paired_pooled_difference, pooled_miou, pooled_miou_interval
from mlmp_ros.bench.study import why_summary
from mlmp_ros.bench.study.method_table import FRESH_SEED, Plan, RecordFile, measure, read_records, scene_seeds
from mlmp_ros.bench.study.table_summary import load, summarise
from mlmp_ros.world.textures import CLASSES
from mlmp_ros.world.train import HELD_OUT_SEED

REPO = Path(__file__).resolve().parents[3]
PLAN = dict(conditions=("gaussian_noise",), methods=("noadapt", "mlmp"), steps=1, height=120, width=160)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    path = tmp_path_factory.mktemp("method_table") / "cells.jsonl"
    plan = Plan(scenes=scene_seeds(2), **PLAN)
    added = measure(plan, RecordFile(path), log=lambda _: None)
    return plan, path, added


def test_scenes_are_fresh():
    # apart from training, the world bags, the 8 scenes of world_methods.json and the tests
    assert FRESH_SEED >= HELD_OUT_SEED + 600_000
    assert scene_seeds(3) == [FRESH_SEED, FRESH_SEED + 1, FRESH_SEED + 2]


def test_one_record_per_cell_with_per_class_areas(measured):
    plan, path, added = measured
    records = read_records(path)
    assert added == 4 and len(records) == 4
    assert {(r["scene"], r["condition"], r["method"]) for r in records} == {
        (s, "gaussian_noise", m) for s in plan.scenes for m in ("noadapt", "mlmp")
    }
    for r in records:
        assert len(r["inter"]) == len(r["union"]) == len(CLASSES)
        assert all(0 <= i <= u for i, u in zip(r["inter"], r["union"]))
        assert sum(r["union"]) > 0 and r["size"] == "160x120" and r["severity"] == 5
        assert r["steps"] == (1 if r["method"] == "mlmp" else 0)
    mlmp = next(r for r in records if r["method"] == "mlmp")
    assert mlmp["lr"] == 1e-3 and "loss_first" in mlmp and len(mlmp["inter0"]) == len(CLASSES)
    before, after, moved = mlmp["diag"]["before"], mlmp["diag"]["after"], mlmp["diag"]["transitions"]
    assert 0 <= before["agreement"] <= 1 and before["kl"] >= 0 and 0 <= after["fused_entropy"] <= 1
    assert len(before["layer_weights"]) == len(before["layers"]) == 6
    assert np.asarray(moved["moved"]).sum() == moved["changed"] and moved["pixels"] == 120 * 160


def test_a_rerun_skips_done_cells_and_redoes_a_torn_one(measured):
    plan, path, _ = measured
    before = path.read_text()
    assert measure(plan, RecordFile(path), log=lambda _: None) == 0
    assert path.read_text() == before
    lines = before.splitlines()
    torn = path.with_name("torn.jsonl")
    torn.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # killed mid-write
    assert measure(plan, RecordFile(torn), log=lambda _: None) == 1
    redone = read_records(torn)
    assert len(redone) == 4 and json.loads(lines[-1])["method"] == redone[-1]["method"]


def test_summary_intervals_come_from_the_records(measured, monkeypatch):
    monkeypatch.setitem(why_summary.OPTIONS, "resamples", 199)
    _, path, _ = measured
    records = load([str(path)])
    out = summarise(records, ["gaussian_noise"], ["noadapt", "mlmp"])
    assert out["scenes"] == 2 and out["methods"] == ["noadapt", "mlmp", "mlmp@0"]

    def areas(method, inter="inter", union="union"):
        rs = sorted((r for r in read_records(path) if r["method"] == method), key=lambda r: r["scene"])
        return np.array([r[inter] for r in rs], float), np.array([r[union] for r in rs], float)

    row = out["table"]["mlmp"]["per_condition"]["gaussian_noise"]
    assert row["miou"]["value"] == round(pooled_miou(*areas("mlmp")), 3)
    expect = pooled_miou_interval(*areas("mlmp"), resamples=199)
    assert (row["miou"]["low"], row["miou"]["high"]) == (round(expect.low, 3), round(expect.high, 3))
    diff = paired_pooled_difference(areas("mlmp"), areas("noadapt"), resamples=199)
    assert row["vs_noadapt"]["value"] == round(diff.value, 3) and row["vs_noadapt"]["verdict"] == diff.verdict()
    zero = out["table"]["mlmp@0"]["per_condition"]["gaussian_noise"]["miou"]["value"]
    assert zero == round(pooled_miou(*areas("mlmp", "inter0", "union0")), 3)
    assert out["table"]["mlmp"]["mean"]["value"] == row["miou"]["value"]  # one condition: its mean is itself
    steps = out["mlmp_steps_vs_0_steps"]["mean"]["value"]
    assert steps == round(pooled_miou(*areas("mlmp")) - pooled_miou(*areas("mlmp", "inter0", "union0")), 3)
    # a record changed -> the summary changes with it
    changed = [dict(r, inter=[0] * len(CLASSES)) if r["method"] == "mlmp" else r for r in records]
    again = summarise(changed, ["gaussian_noise"], ["noadapt", "mlmp"])
    assert again["table"]["mlmp"]["per_condition"]["gaussian_noise"]["miou"]["value"] == 0
    assert out["why"]["cells"] == 2 and "agreement_before" in out["why"]["features"]


def test_the_command_refuses_bad_arguments_in_one_line(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, str(REPO / "benchmarks/world_methods.py"), *args],
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    bad = run("measure", "--records", str(tmp_path / "r.jsonl"), "--shard", "2/2")
    assert bad.returncode == 2 and "--shard must be i/n" in bad.stderr and "Traceback" not in bad.stderr
    bad = run("measure", "--records", str(tmp_path / "r.jsonl"), "--conditions", "original,snowstorm")
    assert bad.returncode == 2 and "unknown snowstorm" in bad.stderr
    empty = tmp_path / "one.jsonl"
    empty.write_text("")
    none = run("summary", "--records", str(empty))
    assert (
        none.returncode == 2
        and none.stderr.strip() == "error: 0 complete scene(s) in the records: intervals need at least 2"
    )


def test_the_mean_over_conditions_is_the_mean_of_each_conditions_pooled_miou():
    from mlmp_ros.bench.study.table_summary import mean_over_conditions

    rng = np.random.default_rng(0)
    areas = []
    for c in range(3):
        inter = rng.integers(0, 50, (6, 4)).astype(float)
        union = inter + rng.integers(0, 50, (6, 4))
        if c == 1:
            inter[:, 2] = union[:, 2] = 0  # a class nobody predicts nor labels: left out, as pooled_miou does
        areas.append((inter, union))
    iv = mean_over_conditions(areas)
    assert iv.value == pytest.approx(np.mean([pooled_miou(i, u) for i, u in areas]))
    assert iv.low < iv.value < iv.high and iv.n == 6
