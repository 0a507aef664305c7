"""MkDocs hooks of the documentation site (mkdocs.yml ``hooks:``).

- The node's parameter tables are generated at build time from the settings' declarations
  (``mlmp_ros.ros.settings.declared_settings``), so the pages cannot drift from the code: a page
  writes ``<!-- parameters: GROUP -->`` and the hook puts the table of that group there.  Every
  declared parameter (``dev.*`` aside: tests only) must land in exactly one table of the page that
  has them, or the build fails.
- The world model's card (``mlmp_ros/world/MODEL_CARD.md``, shipped with the weights) is rendered
  as the page ``world/model-card.md`` from that one file.

Imports no ROS and no torch (the settings' modules import neither).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

_CHECKOUT = Path(__file__).resolve().parents[2]
if (_CHECKOUT / "mlmp_ros").is_dir() and str(_CHECKOUT) not in sys.path:
    sys.path.insert(0, str(_CHECKOUT))  # a fresh clone is installed with pip -e; a bare checkout is not

import mlmp_ros  # noqa: E402  (light: imports no ROS and no torch)

PACKAGE = Path(mlmp_ros.__file__).resolve().parent
MARKER = re.compile(r"<!-- parameters: ([a-z_]+) -->")
CARD = PACKAGE / "world" / "MODEL_CARD.md"
CARD_PAGE = "world/model-card.md"
PAPER_FILE = PACKAGE.parent / "config" / "segment.yaml"

# The tables of the parameters page, in the page's order: a group name -> what belongs to it.
GROUPS = ("model", "adaptation", "safeguards", "baselines", "node", "input", "output", "diagnostics")
BASELINES = ("adaptation.tpt.", "adaptation.clipartt.", "adaptation.watt.")
NODE_TOP = ("cameras", "autostart")


def group_of(name: str) -> str | None:
    """The table a parameter goes in (None: dev.*, for tests only)."""
    if name.startswith("dev."):
        return None
    if name.startswith("adaptation.safeguards."):
        return "safeguards"
    if name.startswith(BASELINES):
        return "baselines"
    head = name.split(".")[0]
    if head in ("adaptation", "input", "output", "diagnostics"):
        return head
    return "node" if name in NODE_TOP else "model"


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def file_values(path: Path) -> dict[str, Any]:
    """A node parameter file's values by dotted name (``/**: ros__parameters:`` unwrapped)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    (node,) = data.values()
    return _flatten(node["ros__parameters"])


def _code(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("...").strip()
    if len(text) > 60:
        text = text[:57] + "..."
    return f"`{text}`" if text else '`""`'


def _meaning(s: Any) -> str:
    text = s.meta.help.replace("|", "\\|")
    if s.meta.choices is not None:
        text += "; one of " + ", ".join(f"`{c}`" for c in s.meta.choices)
    elif s.meta.range is not None:
        text += f"; {s.meta.range.text()}"
    return text


def _paper_column(name: str, default: Any, paper: dict[str, Any]) -> str:
    """``config/segment.yaml``'s value where it is not the node's default."""
    return f"paper: {_code(paper[name])}" if name in paper and paper[name] != default else ""


def parameter_rows() -> dict[str, list[str]]:
    """Every declared node parameter as a Markdown table row, by group (GROUPS)."""
    from mlmp_ros.ros.settings import declared_settings, node_default

    paper = file_values(PAPER_FILE)
    rows: dict[str, list[str]] = {g: [] for g in GROUPS}
    for s in declared_settings():
        group = group_of(s.name)
        if group is None:
            continue
        default = node_default(s)
        runtime = "yes" if s.meta.runtime else ""
        files = _paper_column(s.name, default, paper)
        rows[group].append(f"| `{s.name}` | {_code(default)} | {files} | {runtime} | {_meaning(s)} |")
    return rows


HEAD = (
    "| parameter | default (the robot settings) | the paper's file, where it differs | run time | what it does |\n"
    "|---|---|---|---|---|\n"
)


def fill_parameter_tables(markdown: str) -> str:
    """The page with every ``<!-- parameters: GROUP -->`` marker replaced by that group's table."""
    found = MARKER.findall(markdown)
    if not found:
        return markdown
    unknown = sorted(set(found) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown parameter group(s) {unknown}: the groups are {', '.join(GROUPS)}")
    missing = [g for g in GROUPS if g not in found]
    if missing or len(found) != len(set(found)):
        raise ValueError(f"every parameter group once on the page: missing {missing}, given {found}")
    rows = parameter_rows()
    return MARKER.sub(lambda m: HEAD + "\n".join(rows[m.group(1)]) + "\n", markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    from mkdocs.exceptions import PluginError

    try:
        return fill_parameter_tables(markdown)
    except ValueError as exc:
        raise PluginError(f"{page.file.src_uri}: {exc}") from exc


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, CARD_PAGE, content=CARD.read_text(encoding="utf-8")))
    return files
