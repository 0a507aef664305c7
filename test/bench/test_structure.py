"""The shape of ``mlmp_ros.bench``, read with ``ast`` (nothing is imported): size limits, no import
cycle of any kind inside it (module level, inside functions or under TYPE_CHECKING), no private
name imported from another module, and ``mlmp_ros.world`` importing nothing of it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "mlmp_ros"
BENCH = PACKAGE / "bench"
MAX_FUNCTION_LINES = 50
MAX_FILE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``mlmp_ros`` import in module ``name``, wherever it stands."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            origin = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:  # "from . import x" imports the submodule x
                sub = f"{origin}.{a.name}"
                out.append((sub, []) if sub in MODULES else (origin, [a.name]))
    return [(m, n) for m, n in out if m == "mlmp_ros" or m.startswith("mlmp_ros.")]


def test_the_reader_sees_late_imports():
    # not vacuous: replay-live imports the node's live session inside a function (rclpy loads only there)
    assert ("mlmp_ros.ros.live", ["LiveSession"]) in imported("mlmp_ros.bench.camera.replay_live")
    assert ("mlmp_ros.bench.suite.trials", ["run_trials"]) in imported("mlmp_ros.bench.suite.executors")


def test_no_function_over_50_lines_and_no_file_over_400_lines():
    long_files, long_functions = [], []
    for path in sorted(BENCH.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # decorators not counted, the docstring is
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{rel}:{node.lineno} {node.name}: {length} lines")
    assert not long_files, "\n".join(long_files)
    assert not long_functions, "\n".join(long_functions)


def test_the_limits_would_catch_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    tree = ast.parse(f"def f():\n{body}\n")
    (f,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    assert f.end_lineno - f.lineno + 1 == MAX_FUNCTION_LINES + 1


def test_no_import_cycle_of_any_kind_in_the_bench():
    bench = [name for name in MODULES if name.startswith("mlmp_ros.bench")]
    graph = {name: sorted({m for m, _ in imported(name) if m in MODULES and m != name and m.startswith("mlmp_ros.bench")})
             for name in bench}  # fmt: skip
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_name_crosses_a_module_boundary_in_the_bench():
    crossing = [
        f"{name} imports {module}.{n}"
        for name in MODULES
        if name.startswith("mlmp_ros.bench")
        for module, names in imported(name)
        for n in names
        if n.startswith("_") and not n.startswith("__") and module != name
    ]
    assert not crossing, "\n".join(crossing)


def test_the_world_imports_nothing_of_the_bench():
    wrong = [f"{name} imports {module}" for name in MODULES if name.startswith("mlmp_ros.world")
             for module, _ in imported(name) if module.startswith("mlmp_ros.bench")]  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_only_the_camera_replays_touch_the_node_side():
    """rclpy and mlmp_ros.ros are imported in mlmp_ros/bench/camera only (replay-live)."""
    wrong = []
    for path in sorted(BENCH.rglob("*.py")):
        name = module_name(path)
        if name.startswith("mlmp_ros.bench.camera"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        third_party = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        third_party += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level]
        ours = [m for m, _ in imported(name)]
        wrong += [f"{name} imports {m}" for m in third_party + ours if m.split(".")[0] == "rclpy" or
                  m.startswith("mlmp_ros.ros")]  # fmt: skip
    assert not wrong, "\n".join(wrong)
    assert any(m.startswith("mlmp_ros.ros") for m, _ in imported("mlmp_ros.bench.camera.replay_live"))


def test_core_config_and_the_bench_files_import_without_torch():
    """``mlmp_ros.core`` exports lazily (PEP 562): its config and schema, and the bench modules that only
    read and write files (suite files, the store, reports, the command line), load no torch."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "import mlmp_ros.core, mlmp_ros.core.config, mlmp_ros.core.schema\n"
        "import mlmp_ros.bench.suite.file, mlmp_ros.bench.suite.store, mlmp_ros.bench.report.files\n"
        "import mlmp_ros.bench.cli.main, mlmp_ros.bench.data.registry\n"
        "before = 'torch' in sys.modules\n"
        "from mlmp_ros.core import Segmenter\n"  # a lazy export still works, and loads torch
        "print(json.dumps([before, 'torch' in sys.modules, Segmenter.__name__]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, True, "Segmenter"]
