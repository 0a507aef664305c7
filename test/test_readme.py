"""The README's first two lines are the two commands, and its Python example runs."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_starts_with_the_two_commands_and_ci_calls_the_test_one():
    text = README.read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert text.index("```sh") < 20
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_python_api_example_runs(monkeypatch):
    text = README.read_text()
    code = re.search(r"## Python API\n\n```python\n(.*?)```", text, re.S).group(1)
    assert 'weights="openai"' in code
    # The example as written, on the tiny random model (no weights can be downloaded here).
    code = code.replace('model="ViT-B-16-quickgelu"', 'model="mlmp-tiny-test"').replace(
        'weights="openai"', 'weights="random"'
    )
    code = code.replace('"adaptation.steps": 10', '"adaptation.steps": 2')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["labels"].shape == (480, 640)
    assert namespace["seg"].class_names[0] == "background" and len(namespace["seg"].class_names) == 21


def test_readme_lists_the_run_time_parameters_the_node_declares():
    """The README's list of run-time parameters is the declarations' (dev.* left out: tests only)."""
    from mlmp_ros.ros.params import RUNTIME_PARAMETERS

    text = README.read_text()
    block = re.search(r"<!-- runtime-parameters -->(.*?)<!-- /runtime-parameters -->", text, re.S).group(1)
    listed = re.findall(r"`([^`]+)`", block)
    assert len(listed) == len(set(listed))
    assert set(listed) == {p for p in RUNTIME_PARAMETERS if not p.startswith("dev.")}
