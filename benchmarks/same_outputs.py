"""Does a change of code shape change what the benchmark writes?  Runs the same bench commands on two
versions of the code and compares every file they write, byte for byte.

The commands (CPU, fp32, the bundled world model, a few seconds each): ``make-bags world`` with two
corruptions and two world streams, ``suite --list`` and a tiny ``suite`` (world scenes, original and
fog, noadapt / tent / mlmp, 2 steps, 2 seeds, 4 frames), ``run`` (noadapt and mlmp on one bag), both
``report`` commands, and ``settings``.  Each version runs in the same folder (paths written into
records are equal) and the outputs are moved aside.

Files that differ are compared again with the wall-clock fields masked, the fields that differ between
two runs of the same code: ``started``, ``finished``, ``wall_s`` and ``timing`` in the stores, the
per-frame timing columns of results.csv, the "written" date and the timing table of report.md.  PNG
plots, ``.npz`` examples, bags and command outputs must be byte-identical.

    python benchmarks/same_outputs.py --before 4f1014f            # HEAD's working tree against a commit
    python benchmarks/same_outputs.py --before 4f1014f --after HEAD~1 --runs 2

Prints JSON (``"same": true`` when nothing differs beyond the wall-clock fields) and exits 1 otherwise.
``--runs 2`` runs the ``--before`` code twice as well, to show that the masked fields are the only ones
that differ between two runs of one version.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = """name: tiny
core: {model: mlmp-world, weights: world, device: cpu, precision: fp32, attention: naclip,
       adaptation: {mode: episodic, steps: 2, lr: 0.001}}
methods: {noadapt: {}, tent: {}, mlmp: {}}
batch_size: 1
seeds: [0, 1]
limit: 4
examples: 2
bags: BAGS
out: OUT
scenarios:
  - dataset: world
    corruptions: [original, fog]
"""
WORLD = ["--set", "model=mlmp-world", "--set", "weights=world", "--set", "device=cpu", "--set", "precision=fp32"]
COMMANDS = {
    "make_bags.out": ["make-bags", "world", "-c", "original,fog", "--streams", "fog,night", "--count", "4",
                      "--size", "160x120", "--out", "bags", "--no-progress"],
    "suite_list.out": ["suite", "tiny.yaml", "--list"],
    "suite.out": ["suite", "tiny.yaml", "--no-progress"],
    "run.out": ["run", "bags/world/original", "-m", "noadapt,mlmp", "--seeds", "0", "--limit", "4",
                "--set", "adaptation.steps=2", *WORLD, "--examples", "1", "--out", "run_results", "--no-progress"],
    "report_suite.out": ["report", "suite_results"],
    "report_run.out": ["report", "run_results"],
    "settings.out": ["settings"],
}
WALL_KEYS = {"started", "finished", "wall_s", "timing"}
WALL_COLUMNS = re.compile(r"(_s_per_frame|model_fraction|^started$|^finished$|^wall_s$)")


def run_commands(source: Path, work: Path) -> None:
    """The bench commands on the code in ``source``, in the (empty) folder ``work``."""
    work.mkdir(parents=True)
    (work / "tiny.yaml").write_text(SUITE.replace("BAGS", str(work / "bags")).replace("OUT", str(work / "suite_results")))
    env = {**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    for output, args in COMMANDS.items():
        done = subprocess.run([sys.executable, "-m", "mlmp_ros.bench", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=1800)
        (work / output).write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise SystemExit(f"{source}: mlmp-bench {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")


def without_wall_clock(value):
    if isinstance(value, dict):
        return {k: without_wall_clock(v) for k, v in value.items() if k not in WALL_KEYS}
    if isinstance(value, list):
        return [without_wall_clock(v) for v in value]
    return value


def masked_report(text: str) -> str:
    out, timing = [], False
    for line in text.splitlines():
        line = re.sub(r"written \S+\.", "written <date>.", line)
        if line.startswith("| method | frames | model ms/frame"):
            timing = True
        elif not line.startswith("|"):
            timing = False
        elif timing and not line.startswith("|---"):
            cells = line.split("|")
            line = "|".join(cells[:3] + ["<time>"] * 4 + cells[7:])  # method, frames, restored kept
        out.append(line)
    return "\n".join(out)


def masked(path: Path, text: str) -> str:
    """``text`` without its wall-clock fields (the file kind decides which)."""
    if path.suffix == ".jsonl":
        return "\n".join(json.dumps(without_wall_clock(json.loads(line)), sort_keys=True)
                         for line in text.splitlines() if line.strip())  # fmt: skip
    if path.suffix == ".csv":
        rows = list(csv.reader(io.StringIO(text)))
        keep = [i for i, name in enumerate(rows[0]) if not WALL_COLUMNS.search(name)] if rows else []
        return "\n".join(",".join(row[i] for i in keep) for row in rows)
    if path.name == "report.md":
        return masked_report(text)
    return text


def compare(a: Path, b: Path) -> dict:
    """Every file under ``a`` and ``b``: byte-identical, identical apart from wall-clock fields, or not."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    result = {"identical": [], "same_apart_from_wall_clock": [], "different": [],
              "only_before": sorted(map(str, files_a - files_b)), "only_after": sorted(map(str, files_b - files_a))}
    for rel in sorted(files_a & files_b):
        x, y = (a / rel).read_bytes(), (b / rel).read_bytes()
        if x == y:
            result["identical"].append(str(rel))
        elif rel.suffix in (".jsonl", ".csv", ".md") and masked(rel, x.decode()) == masked(rel, y.decode()):
            result["same_apart_from_wall_clock"].append(str(rel))
        else:
            result["different"].append(str(rel))
    result["same"] = not (result["different"] or result["only_before"] or result["only_after"])
    return result


def checkout(rev: str, into: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(into), rev], check=True,
                   capture_output=True)
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision of the code before the change")
    parser.add_argument("--after", help="git revision after it (default: this working tree)")
    parser.add_argument("--runs", type=int, choices=(1, 2), default=1, help="runs of the --before code (default 1)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlmp-same-") as tmp:
        tmp = Path(tmp)
        trees = [checkout(args.before, tmp / "before_src")]
        try:
            if args.after is not None:
                trees.append(checkout(args.after, tmp / "after_src"))
            before, after = trees[0], trees[-1] if args.after is not None else REPO
            outputs = {}
            for label, source in [("before", before)] * args.runs + [("after", after)]:
                key = label if label not in outputs else "before_again"
                run_commands(source, tmp / "work")
                outputs[key] = shutil.move(tmp / "work", tmp / key)
        finally:
            for tree in trees:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
        report = {"before": args.before, "after": args.after or "working tree", **compare(outputs["before"], outputs["after"])}
        if "before_again" in outputs:
            again = compare(outputs["before"], outputs["before_again"])
            report["two_runs_of_before"] = {k: again[k] for k in ("same", "same_apart_from_wall_clock", "different")}
    print(json.dumps(report, indent=1))
    return 0 if report["same"] else 1


if __name__ == "__main__":
    sys.exit(main())
