"""The import graph of mlmp_ros: no cycle at module level, no import from a higher layer.

Parsed with ``ast`` (nothing is imported), so the test is fast and sees every import, also the
late ones inside functions, which still make a dependency.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mlmp_ros"

# Layer -> prefixes it must never import (late imports included).  "Neutral" modules hold shared
# names and helpers and sit below everything.
NEUTRAL = ("mlmp_ros.constants", "mlmp_ros.catalog", "mlmp_ros.resources", "mlmp_ros.image_data")
HIGHER = ("mlmp_ros.ros", "mlmp_ros.bench", "mlmp_ros.world", "mlmp_ros.demo", "mlmp_ros.sample_stream")
FORBIDDEN = {
    "mlmp_ros.core": HIGHER,  # the science core: no ROS, no benchmark, no demo
    "mlmp_ros.ros": ("mlmp_ros.bench", "mlmp_ros.demo", "mlmp_ros.sample_stream"),
    "mlmp_ros.bench": ("mlmp_ros.ros.node", "mlmp_ros.ros.__main__", "mlmp_ros.demo"),
    "mlmp_ros.world": ("mlmp_ros.ros.node", "mlmp_ros.demo"),
    **{name: ("mlmp_ros.core", *HIGHER) for name in NEUTRAL},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(name: str) -> tuple[set[str], set[str]]:
    """(imports run when the module is imported, all imports) of mlmp_ros modules by ``name``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    top: set[str] = set()
    every: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # "from . import entropy" imports the submodule entropy.
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in MODULES else origin for a in node.names]
        else:
            continue
        targets = [t for t in targets if t == "mlmp_ros" or t.startswith("mlmp_ros.")]
        if _under_type_checking(node, parents):
            continue
        every.update(targets)
        # Module level: not inside a function (a class body runs at import time).
        scope = parents.get(node)
        while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = parents.get(scope)
        if scope is None:
            top.update(targets)
    return top, every


def test_the_graph_is_parsed():
    # The parser sees the imports it must see (this test can fail: it is not vacuous).
    top, every = imports("mlmp_ros.core.methods.base")
    assert "mlmp_ros.core.config" in top
    top, every = imports("mlmp_ros.bench.cli")
    assert "mlmp_ros.core.config" in every and "mlmp_ros.core.config" not in top  # a late import
    # config checks method names against catalog.py, never the methods (which import config).
    assert "mlmp_ros.catalog" in imports("mlmp_ros.core.config")[0]
    assert not any(t.startswith("mlmp_ros.core.methods") for t in imports("mlmp_ros.core.config")[1])
    assert "mlmp_ros.core.methods.entropy" in imports("mlmp_ros.core.methods")[0]


def test_no_import_from_a_higher_layer():
    wrong = []
    for name in MODULES:
        rules = [bad for layer, bad in FORBIDDEN.items() if name == layer or name.startswith(layer + ".")]
        for target in sorted(imports(name)[1]):
            for bad in (b for rule in rules for b in rule):
                if target == bad or target.startswith(bad + "."):
                    wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_at_module_level():
    graph = {name: sorted(t for t in imports(name)[0] if t in MODULES and t != name) for name in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_bench_help_does_not_load_torch_or_open_clip():
    code = (
        "import json, sys\n"
        "from mlmp_ros.bench.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps({m: m in sys.modules for m in ('torch', 'open_clip', 'rclpy')}), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "usage: mlmp-bench" in out.stdout
    loaded = json.loads(out.stderr.strip().splitlines()[-1])
    assert loaded == {"torch": False, "open_clip": False, "rclpy": False}, loaded
