"""The documentation site (docs/, mkdocs.yml) and the README: built strictly, commands the entry
points accept, honest about what needs a system ROS 2 install, measurements with their results
file and machine, Python examples and the pip-route script run for real."""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"
ENTRY_POINTS = ("mlmp-segment", "mlmp-demo", "mlmp-bench")
ROS2_TOOLS = re.compile(r"\bros2 (launch|param|lifecycle|service|topic)\b")
RESULTS = re.compile(r"benchmarks/results/[\w.*/-]*[\w*]")  # a file, or files (a glob) in a folder of results


def results_exist(cited: str) -> bool:
    """A cited results file exists (a glob: at least one file matches it)."""
    return any(p.is_file() for p in REPO.glob(cited)) if "*" in cited else (REPO / cited).is_file()
# A number with a unit of time, memory, throughput or proportion: what a measurement states.
CLAIM = re.compile(
    r"(?<![\w.])\d[\d,.]*(?:–\d[\d,.]*)?\s?(?:ms|s|min|minutes|seconds|h|hours|GB|MB|frames/s|"
    r"images/s|GFLOP/s|TFLOP|%|×)(?![\w/])"
)
TIMING = re.compile(r"(?<![\w.])\d[\d,.]*(?:–\d[\d,.]*)?\s?(?:ms|s|min|minutes|seconds|h|hours|frames/s)(?![\w/])")
TEST_COUNT = re.compile(r"\b\d[\d,]* (?:passed|failed|skipped|tests)\b")


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "tools" not in p.relative_to(DOCS).parts)


def split_front_matter(text: str) -> tuple[dict, str]:
    if text.startswith("---\n"):
        head, body = text[4:].split("\n---\n", 1)
        return yaml.safe_load(head) or {}, body
    return {}, text


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans (commands and values, not claims)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`]*`", "", text)


def sections(body: str) -> list[tuple[str, str]]:
    """(heading, text) of each section of a page, split at its headings (outside code blocks)."""
    parts, heading, lines, fenced = [], "(top)", [], False
    for line in body.splitlines():
        fenced ^= line.startswith("```")
        if not fenced and re.match(r"#{1,6} ", line):
            parts.append((heading, "\n".join(lines)))
            heading, lines = line.lstrip("# "), []
        else:
            lines.append(line)
    return [*parts, (heading, "\n".join(lines))]


# ------------------------------------------------------------------ commands
def sh_commands(text: str) -> list[list[str]]:
    """Every simple command in the page's ```sh blocks, as argv lists (comments, redirections,
    pipes and && cut off)."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            current: list[str] = []
            for token in [*tokens, "&&"]:
                if token in ("&&", ";", "|", "||") or token.startswith((">", "<")):
                    if current:
                        commands.append(current)
                    current = [] if token in ("&&", ";", "|", "||") else ["<redirected>"]
                elif current != ["<redirected>"]:
                    current.append(token)
    return [c for c in commands if c and c[0] != "<redirected>"]


def entry_point_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in [README, *pages()]:
        for argv in sh_commands(path.read_text(encoding="utf-8")):
            if argv[0] in ENTRY_POINTS:
                found.append((str(path.relative_to(REPO)), argv))
    return found


def console_scripts() -> dict[str, str]:
    """setup.py's console_scripts: name -> module:function."""
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    return dict(re.findall(r'"([\w-]+) = ([\w.]+:\w+)"', text))


