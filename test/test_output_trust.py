"""Help and output a user can trust (issue 27, item 4): the effective defaults printed, the world model
suggested when weights are missing, legends on plots, aligned tables, pluralised counts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlmp_ros.bench.cli.main import main
from mlmp_ros.bench.report import plots

pytestmark = pytest.mark.filterwarnings("ignore:RANDOM WEIGHTS")
TINY = ["--set", "model=mlmp-tiny-test", "--set", "weights=random", "--set", "device=cpu"]


def test_settings_prints_auto_where_the_parameter_file_says_auto(capsys) -> None:
    assert main(["settings"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert rows["layers"] == "auto" and rows["templates"] == "auto"
    from mlmp_ros.bench.cli.data_commands import AUTO_WHEN_EMPTY
    from mlmp_ros.resources import config_path
    from mlmp_ros.ros.settings import STRING_SETTINGS

    assert set(AUTO_WHEN_EMPTY) == set(STRING_SETTINGS)
    text = config_path("segment.yaml").read_text()
    assert re.search(r"^\s*layers: auto$", text, re.M) and re.search(r"^\s*templates: auto$", text, re.M)


def test_missing_weights_without_network_suggest_the_world_model(tmp_path: Path) -> None:
    from mlmp_ros.core.backbone import WeightsError, weights_file

    with pytest.raises(WeightsError) as err:
        weights_file("ViT-B-16-quickgelu", "openai", cache_dir=str(tmp_path), offline=True)
    text = str(err.value).split(" Details:")[0]  # the part mlmp-demo shows, too
    assert "model:=mlmp-world weights:=world" in text and "local file" in text


def test_one_trial_is_counted_in_the_singular_and_examples_have_a_class_legend(tmp_path: Path, capsys, monkeypatch) -> None:
    bags = tmp_path / "bags"
    assert main(["make-bags", "world", "--count", "2", "--size", "64x48", "--out", str(bags), "--no-progress"]) == 0
    out = tmp_path / "results"
    assert main(["run", str(bags / "world" / "original"), "-m", "noadapt", *TINY, "--seeds", "0", "--examples", "1",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "over 1 trial\n" in printed and "1 trial run," in printed and "1 trials" not in printed
    figures = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, done, **kw: (figures.append((path, fig)), real_save(fig, path, done, **kw)))
    assert main(["report", str(out)]) == 0
    (fig,) = [fig for path, fig in figures if path.name.endswith("_examples.png")]
    (legend,) = fig.legends
    from mlmp_ros.world import CLASSES

    names = [t.get_text() for t in legend.get_texts()]
    assert names and set(names) <= set(CLASSES) and legend.get_title().get_text() == "classes"


def test_demo_summary_columns_stay_aligned_with_one_digit_counts() -> None:
    from mlmp_ros.demo.world import summary_rows

    def run(title: str, processed: int, published: int, latency: float | None) -> dict:
        return {"title": title, "per_frame": [{"miou": 5.0}], "run_miou": 5.0, "frames_processed": processed,
                "frames_published": published, "frames_dropped": published - processed,
                "latency_median_ms": latency, "latency_p95_ms": latency}  # fmt: skip

    rows = summary_rows({"runs": {"a": run("NoAdapt", 1, 1, 8.0), "b": run("MLMP sync episodic", 120, 300, 1234.0)}})
    header = rows[0]
    ends = [m.end() for m in re.finditer(r"\S+(?: \S+)*", header)]
    for row in rows[1:]:
        assert len(row) == len(header)
        assert [m.end() for m in re.finditer(r"\S+(?: \S+)*", row)][1:] == ends[1:], (header, row)


def test_demo_description_says_which_stream_it_plays() -> None:
    from mlmp_ros.demo.arguments import build_parser

    text = build_parser().description
    assert "world stream" in text and "sample stream" in text and "world model" in text


def test_the_stream_plot_has_a_legend_on_every_panel(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    from mlmp_ros.bench.camera.rate_replay import plot_report

    kept = []
    monkeypatch.setattr(plt, "close", kept.append)  # keep the figure to look at it
    report = {
        "method": "mlmp", "schedule": "sync", "mode": "continual", "rate_hz": 10.0, "miou_camera": 0.5,
        "timeline": [{"frame": i, "pixel_acc": 0.5, "segment": "a" if i < 3 else "b"} for i in range(6)],
        "segments": [{"segment": s, "miou_camera": 0.5, "miou_processed": 0.4} for s in "ab"],
        "processed": [{"frame": i, "loss": 1.0 / (i + 1), "resets": int(i >= 4)} for i in range(6)],
    }  # fmt: skip
    plot_report(report, tmp_path / "stream.png")
    (fig,) = kept
    for ax in fig.axes:
        assert ax.get_legend() is not None and ax.get_legend().get_texts(), ax.get_ylabel()
    texts = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
    assert "next segment" in texts and "reset to the source weights" in texts
