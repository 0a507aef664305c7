"""Uncertainty with every comparison in the reports (issue 27, item 5): report.md and results.csv give
each mIoU with a 95% bootstrap interval over scenes and each method-vs-NoAdapt difference with a paired
interval, worded as the interval allows; stores written before per-scene areas existed still report and
resume, with the interval marked unavailable."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mlmp_ros.bench.cli.main import main
from mlmp_ros.bench.report.tables import build_tables
from mlmp_ros.bench.report.uncertainty import UNAVAILABLE, table_intervals
from mlmp_ros.bench.scoring.intervals import pooled_miou
from mlmp_ros.bench.scoring.unit_areas import decode_unit_areas, encode_unit_areas
from mlmp_ros.bench.suite.records import TrialRecord
from mlmp_ros.bench.suite.store import ResultStore

pytestmark = pytest.mark.filterwarnings("ignore:RANDOM WEIGHTS")
TINY = ["--set", "model=mlmp-tiny-test", "--set", "weights=random", "--set", "device=cpu"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """noadapt and tent (1 step) on 6 world scenes, one trial each."""
    folder = tmp_path_factory.mktemp("intervals")
    assert main(["make-bags", "world", "--count", "6", "--size", "64x48", "--out", str(folder / "bags"),
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["run", str(folder / "bags" / "world" / "original"), "-m", "noadapt,tent", *TINY,
                 "--set", "adaptation.steps=1", "--seeds", "0", "--examples", "0", "--out", str(folder / "results"),
                 "--no-progress"]) == 0  # fmt: skip
    return folder / "results"


def test_records_carry_each_scenes_areas(store: Path) -> None:
    for record in ResultStore(store / "results.jsonl").read():
        inter, union = decode_unit_areas(record.unit_areas)
        assert inter.shape == union.shape == (6, len(record.class_names))
        assert (inter <= union).all()
        assert pooled_miou(inter, union) == pytest.approx(record.metrics["raw"]["mIoU"])


def test_report_and_csv_give_intervals_and_paired_differences(store: Path, tmp_path: Path) -> None:
    assert main(["report", str(store), "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "95% bootstrap confidence interval" in report
    (row,) = [line for line in report.splitlines() if line.startswith("| original (6 scenes) |")]
    noadapt, tent = (cell.strip() for cell in row.strip("|").split("|")[1:])
    assert noadapt.count("[") == 1 and "Δ" not in noadapt
    assert "Δ " in tent and any(tent.endswith(w) for w in ("gains", "loses", "no measurable difference"))
    assert "- TENT vs NoAdapt: " in report and " of 1 condition" in report
    with open(tmp_path / "results.csv", newline="") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    for method, r in rows.items():
        assert float(r["mIoU_ci95_low"]) <= float(r["cell_mIoU_pooled"]) <= float(r["mIoU_ci95_high"]), method
        assert float(r["cell_mIoU_pooled"]) == pytest.approx(float(r["mIoU"]), abs=0.006) and r["units"] == "6"
    assert rows["noadapt"]["vs_noadapt"] == ""
    t = rows["tent"]
    assert float(t["vs_noadapt"]) == pytest.approx(float(t["mIoU"]) - float(rows["noadapt"]["mIoU"]), abs=0.011)
    assert t["vs_noadapt_verdict"] in ("gains", "loses", "no measurable difference")


def test_old_records_still_report_and_resume(store: Path, tmp_path: Path, capsys) -> None:
    old = tmp_path / "old"
    old.mkdir()
    lines = [json.loads(line) for line in (store / "results.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("unit_areas")
    (old / "results.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["report", str(old)]) == 0
    report = (old / "report" / "report.md").read_text()
    assert UNAVAILABLE in report and "run them again" in report
    with open(old / "report" / "results.csv", newline="") as fh:
        assert all(r["mIoU_ci95_low"] == "" and r["interval_note"] for r in csv.DictReader(fh))
    bag = lines[0]["bag"]
    capsys.readouterr()
    assert main(["run", bag, "-m", "noadapt,tent", *TINY, "--set", "adaptation.steps=1", "--seeds", "0",
                 "--examples", "0", "--out", str(old), "--no-progress"]) == 0  # fmt: skip
    assert "0 trials run, 2 already in" in capsys.readouterr().out  # resume keeps the old records


def _record(method: str, inter: np.ndarray, union: np.ndarray) -> TrialRecord:
    return TrialRecord(
        key=f"world|original|{method}", status="done", dataset="world", corruption="original", method=method,
        backbone="b", weights="w", attention="a", precision="fp32", mode="episodic", batch_size=1, trial=0, seed=0,
        config_hash=method, config={"adaptation.method": method}, frames=len(inter), finished="2026",
        metrics={"mIoU": pooled_miou(inter, union), "raw": {"mIoU": pooled_miou(inter, union)}},
        unit_areas=encode_unit_areas(inter, union),
    )  # fmt: skip


def test_areas_travel_sparse_and_come_back_exact() -> None:
    rng = np.random.default_rng(1)
    union = rng.integers(0, 3, (7, 30)) * rng.integers(1, 10**6, (7, 30))  # most classes absent from a frame
    inter = union // 2
    data = json.loads(json.dumps(encode_unit_areas(inter, union)))
    assert len(data["entries"]) == int((union > 0).sum())
    back = decode_unit_areas(data)
    np.testing.assert_array_equal(back[0], inter)
    np.testing.assert_array_equal(back[1], union)
    assert decode_unit_areas(None) is None and decode_unit_areas({"intersection": [[1]]}) is None


def test_a_difference_is_worded_as_its_paired_interval_allows() -> None:
    rng = np.random.default_rng(0)
    union = rng.integers(500, 1000, (24, 5)).astype(float)
    base = np.floor(union * rng.uniform(0.2, 0.8, (24, 5)))  # scenes differ a lot ...
    better = np.minimum(base + np.floor(0.03 * union), union)  # ... but every one gains a little
    noise = np.clip(np.round(base + rng.normal(0, 0.05, base.shape) * union), 0, union)
    (table,) = build_tables([_record("noadapt", base, union), _record("tent", better, union), _record("mlmp", noise, union)])
    intervals = table_intervals(table)
    tent, mlmp = intervals["world", "original", "tent"], intervals["world", "original", "mlmp"]
    assert tent.difference.verdict() == "gains" and tent.difference.low > 0
    assert intervals["world", "original", "noadapt"].difference is None
    assert mlmp.difference.low < mlmp.difference.value < mlmp.difference.high
    assert mlmp.difference.verdict() == ("no measurable difference" if mlmp.difference.low < 0 < mlmp.difference.high
                                         else "gains" if mlmp.difference.low > 0 else "loses")  # fmt: skip
    worse = intervals["world", "original", "tent"].difference
    (swapped,) = build_tables([_record("noadapt", better, union), _record("tent", base, union)])
    assert table_intervals(swapped)["world", "original", "tent"].difference.verdict() == "loses"
    assert worse.value == pytest.approx(pooled_miou(better, union) - pooled_miou(base, union))