@functools.cache
def help_text(script: str, sub: str | None) -> str:
    """``--help`` of an entry point (a sub-command of mlmp-bench), run as setup.py declares it."""
    module, function = console_scripts()[script].split(":")
    code = f"import sys; from {module} import {function} as main; sys.argv[0] = {script!r}; sys.exit(main())"
    args = [sub, "--help"] if sub else ["--help"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, f"{script} {' '.join(args)} failed: {done.stderr[-2000:]}"
    return done.stdout


def _options(argv: list[str]) -> list[str]:
    return [t.split("=", 1)[0] for t in argv if t.startswith("-") and t not in ("-", "--")]


def declared_names() -> set[str]:
    from mlmp_ros.ros.settings import declared_settings

    return {s.name for s in declared_settings()} | {"use_sim_time"}


def ros_args_problems(args: list[str]) -> list[str]:
    """What is wrong in the ``--ros-args`` part of an mlmp-segment command."""
    problems, names = [], declared_names()
    pairs = iter(args)
    for token in pairs:
        if token in ("-r", "--remap", "-p", "--param"):
            value = next(pairs, "")
            if ":=" not in value:
                problems.append(f"{token} {value!r} needs NAME:=VALUE")
            elif token in ("-p", "--param") and value.split(":=")[0] not in names:
                problems.append(f"-p {value.split(':=')[0]}: the node declares no such parameter")
        elif token in ("--params-file", "--log-level"):
            next(pairs, None)
        else:
            problems.append(f"{token!r} is not a ROS argument this page should show")
    return problems


def command_problems(argv: list[str]) -> list[str]:
    script, rest = argv[0], argv[1:]
    ros_args: list[str] = []
    if script == "mlmp-segment" and "--ros-args" in rest:
        at = rest.index("--ros-args")
        rest, ros_args = rest[: at + 1], rest[at + 1 :]
    sub = rest[0] if script == "mlmp-bench" and rest and not rest[0].startswith("-") else None
    known = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text(script, sub)))
    problems = [f"{o}: not an option of {script} {sub or ''}".strip() for o in _options(rest) if o not in known]
    for i, token in enumerate(rest[:-1]):
        if token == "--set" and rest[i + 1].split("=")[0] not in declared_names():
            problems.append(f"--set {rest[i + 1]}: no such setting")
    return problems + ros_args_problems(ros_args)


def test_every_command_shown_is_one_the_entry_points_accept():
    commands = entry_point_commands()
    scripts = {argv[0] for _, argv in commands}
    assert scripts == set(ENTRY_POINTS) and set(console_scripts()) >= scripts
    assert sum(1 for path, _ in commands if path == "docs/quick-start.md") >= 5
    assert any(path == "README.md" for path, _ in commands)
    problems = [f"{path}: {' '.join(argv)}: {p}" for path, argv in commands for p in command_problems(argv)]
    assert not problems, "\n".join(problems)


def test_the_command_check_catches_a_wrong_option_a_wrong_parameter_and_a_missing_sub_command():
    assert command_problems(["mlmp-bench", "run", "bags/x", "--methd", "mlmp"]) == [
        "--methd: not an option of mlmp-bench run"
    ]
    assert command_problems(["mlmp-segment", "--ros-args", "-p", "adaptation.mood:=continual"]) == [
        "-p adaptation.mood: the node declares no such parameter"
    ]
    assert command_problems(["mlmp-demo", "--set", "adaptation.stepz=2"]) == [
        "--set adaptation.stepz=2: no such setting"
    ]
    with pytest.raises(AssertionError, match="mlmp-bench nonexistent --help failed"):
        help_text("mlmp-bench", "nonexistent")


# ------------------------------------------------------------- honest routes
def ros2_without_note(text: str) -> list[str]:
    """Each ``ros2 launch|param|lifecycle|service|topic`` shown without, close after it (or just
    before, for a mention in prose), the words that it needs a system ROS 2 install and a
    pip-route equivalent."""
    missing = []
    text = re.sub(r"^```python\n.*?^```", "", text, flags=re.S | re.M)  # the pip-route script's own comments
    for m in ROS2_TOOLS.finditer(text):
        near = text[max(0, m.start() - 400) : m.end() + 1200]
        if "system ROS 2" not in near or not re.search(r"mlmp-segment --ros-args|mlmp_ctl\.py|rclpy", near):
            line = text.count("\n", 0, m.start()) + 1
            missing.append(f"line {line}: {text[m.start() : m.start() + 50].splitlines()[0]}")
    return missing


def test_every_ros2_command_says_it_needs_a_system_ros_install_and_gives_the_pip_route():
    shown = {p: ros2_without_note(p.read_text(encoding="utf-8")) for p in [README, *pages()]}
    assert sum(len(ROS2_TOOLS.findall(p.read_text(encoding="utf-8"))) for p in shown) >= 10
    missing = [f"{p.relative_to(REPO)} {m}" for p, ms in shown.items() for m in ms]
    assert not missing, "\n".join(missing)
    assert ros2_without_note("Run it:\n\n```sh\nros2 launch mlmp_ros segment.launch.py\n```\n")


