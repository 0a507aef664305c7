"""`make demo` twice works (issue 27, item 1): a second mlmp-demo run with the same --out replaces the
first run's outputs (bags, overlays, logs, summary) instead of failing on them."""

from __future__ import annotations

import json

from mlmp_ros.demo.main import main as demo


def test_the_demo_runs_twice_into_the_same_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the nodes share the cores with this process
    out = tmp_path / "demo_out"
    (out).mkdir()
    (out / "notes.txt").write_text("mine")  # not the demo's: left alone
    common = ["--offline", "--device", "cpu", "--paced", "--out", str(out)]
    assert demo([*common, "--frames", "2"]) == 0, capsys.readouterr().out
    assert len(list(out.glob("overlay_*.png"))) == 2 and (out / "outputs_noadapt").is_dir()
    first = json.loads((out / "summary.json").read_text())
    capsys.readouterr()

    code = demo([*common, "--frames", "1"])
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    assert "Traceback" not in printed.err and "exists already" not in printed.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world"]["frames"] == 1 and first["world"]["frames"] == 2
    assert sorted(p.name for p in out.glob("overlay_*.png")) == ["overlay_00.png"]  # the last run's only
    for tag, run in summary["runs"].items():
        assert run["output_messages"] == 2, tag  # labels and confidence of the one frame, not the first run's
    assert (out / "notes.txt").read_text() == "mine"
