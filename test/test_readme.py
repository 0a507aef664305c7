"""The README: its first lines are the two commands for a fresh machine (.ci/run calls the test
one), it stays short, and what it names exists (links, paths, topics, services).  Its commands
are checked against the entry points with the documentation's (test/test_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MAX_LINES = 150


def test_readme_starts_with_the_two_commands_and_ci_calls_the_test_one():
    text = README.read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert text.index("```sh") < 20
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:.*docs-check", makefile, re.M)


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= MAX_LINES


def test_every_link_and_path_the_readme_names_exists():
    text = README.read_text()
    links = [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text) if "://" not in t]
    paths = re.findall(r"`((?:mlmp_ros|config|docs|launch|benchmarks|test)/[\w./-]*\w)`", text)
    assert len(links) >= 15 and "docs/quick-start.md" in links and paths
    missing = [p for p in links + paths if not (REPO / p).exists()]
    assert not missing, missing


def test_the_readme_links_into_every_part_of_the_docs():
    """Every top-level page and every section's first page (docs/<part>/index.md)."""
    linked = set(re.findall(r"\]\((docs/[\w./-]+\.md)\)", README.read_text()))
    docs = REPO / "docs"
    parts = {p.relative_to(REPO).as_posix() for p in [*docs.glob("*.md"), *docs.glob("*/index.md")]}
    assert parts - linked == {"docs/index.md"}


def readme_topics() -> set[str]:
    """The topic and service names of the README's table "What it publishes"."""
    text = README.read_text()
    table = text[text.index("## What it publishes") :].split("\n## ")[0]
    names = re.findall(r"^\| `([^`]+)`(?: or `([^`]+)`|, `([^`]+)`)?", table, re.M)
    return {n for row in names for n in row if n}


def node_entities(node) -> set[str]:
    """What a started node has: its topics (subscribed and published) and services, by full name."""
    topics = {p.topic_name for p in node.publishers} | {s.topic_name for s in node.subscriptions}
    return topics | {s.srv_name for s in node.services}


def test_the_topics_and_services_the_readme_lists_are_the_nodes():
    """A real node (in this process, the tiny model) has every name the README lists."""
    from test.ros.ros_helpers import in_process_node

    listed = readme_topics()
    assert {"segmentation/labels", "/diagnostics", "~/reset", "~/enable", "image", "image/compressed"} <= listed
    found: set[str] = set()
    for compressed in (False, True):
        with in_process_node("readme", {"input.compressed": compressed}) as running:
            node = running.node
            full = {name: node.resolve_service_name(name) if name.startswith("~") else node.resolve_topic_name(name)
                    for name in listed}  # fmt: skip
            # rclpy keeps a service's name as given (``~/reset``), a topic's resolved.
            found |= {name for name, resolved in full.items() if {name, resolved} & node_entities(node)}
    assert found == listed, sorted(listed - found)