# ------------------------------------------------------------- measurements
def measurement_problems(path: Path) -> list[str]:
    meta, body = split_front_matter(path.read_text(encoding="utf-8"))
    problems = [f"test count {m!r}" for m in TEST_COUNT.findall(prose(body))]
    for heading, text in sections(body):
        claims = CLAIM.findall(prose(text)) if meta.get("measurements") else TIMING.findall(prose(text))
        if not claims:
            continue
        if not meta.get("measurements"):
            problems.append(f"{heading!r}: timings {claims[:3]} on a page that states no measurements")
            continue
        cited = [c for c in RESULTS.findall(text) if results_exist(c)]
        if not cited or not re.search(r"\bmachine\b", text, re.I):
            problems.append(
                f"{heading!r}: {claims[:3]} without a results file under benchmarks/results/ and the machine"
            )
    return problems


def test_measurements_name_their_results_file_and_machine_and_nothing_else_states_timings_or_test_counts():
    measured = [p for p in pages() if split_front_matter(p.read_text(encoding="utf-8"))[0].get("measurements")]
    assert {p.relative_to(DOCS).as_posix() for p in measured} >= {"performance.md", "streaming.md", "configuration.md"}
    problems = [f"{p.relative_to(REPO)}: {m}" for p in [README, *pages()] for m in measurement_problems(p)]
    assert not problems, "\n".join(problems)
    cited = {c for p in [README, *pages()] for c in RESULTS.findall(p.read_text(encoding="utf-8"))}
    assert cited and all(results_exist(c) for c in cited), sorted(c for c in cited if not results_exist(c))


def test_the_measurement_check_catches_an_uncited_number_and_a_timing_on_a_plain_page(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("---\nmeasurements: true\n---\n# P\n\n## A\n\nIt took 12.4 s a frame.\n")
    assert measurement_problems(page) == [
        "'A': ['12.4 s'] without a results file under benchmarks/results/ and the machine"
    ]
    page.write_text("# P\n\nAll 598 passed in 15 minutes.\n")
    assert measurement_problems(page) == [
        "test count '598 passed'",
        "'P': timings ['15 minutes'] on a page that states no measurements",
    ]


# ------------------------------------------------------------ Python examples
def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_python_api_examples_run_on_the_tiny_model():
    first, scheduled = python_blocks(DOCS / "python.md")[:2]
    assert 'weights="openai"' in first and "ScheduledSegmenter" in scheduled
    code = first.replace('model="ViT-B-16-quickgelu"', 'model="mlmp-tiny-test"').replace(
        'weights="openai"', 'weights="random"'
    )
    code = code.replace('"adaptation.steps": 10', '"adaptation.steps": 2')
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "docs/python.md", "exec"), namespace)
        assert namespace["labels"].shape == (480, 640)
        assert namespace["seg"].class_names[0] == "background" and len(namespace["seg"].class_names) == 21
        namespace["cfg"] = namespace["cfg"].replace(**{"adaptation.steps": 1})
        exec(compile(scheduled, "docs/python.md", "exec"), namespace)
    assert namespace["out"].result.frames[0].labels.shape == (480, 640)


# ------------------------------------------------------------- the site build
def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = mkdocs_build(REPO / "mkdocs.yml", out)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_the_site_builds_strictly_with_every_page_in_the_navigation(site):
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:\n", 1)[1].join(["nav:\n", ""]))
    listed = set(re.findall(r"[\w/-]+\.md", str(nav["nav"])))
    assert listed == {p.relative_to(DOCS).as_posix() for p in pages()} | {"world/model-card.md"}
    assert (site / "api" / "core" / "index.html").read_text().count('id="mlmp_ros.core.segmenter.Segmenter') >= 1
    card = (site / "world" / "model-card" / "index.html").read_text()
    assert "How it was trained" in card and "world_model.json" in card


def test_a_broken_anchor_or_a_page_left_out_of_the_navigation_fails_the_strict_build(tmp_path):
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "consumers.md"
    page.write_text(page.read_text() + "\nSee [the topics](node/index.md#no-such-heading).\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the navigation\n")
    done = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "no-such-heading" in done.stderr and "orphan.md" in done.stderr, done.stderr[-3000:]


