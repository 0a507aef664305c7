"""The shape of mlmp_ros, package-wide: the import graph (no cycle of any kind, no import from a
higher layer, no import of a missing module), no private name or member taken from another module,
and size limits (no module over 400 lines, no function over 50).

Parsed with ``ast`` (nothing is imported), so the test is fast and sees every import: the ones at
module level, the late ones inside functions and the ones under ``if TYPE_CHECKING:``.  Each makes
a dependency, so each counts for cycles and layers.  (Imports by a computed string, such as
``importlib.import_module(name)``, are not seen.)
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Layer -> prefixes it must never import (late and TYPE_CHECKING imports included).  "Neutral"
# modules hold shared names and helpers and sit below everything.
NEUTRAL = ("mlmp_ros.constants", "mlmp_ros.catalog", "mlmp_ros.resources", "mlmp_ros.image_data", "mlmp_ros.lazy",
           "mlmp_ros.robot")  # fmt: skip
DEMO = ("mlmp_ros.demo",)  # the top of the stack: only the demo's own modules import it
NODE = ("mlmp_ros.ros.node", "mlmp_ros.ros.lifecycle", "mlmp_ros.ros.main", "mlmp_ros.ros.__main__")
HIGHER = ("mlmp_ros.ros", "mlmp_ros.bench", "mlmp_ros.world", *DEMO)
# Third-party packages of ROS (messages, client library, launch, bags).
ROS = ("rclpy", "sensor_msgs", "std_msgs", "std_srvs", "builtin_interfaces", "diagnostic_msgs", "lifecycle_msgs",
       "rcl_interfaces", "vision_msgs", "cv_bridge", "launch", "launch_ros", "rosbag2_py", "rosbags")
FORBIDDEN = {
    "mlmp_ros.core": (*HIGHER, *ROS),  # the science core: no ROS, no benchmark, no demo
    "mlmp_ros.ros": ("mlmp_ros.bench", *DEMO),
    # The benchmark reads bags but never talks ROS, apart from the camera replays, which play bags into
    # the node over DDS; none imports the node itself (it runs as a process).
    "mlmp_ros.bench": (*NODE, *DEMO, "mlmp_ros.ros", *(r for r in ROS if r != "rosbags")),
    "mlmp_ros.bench.camera": (*NODE, *DEMO),
    # The world (data and model) sits below the benchmark, which reads it as one of its data sets.
    "mlmp_ros.world": ("mlmp_ros.bench", *NODE, *DEMO, *ROS),
    **{name: ("mlmp_ros.core", *HIGHER, *ROS) for name in NEUTRAL},
}
# The most specific layer a module belongs to gives its rule (mlmp_ros.bench.camera, not mlmp_ros.bench).


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50  # from the ``def`` line to the last line, docstring included, decorators not
# Private members of third-party code that the package uses on purpose, each for want of a public way:
# (module, attribute) -> why.
ALLOWED_PRIVATE = {
    ("mlmp_ros.ros.lifecycle", "_LifecycleNodeMixin__on_change_state"):
        "rclpy's change_state handler, extended to log why a transition was refused (no public hook)",
    ("mlmp_ros.ros.lifecycle", "_LifecycleNodeMixin__on_get_available_transitions"):
        "rclpy's handler that lists the transitions available now (no public method)",
    ("mlmp_ros.ros.lifecycle", "_state_machine"): "rclpy's current lifecycle state (no public accessor)",
    ("mlmp_ros.ros.cli", "_exit"): "os._exit: Python's documented exit when a thread cannot be stopped",
    ("mlmp_ros.core.dense", "_version"): "torch's count of in-place changes to a tensor, the one key that "
        "invalidates the cached resized position embedding and bf16 weight casts when an optimiser step changes "
        "a weight in place (its id and data_ptr stay the same); no public accessor",
}


def is_private(name: str) -> bool:
    """``_name`` is private to its module; ``__version__`` and other dunder names are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the mlmp_ros module imported (for ``from m import n``: m, or m.n when that is a module)
    names: tuple[str, ...]  # the names taken from ``target`` (``from m import a, b``); () for ``import m``
    when: str  # "top" (runs at import), "late" (inside a function) or "typing" (under TYPE_CHECKING)
    where: str  # path:line


