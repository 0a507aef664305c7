"""Suites end to end on miniature data sets with the tiny random CLIP: the store, resume
after a kill, per-scenario failures, and the report's table, CSV and plots."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlmp_ros.bench.data.corruptions import DRAWS, SCENARIOS
from mlmp_ros.bench.report.files import make_report
from mlmp_ros.bench.report.paper_numbers import paper_config
from mlmp_ros.bench.report.tables import load_records
from mlmp_ros.bench.suite.file import SuiteError, load_suite, parse_suite
from mlmp_ros.bench.suite.records import DONE, NOT_RUN, TrialRecord
from mlmp_ros.bench.suite.run import run_suite
from mlmp_ros.bench.suite.store import ResultStore
from mlmp_ros.resources import config_path

from .test_runner import miou_by_confusion, write_cityscapes, write_voc

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.filterwarnings("ignore:RANDOM WEIGHTS")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("data")
    write_voc(tmp / "VOC2012", n=4)
    write_cityscapes(tmp / "cityscapes", n=2)
    return tmp


def suite_file(folder: Path, data: Path, out: str = "results", **changes) -> Path:
    """A suite on the miniatures: VOC20 clean + one corruption, Cityscapes, and a data set with no data."""
    spec = {
        "name": "tiny",
        "core": {"model": "mlmp-tiny-test", "weights": "random", "device": "cpu", "adaptation": {"steps": 1}},
        "methods": {"noadapt": {}, "tent": {}, "mlmp": {"adaptation.lr": 0.01}, "clipartt": {}},
        "seeds": [0, 1],
        "examples": 4,
        "bags": str(data / "bags"),
        "out": str(folder / out),
        "roots": {
            "voc20": str(data / "VOC2012"),
            "cityscapes": str(data / "cityscapes"),
            "context59": str(data / "no_such_folder"),
        },
        "scenarios": [
            {"dataset": "voc20", "corruptions": ["original", "gaussian_noise"], "methods": ["noadapt", "mlmp"]},
            {"dataset": "cityscapes", "methods": ["noadapt", "clipartt"]},
            {"dataset": "context59", "methods": ["noadapt"]},
        ],
        "skip": [{"dataset": "cityscapes", "method": "clipartt", "reason": "kept short in tests"}],
    }
    spec.update(changes)
    path = folder / f"{out}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cell_stats(records, dataset, corruption, method):
    vals = [r.metrics["raw"]["mIoU"] for r in records
            if (r.dataset, r.corruption, r.method, r.status) == (dataset, corruption, method, DONE)]  # fmt: skip
    return f"{np.mean(vals):.2f} ± {np.std(vals):.2f}"


def test_paper87_has_the_papers_87_scenarios() -> None:
    suite = load_suite(config_path("suites", "paper87.yaml"))
    assert suite.counts() == {"scenarios": 87, "method_runs": 507, "trials": 1521}
    per = {}
    for s in suite.scenarios:
        per.setdefault(s.dataset, []).append(s)
    for name in ("voc20", "voc21", "context59", "context60", "cityscapes"):
        assert [s.corruption for s in per[name]] == list(SCENARIOS)
        assert all(s.methods == ("noadapt", "tent", "tpt", "watt", "clipartt", "mlmp") for s in per[name])
    for name in ("coco_object", "coco_stuff"):
        assert [s.corruption for s in per[name]] == ["original"] and len(per[name][0].methods) == 6
    for name in ("acdc_fog", "acdc_night", "acdc_rain", "acdc_snow", "gta5"):
        assert [(s.corruption, s.methods) for s in per[name]] == [("original", ("noadapt", "tent", "mlmp"))]
    config = suite.method_config("mlmp")
    assert (config.model, config.weights, config.attention) == ("ViT-L-14-quickgelu", "openai", "naclip")
    assert (config.adaptation.steps, config.adaptation.lr, config.adaptation.mode) == (10, 1e-3, "episodic")
    assert (suite.batch_size, suite.seeds, suite.presize, suite.storage) == (2, (0, 1, 2), True, "mcap")
    assert len(load_suite(config_path("suites", "mini.yaml")).scenarios) == 3


def test_suite_file_errors_name_every_problem(tmp_path: Path) -> None:
    with pytest.raises(SuiteError) as err:
        parse_suite({
            "core": {"model": "x", "classes": ["cat"]},
            "methods": {"mlmp": {}, "nosuch": {}},
            "scenarios": [{"dataset": "voc20", "corruptions": ["fgo"]}, {"dataset": "pascal"}],
            "batch_size": 0,
        })  # fmt: skip
    text = str(err.value)
    for part in ("unknown method 'nosuch'", "classes come from each bag", "unknown corruptions fgo",
                 "unknown data set 'pascal'", "batch_size must be >= 1, not 0"):  # fmt: skip
        assert part in text
    with pytest.raises(SuiteError, match="adaptation.steps"):
        parse_suite({"core": {"adaptation": {"steps": -1}}, "methods": ["tent"], "scenarios": [{"dataset": "voc20"}]})


def test_suite_writes_store_table_csv_and_plots(data: Path, tmp_path: Path) -> None:
    suite = load_suite(suite_file(tmp_path, data))
    counts = run_suite(suite, progress=False)
    # voc20: 2 conditions x 2 methods x 2 trials; cityscapes: noadapt x 2; the rest not run
    assert (counts.run, counts.reused, counts.not_run) == (10, 0, 4)
    records = load_records(suite.out)
    assert len(records) == 14 and len({r.key for r in records}) == 14
    missing = [r for r in records if r.dataset == "context59"]
    assert {r.status for r in missing} == {NOT_RUN} and "no_such_folder" in missing[0].reason
    skipped = [r for r in records if r.method == "clipartt"]
    assert [r.reason for r in skipped] == ["skipped by the suite: kept short in tests"] * 2
    city = next(r for r in records if r.dataset == "cityscapes" and r.status == DONE)
    assert city.frames == 2 and city.metrics["images"] == 2

    # The saved predictions of trial 0 give the recorded mIoU (all 4 images were kept).
    mlmp0 = next(r for r in records if (r.dataset, r.corruption, r.method, r.trial) ==
                 ("voc20", "gaussian_noise", "mlmp", 0))  # fmt: skip
    saved = np.load(suite.out / mlmp0.examples)
    preds = [saved[f"prediction_{i}"] for i in range(4)]
    labels = [saved[f"labels_{i}"] for i in range(4)]
    assert miou_by_confusion(preds, labels, 20) == pytest.approx(mlmp0.metrics["raw"]["mIoU"], abs=1e-9)
    assert len(mlmp0.loss_per_step) == 1 and mlmp0.layer_weights["layers"] == [1, 2, 3]

    files = make_report(suite.out, tmp_path / "report")
    text = files.markdown.read_text()
    assert "| condition | NoAdapt | MLMP |" in text
    voc_section = next(part for part in text.split("### ") if part.startswith("Pascal VOC 20"))
    voc_rows = {line.split("|")[1].strip(): line for line in voc_section.splitlines() if line.startswith("| ")}
    for corruption in ("original", "gaussian_noise"):
        for method in ("noadapt", "mlmp"):
            assert cell_stats(records, "voc20", corruption, method) in voc_rows[corruption]
    assert "not run [1]" in text and "[1] not run:" in text and "no_such_folder" in text
    assert "CLIPArTT on Cityscapes: not run here (skipped by the suite: kept short in tests)" in text
    assert "Random weights" in text  # and nothing is claimed against the paper:
    assert not [line for line in text.splitlines() if line.startswith("| ") and "paper" in line]
    assert "token_loss" not in text  # CLIPArTT never ran, so no chunking note either

    with open(files.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(records)
    for row, record in zip(rows, records):
        assert row["key"] == record.key and row["status"] == record.status
        if record.status == DONE:
            assert float(row["mIoU"]) == record.metrics["mIoU"]
            assert json.loads(row["IoU_per_class"]) == record.metrics["IoU"]
    names = sorted(p.name for p in files.plots)
    voc = [n for n in names if n.startswith("voc20_")]
    assert {n.rsplit("_", 1)[-1] for n in voc} >= {"miou.png", "loss.png", "weights.png", "examples.png"}
    for path in files.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


class Stop(BaseException):
    """Stands for a kill between two records."""


def test_resume_after_an_interruption_redoes_nothing(data: Path, tmp_path: Path) -> None:
    scenarios = [{"dataset": "voc20", "corruptions": ["original", "gaussian_noise"], "methods": ["noadapt", "tent"]}]
    suite = load_suite(suite_file(tmp_path, data, scenarios=scenarios, seeds=[0]))
    seen = []

    def stop_after_two(record):
        seen.append(record.key)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        run_suite(suite, progress=False, on_record=stop_after_two)
    before = ResultStore(suite.out).read()
    assert len(before) == 2
    # a killed writer may leave half a line; it is ignored and cut off
    with open(suite.out / "results.jsonl", "ab") as fh:
        fh.write(b'{"schema": "mlmp-bench-result/1", "key": "torn')
    assert len(ResultStore(suite.out).read()) == 2

    resumed = []
    counts = run_suite(suite, progress=False, on_record=lambda r: resumed.append(r.key))
    assert (counts.run, counts.reused) == (2, 2)
    assert not set(resumed) & set(seen)
    after = ResultStore(suite.out).read()
    assert after[:2] == before and len(after) == 4
    assert len({r.key for r in after}) == 4

    again = run_suite(suite, progress=False)
    assert (again.run, again.reused) == (0, 4) and len(ResultStore(suite.out).read()) == 4

    # a changed config is a new experiment, not a reuse of old results
    changed = load_suite(suite_file(tmp_path, data, core={**suite.core, "adaptation": {"steps": 2}}, seeds=[0],
                                    scenarios=[{"dataset": "voc20", "methods": ["tent"]}]))  # fmt: skip
    assert run_suite(changed, progress=False).run == 1

    uninterrupted = load_suite(suite_file(tmp_path, data, out="clean", scenarios=scenarios, seeds=[0]))
    run_suite(uninterrupted, progress=False)
    clean = {r.key: r for r in ResultStore(uninterrupted.out).read()}
    assert set(clean) == {r.key for r in after}
    for r in after:
        assert r.metrics == clean[r.key].metrics and r.loss_per_step == clean[r.key].loss_per_step


def test_killed_process_resumes_without_redoing_trials(data: Path, tmp_path: Path) -> None:
    path = suite_file(tmp_path, data, scenarios=[
        {"dataset": "voc20", "corruptions": ["original", "gaussian_noise"], "methods": ["tent"]}],
        seeds=[0, 1, 2])  # fmt: skip
    store = tmp_path / "results" / "results.jsonl"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    # The suite kills itself right after its first record is written: the kill lands mid-suite on
    # any machine (killing from outside after polling the store raced a fast machine finishing).
    killer = (
        "import os, signal, sys\n"
        "from mlmp_ros.bench.suite import store\n"
        "append = store.ResultStore.append\n"
        "def append_then_die(self, record):\n"
        "    append(self, record)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "store.ResultStore.append = append_then_die\n"
        "from mlmp_ros.bench.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", killer, "suite", str(path), "--no-progress"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    before = ResultStore(store).read()
    assert len(before) == 1

    counts = run_suite(load_suite(path), progress=False)
    after = ResultStore(store).read()
    assert counts.reused == len(before) and counts.run == 6 - len(before)
    assert after[: len(before)] == before
    done = [r.key for r in after if r.status == DONE]
    assert len(done) == len(set(done)) == 6


def synthetic(dataset: str, corruption: str, method: str, seed: int, miou: float, **changes) -> TrialRecord:
    """A finished record as the suite writes it, with a chosen mIoU."""
    record = {
        "schema": "mlmp-bench-result/1", "status": DONE, "dataset": dataset, "corruption": corruption,
        "method": method, "backbone": "ViT-L-14-quickgelu", "weights": "openai", "attention": "naclip",
        "batch_size": 2, "mode": "episodic", "steps": 10, "lr": 0.001, "limit": None, "random_weights": False,
        "frames": 1449, "batches": 725, "seed": seed, "trial": seed, "config_hash": "abc", "finished": f"t{seed}",
        "metrics": {"mIoU": round(miou, 2), "raw": {"mIoU": miou}, "IoU": []},
        "timing": {"model_s_per_frame": 0.5, "segmenter_s_per_frame": {"total": 0.52},
                   "harness_s_per_frame": {"total": 0.001}},
        "loss_per_step": [1.0, 0.9], "adaptation_status": {"ok": 725}, "notes": {}, "examples": None,
    }  # fmt: skip
    corrupted = corruption != "original"
    record.update(
        severity=5 if corrupted else None, channel_order="bgr" if corrupted else None,
        corruption_draws=DRAWS if corrupted else None, config=paper_config(method),
    )  # fmt: skip
    config_changes = changes.pop("config_changes", {})
    record.update(changes)
    record["config"] = {**record["config"], **config_changes}
    record["key"] = f"{dataset}|{corruption}|{method}|{record['batch_size']}|{record['frames']}|{seed}|{changes}"
    return TrialRecord.from_json(record)


def test_report_prints_published_numbers_only_for_the_same_setting(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    values = {}
    for k, corruption in enumerate(SCENARIOS):
        for seed in (0, 1, 2):
            values[corruption, seed] = 80.0 - k + seed + 0.1 * k * seed
            store.append(synthetic("voc20", corruption, "mlmp", seed, values[corruption, seed]))
            store.append(synthetic("voc20", corruption, "mlmp", seed, 50.0, batch_size=4))  # not a paper setting
    for seed in (0, 1):
        store.append(synthetic("voc20", "original", "mlmp", seed, 84.0 + seed, batch_size=1))  # single sample
        store.append(synthetic("voc21", "original", "tent", seed, 40.0 + seed, frames=100))  # a subset
        store.append(synthetic("cityscapes", "original", "clipartt", seed, 20.0, frames=500,
                               notes={"token_loss": "chunked: 2048 rows"}))  # fmt: skip
    text = make_report(store.folder, tmp_path / "report").markdown.read_text()
    sections = {part.split("\n", 1)[0]: part for part in text.split("### ")[1:]}

    main = sections["Pascal VOC 20 (V20) — ViT-L-14-quickgelu (openai), naclip attention, batch 2, episodic"]
    clean = [values["original", s] for s in (0, 1, 2)]
    assert f"| original | {np.mean(clean):.2f} ± {np.std(clean):.2f} · paper 83.76 (Δ {np.mean(clean) - 83.76:+.2f}) |" in main
    per_seed = [np.mean([values[c, s] for c in SCENARIOS[1:]]) for s in (0, 1, 2)]
    c_avg = np.mean(per_seed)
    assert f"| -C average (15) | {c_avg:.2f} ± {np.std(per_seed):.2f} · paper 77.58 (Δ {c_avg - 77.58:+.2f}) |" in main
    assert "| fog | " in main and "paper" not in next(line for line in main.splitlines() if line.startswith("| fog"))

    single = sections["Pascal VOC 20 (V20) — ViT-L-14-quickgelu (openai), naclip attention, batch 1, episodic"]
    assert "| original | 84.50 ± 0.50 · paper 84.68 (Δ -0.18) |" in single
    other = sections["Pascal VOC 20 (V20) — ViT-L-14-quickgelu (openai), naclip attention, batch 4, episodic"]
    subset = sections["Pascal VOC 21 (V21) — ViT-L-14-quickgelu (openai), naclip attention, batch 2, episodic, 100 of 1449 frames"]
    for part in (other, subset):
        assert "No published number is claimed here" in part
        assert not [line for line in part.splitlines() if line.startswith("| ") and "paper" in line]
    city = sections["Cityscapes — ViT-L-14-quickgelu (openai), naclip attention, batch 2, episodic"]
    assert "| original | 20.00 ± 0.00 · paper – |" in city
    assert "CLIPArTT on Cityscapes: run here (chunked: 2048 rows); the paper reports no CLIPArTT number" in city


def test_report_keys_cells_on_every_setting(tmp_path: Path) -> None:
    """Other steps, lr, severity, draws, precision or a subset never share a cell or get the paper's number."""
    store = ResultStore(tmp_path / "results")
    for seed in (0, 1, 2):
        store.append(synthetic("voc20", "original", "mlmp", seed, 84.0))
        store.append(synthetic("voc20", "original", "mlmp", seed, 60.0, config_changes={"adaptation.steps": 5},
                               steps=5))  # fmt: skip
        store.append(synthetic("voc20", "fog", "mlmp", seed, 70.0))
        store.append(synthetic("voc20", "fog", "mlmp", seed, 30.0, severity=3))
        store.append(synthetic("voc20", "frost", "mlmp", seed, 65.0, corruption_draws=None))  # an older bag
        store.append(synthetic("voc20", "original", "mlmp", seed, 10.0, precision="bf16",
                               config_changes={"precision": "bf16"}))  # fmt: skip
        store.append(synthetic("voc20", "original", "mlmp", seed, 11.0, frames=2, split_size=1449, limit=2))
    text = make_report(store.folder, tmp_path / "report").markdown.read_text()
    sections = {part.split("\n", 1)[0]: part for part in text.split("### ")[1:]}
    base = "Pascal VOC 20 (V20) — ViT-L-14-quickgelu (openai), naclip attention, batch 2, episodic"
    assert set(sections) == {base, base + ", bf16", base + ", first 2 frames"}
    main = sections[base]
    header = next(line for line in main.splitlines() if line.startswith("| condition"))
    assert "MLMP (steps=10" in header and "MLMP (steps=5" in header  # two columns, labelled by what differs
    original = next(line for line in main.splitlines() if line.startswith("| original"))
    assert "84.00 ± 0.00 · paper 83.76" in original and "60.00 ± 0.00 |" in original
    assert "| fog | 70.00 ± 0.00 |" in main and "| fog (severity 3) | 30.00 ± 0.00 |" in main
    assert "| frost (library draws) | 65.00 ± 0.00 |" in main
    for name in (base + ", bf16", base + ", first 2 frames"):
        assert "paper" not in "".join(line for line in sections[name].splitlines() if line.startswith("| "))