def _table_names(html: str) -> list[str]:
    return re.findall(r"<tr>\s*<td><code>([\w.]+)</code></td>", html)


def test_the_parameter_tables_are_generated_from_the_declarations(site):
    from mlmp_ros.ros.params import RUNTIME_PARAMETERS
    from mlmp_ros.ros.settings import declared_settings, node_default

    html = (site / "node" / "parameters" / "index.html").read_text()
    listed = _table_names(html)
    declared = [s for s in declared_settings() if not s.name.startswith("dev.")]
    assert sorted(listed) == sorted(s.name for s in declared)  # each exactly once
    rows = dict(re.findall(r"<tr>\s*<td><code>([\w.]+)</code></td>(.*?)</tr>", html, re.S))
    runtime = {name for name, row in rows.items() if re.search(r"<td>yes</td>", row)}
    assert runtime == {p for p in RUNTIME_PARAMETERS if not p.startswith("dev.")}
    by_name = {s.name: s for s in declared}
    assert "<td><code>async</code></td>" in rows["adaptation.schedule"]  # the node's default: the robot settings
    assert "paper: <code>sync</code>" in rows["adaptation.schedule"]
    for name in ("adaptation.steps", "input.max_windows", "precision"):
        assert f"<code>{yaml.safe_dump(node_default(by_name[name])).split()[0]}</code>" in rows[name]


def test_the_hook_refuses_a_page_that_leaves_out_a_parameter_group():
    sys.path.insert(0, str(DOCS / "tools"))
    try:
        import hooks
    finally:
        sys.path.remove(str(DOCS / "tools"))
    with pytest.raises(ValueError, match=r"missing \['adaptation'"):
        hooks.fill_parameter_tables("<!-- parameters: model -->")
    with pytest.raises(ValueError, match="unknown parameter group"):
        hooks.fill_parameter_tables("<!-- parameters: modle -->")
    assert hooks.fill_parameter_tables("no marker") == "no marker"


# ------------------------------------------------------- the pip-route script
def run_ctl(script: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)  # fmt: skip


def test_the_pip_route_script_drives_a_node_as_ros2cli_would(tmp_path):
    """The docs' mlmp_ctl.py, as printed, against a real managed node: lifecycle transitions,
    a parameter set and one refused, the services, one diagnostics status."""
    pytest.importorskip("lifecycle_msgs", reason="lifecycle_msgs is not installed")
    from mlmp_ros.ros.live import NodeProcess

    (block,) = [b for b in python_blocks(DOCS / "node" / "parameters.md") if b.startswith('"""mlmp_ctl.py')]
    script = tmp_path / "mlmp_ctl.py"
    script.write_text(block)
    node = NodeProcess(REPO / "config" / "segment.yaml", {"model": "mlmp-tiny-test", "weights": "random",
                       "device": "cpu", "autostart": False}, namespace="docs_ctl", env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    target = "/docs_ctl/mlmp_segment"
    node.start()
    try:
        for transition in ("configure", "activate"):
            done = run_ctl(script, target, "lifecycle", transition)
            assert (done.returncode, done.stdout.strip()) == (0, "done"), done.stderr[-2000:] + node.log_tail()
        done = run_ctl(script, target, "param", "adaptation.mode", "continual")
        assert (done.returncode, done.stdout.strip()) == (0, "set"), done.stderr[-2000:]
        done = run_ctl(script, target, "param", "adaptation.mode", "sideways")
        assert done.returncode == 1 and done.stdout.startswith("refused: ") and "adaptation.mode" in done.stdout
        assert run_ctl(script, target, "reset").returncode == 0
        done = run_ctl(script, target, "diagnostics")
        assert done.returncode == 0 and "'adaptation_mode': 'continual'" in done.stdout, done.stdout[-2000:]
        assert run_ctl(script, target, "enable", "false").returncode == 0
        assert run_ctl(script, target, "lifecycle", "cleanup").returncode == 1  # active: deactivate first
        done = run_ctl(script)
        assert done.returncode == 1 and done.stderr.strip().startswith("mlmp_ctl.py NODE param")
    finally:
        node.stop()
        node.cleanup()