def by_place(messages) -> list[str]:
    """Messages that start with ``path:line:`` in file order (line 57 before line 122), duplicates once."""

    def key(message: str) -> tuple[str, int, str]:
        path, line, rest = (message.strip().split(":", 2) + ["", ""])[:3]
        return path, int(line) if line.isdigit() else 0, rest

    return sorted(set(messages), key=key)


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    # A class body runs at import time; a function body when the function is called.
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return True
    return False


class Package:
    """The modules of the package ``mlmp_ros`` under ``root``, parsed (never imported)."""

    def __init__(self, root: Path):
        self.root = root
        self.modules = {self._module_name(p): p for p in sorted((root / "mlmp_ros").rglob("*.py"))}
        self._trees: dict[str, ast.Module] = {}
        self._imports: dict[str, list[Import]] = {}
        self._external: dict[str, list[Import]] = {}  # imports of other packages (filled with _imports)

    def _module_name(self, path: Path) -> str:
        parts = path.relative_to(self.root).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def where(self, name: str, line: int) -> str:
        return f"{self.modules[name].relative_to(self.root)}:{line}"

    def tree(self, name: str) -> ast.Module:
        if name not in self._trees:
            self._trees[name] = ast.parse(self.modules[name].read_text(encoding="utf-8"))
        return self._trees[name]

    def import_list(self, name: str) -> list[Import]:
        """Every import of an mlmp_ros module by the module ``name``."""
        if name in self._imports:
            return self._imports[name]
        tree = self.tree(name)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = name if self.modules[name].name == "__init__.py" else name.rpartition(".")[0]
        found: list[Import] = []
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            typing = _under_type_checking(node, parents)
            when = "typing" if typing else "late" if _in_function(node, parents) else "top"
            if isinstance(node, ast.Import):
                pairs = [(alias.name, ()) for alias in node.names]
            else:
                if node.level:
                    parts = package.split(".")
                    origin = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                pairs = []
                for alias in node.names:
                    # "from . import entropy" imports the submodule entropy.
                    sub = f"{origin}.{alias.name}"
                    pairs.append((sub, ()) if sub in self.modules else (origin, (alias.name,)))
            for target, names in pairs:
                if target == "mlmp_ros" or target.startswith("mlmp_ros."):
                    found.append(Import(name, target, names, when, self.where(name, node.lineno)))
                elif not (isinstance(node, ast.ImportFrom) and node.level):
                    self._external.setdefault(name, []).append(Import(name, target, names, when, self.where(name, node.lineno)))
        self._imports[name] = found
        return found

    def layer_violations(self, rules: dict[str, tuple[str, ...]]) -> list[str]:
        """Imports (of mlmp_ros modules or third-party packages) that the rule of the importing module's
        most specific layer forbids."""
        wrong = []
        for name in self.modules:
            layers = [layer for layer in rules if name == layer or name.startswith(layer + ".")]
            if not layers:
                continue
            forbidden = rules[max(layers, key=len)]
            for i in self.import_list(name) + self._external.get(name, []):
                if any(i.target == bad or i.target.startswith(bad + ".") for bad in forbidden):
                    wrong.append(f"{i.where}: {name} imports {i.target} ({i.when})")
        return by_place(wrong)

    def imports(self, name: str) -> tuple[set[str], set[str]]:
        """(imports run when the module is imported, all imports) of mlmp_ros modules by ``name``."""
        found = self.import_list(name)
        return {i.target for i in found if i.when == "top"}, {i.target for i in found}

    def cycles(self) -> list[str]:
        """One message per cycle: a strongly connected component of more than one module, with the
        imports between its modules."""
        graph = {
            name: {i.target for i in self.import_list(name) if i.target in self.modules and i.target != name}
            for name in self.modules
        }
        messages = []
        for component in strongly_connected(graph):
            if len(component) < 2:
                continue
            members = set(component)
            arrows = {
                f"    {i.source} -> {i.target} ({i.when}, {i.where})"
                for name in component
                for i in self.import_list(name)
                if i.target in members and i.target != name
            }
            messages.append(f"import cycle between {', '.join(component)}:\n" + "\n".join(sorted(arrows)))
        return messages

    def missing_modules(self) -> list[str]:
        """Imports of mlmp_ros modules that do not exist: a late import of a renamed or moved module
        fails only when its function runs."""
        return by_place(
            f"{i.where}: {i.source} imports {i.target}, which is not a module of mlmp_ros ({i.when})"
            for name in self.modules
            for i in self.import_list(name)
            if i.target not in self.modules
        )

    def _module_aliases(self, name: str) -> dict[str, str]:
        """Names in module ``name`` bound to other mlmp_ros modules (``import mlmp_ros.x as m``,
        ``from . import x``, ``from mlmp_ros.ros import node as n``) -> that module."""
        aliases: dict[str, str] = {}
        for node in ast.walk(self.tree(name)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in self.modules:
                        aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                line = self.where(name, node.lineno)
                modules = [i.target for i in self.import_list(name) if i.where == line and not i.names]
                for alias in node.names:
                    module = next((m for m in modules if m.rpartition(".")[2] == alias.name), None)
                    if module in self.modules:
                        aliases[alias.asname or alias.name] = module
        return aliases

    def private_crossings(self) -> list[str]:
        """``from other import _name`` and ``other._name`` (``other`` a module) between mlmp_ros modules."""
        wrong = []
        for name in self.modules:
            for i in self.import_list(name):
                for taken in i.names:
                    if is_private(taken) and i.target != name:
                        wrong.append(f"{i.where}: {name} imports the private name {taken} from {i.target}")
            aliases = self._module_aliases(name)
            for node in ast.walk(self.tree(name)):
                if not isinstance(node, ast.Attribute) or not is_private(node.attr):
                    continue
                value = ast.unparse(node.value)
                module = aliases.get(value, value if value in self.modules else None)
                if module is not None and module != name:
                    wrong.append(
                        f"{self.where(name, node.lineno)}: {name} uses the private name {node.attr} of {module}"
                    )
        return wrong

    def oversized(self) -> list[str]:
        """Modules over :data:`MAX_MODULE_LINES` lines and functions over :data:`MAX_FUNCTION_LINES`."""
        found = []
        for name, path in self.modules.items():
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_MODULE_LINES:
                found.append(f"{self.where(name, 1)}: {name} has {lines} lines (at most {MAX_MODULE_LINES})")
            for node in ast.walk(self.tree(name)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        found.append(f"{self.where(name, node.lineno)}: {node.name} has {length} lines "
                                     f"(at most {MAX_FUNCTION_LINES})")
        return by_place(found)

    def member_reaches(self, allowed: dict | None = None) -> list[str]:
        """Private members of other objects: ``x._name`` where ``x`` is not ``self`` or ``cls``, and
        ``self._name`` / ``cls._name`` where nothing in the module defines ``_name`` (a base class in
        another module does).  ``allowed``: (module, name) pairs used on purpose."""
        allowed = allowed or {}
        found = []
        for name in self.modules:
            tree = self.tree(name)
            own = defined_names(tree)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Attribute) or not is_private(node.attr) or (name, node.attr) in allowed:
                    continue
                holder = node.value.id if isinstance(node.value, ast.Name) else None
                if holder in ("self", "cls"):
                    if node.attr not in own:
                        found.append(f"{self.where(name, node.lineno)}: {name} uses {holder}.{node.attr}, "
                                     "which this module does not define (a base class elsewhere does)")
                elif (value := ast.unparse(node.value)) not in self.modules and value not in self._module_aliases(name):
                    found.append(f"{self.where(name, node.lineno)}: {name} uses the private member "
                                 f"{node.attr} of {ast.unparse(node.value)}")
        return by_place(found)


def defined_names(tree: ast.Module) -> set[str]:
    """Every name a module defines anywhere: functions, classes, assigned names and attributes
    (``self._x = ...``) and ``__slots__`` entries."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
            names.update(c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return names


def misplaced_test_folders(root: Path) -> list[str]:
    """Folders of ``root/test`` holding tests (``test_*.py``) with no package folder of the same path
    under ``root/mlmp_ros``: test/bench/data/ must match mlmp_ros/bench/data/."""
    tests, package = root / "test", root / "mlmp_ros"
    folders = sorted({path.parent for path in tests.rglob("test_*.py")})
    return [f"{folder.relative_to(root)}/: no mlmp_ros/{folder.relative_to(tests)}/ to mirror"
            for folder in folders if folder != tests and not (package / folder.relative_to(tests)).is_dir()]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


MLMP = Package(REPO)
MODULES = MLMP.modules
imports = MLMP.imports
import_list = MLMP.import_list


def test_the_graph_is_parsed():
    # The parser sees the imports it must see (this test can fail: it is not vacuous).
    assert "mlmp_ros.core.config" in imports("mlmp_ros.core.methods.base")[0]
    # The managed node needs lifecycle_msgs: the entry point imports it late (inside a function).
    top, every = imports("mlmp_ros.ros.main")
    assert "mlmp_ros.ros.lifecycle" in every and "mlmp_ros.ros.lifecycle" not in top
    (late,) = [i for i in import_list("mlmp_ros.ros.main") if i.target == "mlmp_ros.ros.lifecycle"]
    assert (late.when, late.names) == ("late", ("ManagedSegmentNode",))
    # config checks method names against catalog.py, never the methods (which import config).
    assert "mlmp_ros.catalog" in imports("mlmp_ros.core.config")[0]
    assert not any(t.startswith("mlmp_ros.core.methods") for t in imports("mlmp_ros.core.config")[1])
    assert "mlmp_ros.core.methods.entropy" in imports("mlmp_ros.core.methods")[0]
    # The registry names the method class for the type checker only.
    typing = [i for i in import_list("mlmp_ros.core.methods.registry") if i.when == "typing"]
    assert [(i.target, i.names) for i in typing] == [("mlmp_ros.core.methods.base", ("Method",))]


def test_the_checks_find_what_they_look_for(tmp_path):
    # A package of four modules: b and c import each other only through a TYPE_CHECKING and a late
    # import; d leads into the rest but nothing leads back; private names cross three ways.
    files = {
        "__init__.py": '__version__ = "0"\n',
        "a.py": "from . import c as see\nfrom .b import _hidden, public\n\n\ndef f():\n    return see._inner + see.fine\n",
        "b.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from .c import Thing\n_hidden = public = 1\n",
        "c.py": "from mlmp_ros import __version__\n\n\ndef g():\n    import mlmp_ros.b\n\n    return mlmp_ros.b._hidden\n",
        "d.py": "from .a import f\n\n\ndef h():\n    from .gone import f\n",
        "e.py": "import rclpy.node\n\nfrom . import c\n",
    }
    (tmp_path / "mlmp_ros").mkdir()
    for file, text in files.items():
        (tmp_path / "mlmp_ros" / file).write_text(text)
    package = Package(tmp_path)
    (cycle,) = package.cycles()
    assert cycle.startswith("import cycle between mlmp_ros.b, mlmp_ros.c:"), cycle
    assert "mlmp_ros.b -> mlmp_ros.c (typing, mlmp_ros/b.py:4)" in cycle
    assert "mlmp_ros.c -> mlmp_ros.b (late, mlmp_ros/c.py:5)" in cycle
    assert sorted(package.private_crossings()) == [
        "mlmp_ros/a.py:2: mlmp_ros.a imports the private name _hidden from mlmp_ros.b",
        "mlmp_ros/a.py:6: mlmp_ros.a uses the private name _inner of mlmp_ros.c",
        "mlmp_ros/c.py:7: mlmp_ros.c uses the private name _hidden of mlmp_ros.b",
    ]
    assert package.missing_modules() == [
        "mlmp_ros/d.py:5: mlmp_ros.d imports mlmp_ros.gone, which is not a module of mlmp_ros (late)"
    ]
    assert sorted(strongly_connected({"a": {"b"}, "b": {"a", "c"}, "c": {"c"}})) == [["a", "b"], ["c"]]
    assert package.oversized() == [] and package.member_reaches() == []
    # Layers: the most specific rule applies (a may import c, the rest of the package may not).
    assert package.layer_violations({"mlmp_ros": ("mlmp_ros.c", "rclpy"), "mlmp_ros.a": ()}) == [
        "mlmp_ros/b.py:4: mlmp_ros.b imports mlmp_ros.c (typing)",
        "mlmp_ros/e.py:1: mlmp_ros.e imports rclpy.node (top)",
        "mlmp_ros/e.py:3: mlmp_ros.e imports mlmp_ros.c (top)",
    ]
    assert is_private("_stamp") and not is_private("__version__") and not is_private("stamp")


def test_the_limits_and_member_checks_find_what_they_look_for(tmp_path):
    # One module of 401 lines, one function of 51 (and one of 50, allowed), private members reached
    # four ways; every other use of an underscore below is allowed.
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    files = {
        "__init__.py": "",
        "base.py": "class Base:\n    def __init__(self):\n        self._inner = 1\n",
        "long.py": "x = 1\n" * (MAX_MODULE_LINES + 1),
        "functions.py": f"def fits():\n{body}\n\n\ndef too_long():\n{body}\n    return 0\n",
        "reach.py": (
            "import os\n\nfrom .base import Base\n\n\nclass Child(Base):\n    _kind = 'child'\n\n"
            "    def __init__(self, other):\n        super().__init__()\n        self._own = other._inner\n\n"
            "    def inherited(self):\n        return self._inner + self._own + len(self._kind) + self.__class__.__name__\n\n"
            "    def upward(self):\n        return super()._inner\n\n\ndef leave():\n    os._exit(0)\n"
        ),
    }
    (tmp_path / "mlmp_ros").mkdir()
    for file, text in files.items():
        (tmp_path / "mlmp_ros" / file).write_text(text)
    package = Package(tmp_path)
    assert package.oversized() == [
        "mlmp_ros/functions.py:53: too_long has 51 lines (at most 50)",
        "mlmp_ros/long.py:1: mlmp_ros.long has 401 lines (at most 400)",
    ]
    assert package.member_reaches() == [
        "mlmp_ros/reach.py:11: mlmp_ros.reach uses the private member _inner of other",
        "mlmp_ros/reach.py:14: mlmp_ros.reach uses self._inner, which this module does not define (a base class elsewhere does)",
        "mlmp_ros/reach.py:17: mlmp_ros.reach uses the private member _inner of super()",
        "mlmp_ros/reach.py:21: mlmp_ros.reach uses the private member _exit of os",
    ]
    assert package.member_reaches({("mlmp_ros.reach", "_exit"): "why"})[-1].startswith("mlmp_ros/reach.py:17:")


def test_the_test_folders_mirror_the_package(tmp_path):
    for folder in ("mlmp_ros/bench/data", "test/bench/data", "test/bench/stray", "test/helpers"):
        (tmp_path / folder).mkdir(parents=True)
    for file in ("test/test_root.py", "test/bench/data/test_bags.py", "test/bench/stray/test_x.py", "test/helpers/util.py"):
        (tmp_path / file).write_text("")
    assert misplaced_test_folders(tmp_path) == ["test/bench/stray/: no mlmp_ros/bench/stray/ to mirror"]
    wrong = misplaced_test_folders(REPO)
    assert not wrong, "a test lives in the folder of the package module it tests:\n" + "\n".join(wrong)


def test_no_module_over_400_lines_and_no_function_over_50():
    wrong = MLMP.oversized()
    assert not wrong, "split these by role (a module) or by step (a function):\n" + "\n".join(wrong)


def test_no_private_member_of_another_object_or_module_is_used():
    wrong = MLMP.member_reaches(ALLOWED_PRIVATE)
    assert not wrong, (
        "private members (a leading underscore) reached from outside their class's module; give the owner a "
        "public method or attribute for what is needed (third-party internals with no public way: "
        "ALLOWED_PRIVATE, with the reason):\n" + "\n".join(wrong)
    )
    unused = [key for key in ALLOWED_PRIVATE if key[0] not in MODULES or
              f"{key[1]}" not in MODULES[key[0]].read_text(encoding="utf-8")]  # fmt: skip
    assert not unused, f"ALLOWED_PRIVATE entries no module needs any more: {unused}"


def test_every_import_names_a_module():
    missing = MLMP.missing_modules()
    assert not missing, "imports of modules that do not exist (renamed or moved?):\n" + "\n".join(missing)


def test_no_import_from_a_higher_layer():
    wrong = MLMP.layer_violations(FORBIDDEN)
    assert not wrong, (
        "imports from a higher layer (see FORBIDDEN in this test); move what both need down a layer, "
        "or have the higher layer pass it in:\n" + "\n".join(wrong)
    )


def test_no_import_cycle():
    cycles = MLMP.cycles()
    assert not cycles, (
        "import cycles (late and TYPE_CHECKING imports count too); move what the modules share into "
        "a module that both import and that imports neither:\n" + "\n".join(cycles)
    )


def test_no_private_name_crosses_a_module():
    wrong = MLMP.private_crossings()
    assert not wrong, (
        "private names (a leading underscore) used outside the module that defines them; make the name "
        "public (no underscore) in the module that owns it, or move it to the module that uses it:\n"
        + "\n".join(by_place(wrong))
    )


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter on this checkout (what it imports is not yet imported); it must succeed."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out


def test_bench_help_does_not_load_torch_or_open_clip():
    code = (
        "import json, sys\n"
        "from mlmp_ros.bench.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps({m: m in sys.modules for m in ('torch', 'open_clip', 'rclpy')}), file=sys.stderr)\n"
    )
    out = run_python(code)
    assert "usage: mlmp-bench" in out.stdout
    imported = json.loads(out.stderr.strip().splitlines()[-1])
    assert imported == {"torch": False, "open_clip": False, "rclpy": False}, imported


def test_core_config_and_the_bench_files_import_without_torch():
    """``mlmp_ros.core`` exports lazily (PEP 562): its config and schema, and the bench modules that only
    read and write files (suite files, the store, reports, the command line), load no torch."""
    code = (
        "import json, sys\n"
        "import mlmp_ros.core, mlmp_ros.core.config, mlmp_ros.core.schema\n"
        "import mlmp_ros.bench.suite.file, mlmp_ros.bench.suite.store, mlmp_ros.bench.report.files\n"
        "import mlmp_ros.bench.cli.main, mlmp_ros.bench.data.registry\n"
        "before = 'torch' in sys.modules\n"
        "from mlmp_ros.core import Segmenter\n"  # a lazy export still works, and loads torch
        "print(json.dumps([before, 'torch' in sys.modules, Segmenter.__name__]))\n"
    )
    out = run_python(code)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, True, "Segmenter"]
