"""The shape of ``mlmp_ros.ros``, read with ``ast`` (nothing imported): no file over 400 lines, no
function over 50, and no module reaching into another object's private members (``x._name`` where
``x`` is not ``self`` or ``cls``).  Each check is shown to catch a violation."""

from __future__ import annotations

import ast
from pathlib import Path

ROS = Path(__file__).resolve().parents[2] / "mlmp_ros" / "ros"
MAX_FUNCTION_LINES = 50
MAX_FILE_LINES = 400
# rclpy's own hook for the change_state service, which the managed node extends to log why a
# transition was refused (rclpy offers no public one): the one private name used, on purpose.
# os._exit is Python's documented way out when a thread cannot be stopped.
ALLOWED = {("lifecycle.py", "_LifecycleNodeMixin__on_change_state"),
           ("lifecycle.py", "_LifecycleNodeMixin__on_get_available_transitions"), ("cli.py", "_exit")}


def too_long(text: str) -> list[str]:
    found = [f"file: {len(text.splitlines())} lines"] if len(text.splitlines()) > MAX_FILE_LINES else []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES):
            found.append(f"{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    return found


def private_reaches(text: str) -> list[tuple[int, str]]:
    """``obj._name`` where ``obj`` is not self / cls (dunder names are public protocol)."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.append((node.lineno, name))
    return found


def test_no_file_over_400_lines_and_no_function_over_50_in_ros():
    problems = [f"{p.relative_to(ROS)}:{line}" for p in sorted(ROS.rglob("*.py")) for line in too_long(p.read_text())]
    assert not problems, "\n".join(problems)


def test_no_module_in_ros_reaches_into_another_objects_private_members():
    problems = [f"{p.relative_to(ROS)}:{line} .{name}" for p in sorted(ROS.rglob("*.py"))
                for line, name in private_reaches(p.read_text()) if (p.name, name) not in ALLOWED]
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_forbid():
    long_function = "def f():\n" + "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES)) + "\n"
    assert too_long(long_function) == [f"1 f: {MAX_FUNCTION_LINES + 1} lines"]
    assert too_long("x = 1\n" * (MAX_FILE_LINES + 1))[0].startswith("file:")
    assert private_reaches("node._work.put(1)\nself._ok = 1\nx.__class__\n") == [(1, "_work")]
