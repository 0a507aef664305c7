"""The typed trial record and its versioned JSON form: old stores still read, new fields typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlmp_ros.bench.report.files import make_report
from mlmp_ros.bench.suite.records import DONE, SCHEMA, RecordError, TrialRecord
from mlmp_ros.bench.suite.store import ResultStore, StoreError

V1 = {  # a finished record exactly as version 1 wrote it (no image settings, no split size)
    "schema": "mlmp-bench-result/1", "key": "voc20|fog|mlmp|ViT-B-16|abc|trial0|seed0", "status": DONE,
    "reason": None, "dataset": "voc20", "base_dataset": "voc20", "condition": None, "corruption": "fog",
    "bag": "bags/voc20/fog", "method": "mlmp", "backbone": "ViT-B-16", "weights": "openai", "attention": "naclip",
    "precision": "fp32", "mode": "episodic", "steps": 10, "lr": 0.001, "batch_size": 2, "shuffle": True,
    "limit": None, "trial": 0, "seed": 0, "config_hash": "abc", "config": {"adaptation.steps": 10},
    "frames": 1449, "batches": 725, "metrics": {"mIoU": 50.0, "raw": {"mIoU": 50.0}, "IoU": [50.0]},
    "timing": {"model_s_per_frame": 0.1, "segmenter_s_per_frame": {"total": 0.1},
               "harness_s_per_frame": {"total": 0.01}},
    "loss_per_step": [1.0], "adaptation_status": {"ok": 2}, "notes": {}, "examples": None, "random_weights": False,
    "finished": "2026-01-01T00:00:00", "versions": {"mlmp_ros": "0.1.0"}, "host": "h", "something_new": [1, 2],
}  # fmt: skip


def test_version_1_reads_as_the_current_form() -> None:
    record = TrialRecord.from_json(V1)
    assert record.schema == SCHEMA and record.done and record.steps == 10 and record.metrics["mIoU"] == 50.0
    assert record.severity is None and record.corruption_draws is None and record.split_size is None
    assert record.extra == {"something_new": [1, 2]}
    out = record.to_json()
    assert out["schema"] == SCHEMA and out["something_new"] == [1, 2]
    assert {k: v for k, v in out.items() if k in V1 and k != "schema"} == {k: v for k, v in V1.items() if k != "schema"}
    assert TrialRecord.from_json(out) == record  # the current form round-trips


def test_unknown_schema_and_missing_key_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="unknown record schema 'mlmp-bench-result/9'"):
        TrialRecord.from_json({**V1, "schema": "mlmp-bench-result/9"})
    with pytest.raises(RecordError, match="'key'"):
        TrialRecord.from_json({k: v for k, v in V1.items() if k != "key"})
    store = tmp_path / "results.jsonl"
    store.write_text(json.dumps(V1) + "\n" + json.dumps({**V1, "schema": "other/1"}) + "\n")
    with pytest.raises(StoreError, match=r"results.jsonl:2 is not an mlmp-bench result: unknown record schema"):
        ResultStore(store).read()


def test_old_store_reads_resumes_and_reports(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps(V1) + "\n")
    store.append(TrialRecord.from_json({**V1, "key": "k2", "seed": 1, "trial": 1}))
    failed = {k: v for k, v in V1.items() if k in ("schema", "dataset", "corruption", "method", "backbone", "weights",
              "attention", "precision", "mode", "steps", "lr", "batch_size", "limit")}  # fmt: skip
    with open(store.path, "a") as fh:  # version 1 wrote "not run" records without a config
        fh.write(json.dumps({**failed, "key": "k3", "status": "not run", "reason": "out of memory", "seed": 2,
                             "trial": 2}) + "\n")  # fmt: skip
    records = store.read()
    assert [r.schema for r in records] == [SCHEMA] * 3 and [r.seed for r in records] == [0, 1, 2]
    assert json.loads(store.path.read_text().splitlines()[1])["schema"] == SCHEMA
    text = make_report(store.folder, tmp_path / "report").markdown.read_text()
    # a version-1 fog was drawn by the library: its own row, never beside the paper
    assert "| fog (library draws) | 50.00 ± 0.00 (n=2) · not run [1] |" in text  # one column, its failed trial marked
    assert "[1] not run: out of memory" in text
