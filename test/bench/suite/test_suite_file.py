"""Suite files are built and checked by the settings schema's builder (core/schema.py), like Config."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlmp_ros.bench.offline.options import RunError, RunOptions
from mlmp_ros.bench.suite.file import SuiteError, SuiteFile, load_suite, parse_suite
from mlmp_ros.core import schema
from mlmp_ros.resources import config_path

MINIMAL = {"core": {"model": "mlmp-tiny-test", "weights": "random"}, "methods": ["tent"],
           "scenarios": [{"dataset": "voc20"}]}  # fmt: skip


def problems_of(**changes) -> str:
    with pytest.raises(SuiteError) as err:
        parse_suite({**MINIMAL, **changes})
    return str(err.value)


def test_a_minimal_suite_takes_the_declared_defaults():
    suite = parse_suite(MINIMAL)
    declared = {s.name: s.default for s in schema.settings(SuiteFile)}
    assert (suite.batch_size, suite.examples, suite.shuffle) == (declared["batch_size"], declared["examples"], True)
    assert (suite.storage, suite.severity, suite.channel_order, suite.presize) == ("mcap", 5, "bgr", True)
    assert suite.seeds == (0, 1, 2) and suite.limit is None and suite.name == "suite"
    assert suite.options == RunOptions(batch_size=2, seeds=(0, 1, 2), shuffle=True, limit=None, examples=3)


def test_plain_keys_are_refused_with_reasons_from_their_declarations():
    text = problems_of(severity=7, storage="zip", channel_order="xyz", examples=-1, limit=0, bogus=1)
    assert "severity must be in [1, 5], not 7" in text
    assert "storage must be one of " in text and "not 'zip'" in text
    assert "channel_order must be one of " in text and "not 'xyz'" in text
    assert "examples must be >= 0, not -1" in text
    assert "limit must be >= 1, not 0" in text
    assert "unknown key 'bogus' (known: " in text and "batch_size" in text
    assert "'batch_size': expected an integer, got 'two'" in problems_of(batch_size="two")
    assert "'presize': expected true/false" in problems_of(presize=3)


def test_seeds_and_trials_are_checked_together():
    assert "seeds must differ, got [1, 1]" in problems_of(seeds=[1, 1])
    assert "seeds must be integers >= 0, not [-1]" in problems_of(seeds=[-1])
    assert "'trials' is 2 but 3 seeds are listed" in problems_of(trials=2, seeds=[0, 1, 2])
    assert parse_suite({**MINIMAL, "trials": 2}).seeds == (0, 1)
    assert parse_suite({**MINIMAL, "seeds": 4}).seeds == (4,)  # one seed may be given bare


def test_the_run_options_of_a_suite_file_are_the_run_options_declarations():
    suite_fields = {s.name: s.meta for s in schema.settings(SuiteFile)}
    for s in schema.settings(RunOptions):
        assert suite_fields[s.name] is s.meta, s.name  # declared once, in bench/offline/options.py
    # and refused the same way in Python as in a file
    with pytest.raises(RunError, match="seeds must differ, got \\[1, 1\\]"):
        RunOptions(seeds=(1, 1))
    with pytest.raises(RunError, match="batch_size must be an integer, not True"):
        RunOptions(batch_size=True)
    with pytest.raises(RunError, match="limit must be >= 1, not 0"):
        RunOptions(limit=0)


def test_structured_keys_and_core_settings_are_still_named():
    text = problems_of(methods={"tent": {}, "nosuch": {}}, core={"adaptation": {"steps": -1}, "classes": ["x"]})
    assert "methods: unknown method 'nosuch'; choose from noadapt, tent" in text
    assert "core: classes come from each bag's data set; remove them" in text
    text = problems_of(core={"adaptation": {"steps": -1}})
    assert "core config for tent: adaptation.steps must be >= 0, not -1" in text


def test_a_suite_file_names_its_path_in_errors(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("core: {}\nmethods: [tent]\nscenarios: [{dataset: voc20}]\nseverity: 0\n")
    with pytest.raises(SuiteError, match=f"{path}: severity must be in \\[1, 5\\], not 0"):
        load_suite(path)


@pytest.mark.parametrize("name", ["mini.yaml", "paper87.yaml", "world.yaml"])
def test_the_bundled_suites_parse(name):
    suite = load_suite(config_path("suites", name))
    assert suite.scenarios and suite.seeds


def test_command_line_overrides_are_checked_by_the_same_declarations():
    from mlmp_ros.bench.suite.file import apply_overrides

    suite = parse_suite(MINIMAL)
    assert apply_overrides(suite, limit=5).limit == 5
    with pytest.raises(SuiteError, match="limit must be >= 1, not 0"):
        apply_overrides(suite, limit=0)
