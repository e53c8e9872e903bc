"""Refresh the generated parts of results/README.md from the committed study folders.

results/README.md is the reproduction report. Its prose is written by hand; its tables are not:
each lies between marker comments and is rebuilt here from the folder it names, so that the
report cannot drift from the data.

- ``<!-- generated: status -->`` ... ``<!-- end generated: status -->``: one row per folder
  under results/ with a PROVENANCE.md (trials, wall time, training time, commits, machines),
  linking its report.md and PROVENANCE.md.
- ``<!-- generated: report FOLDER -->`` ... ``<!-- end generated: report FOLDER -->``: the tables
  of results/FOLDER/report.md, which is `raygan report`'s output on that folder
  (tests/test_committed_results.py checks that). A search keeps its five best trials and its
  parameter importances.

A folder without a report block gets one appended under its own heading, for the prose to be
written around it. ``--check`` exits 1 when the file is not what this script would write.

    python scripts/results_report.py            # rewrite results/README.md in place
    python scripts/results_report.py --check    # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
README = RESULTS / "README.md"
SEARCH_ROWS = 5

BLOCK = re.compile(r"(<!-- generated: (?P<name>[^>]*?) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S)


def folders(results: Path) -> list[Path]:
    return sorted(p for p in results.iterdir() if p.is_dir() and (p / "report.md").exists())


def _field(provenance: str, label: str) -> str:
    match = re.search(rf"^- {re.escape(label)}: (.*)$", provenance, re.M)
    return match.group(1).strip() if match else "—"


def status_table(results: Path) -> str:
    rows = ["| study folder | trials | wall time | when (UTC) | training per trial | commits | machine | files |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for folder in folders(results):
        provenance = (folder / "PROVENANCE.md").read_text() if (folder / "PROVENANCE.md").exists() else ""
        planned = re.search(r"(\d+) trials planned: (.*)$", provenance, re.M)
        trials = f"{planned.group(1)} planned: {planned.group(2)}" if planned else "—"
        wall, _, when = _field(provenance, "wall time").partition(", ")
        when = when.removesuffix(" UTC") or "—"
        commits = ", ".join(c[:7] for c in re.split(r",\s*", _field(provenance, "commits (of the drivers)")) if c != "—")
        name = folder.name
        rows.append(f"| `{name}` | {trials} | {wall} | {when} | {_field(provenance, 'training time per trial')} | "
                    f"{commits or '—'} | {_field(provenance, 'machines')} | "
                    f"[report]({name}/report.md), [provenance]({name}/PROVENANCE.md) |")
    return "\n".join(rows) + "\n"


def report_tables(folder: Path) -> str:
    text = (folder / "report.md").read_text()
    blocks = [b for b in text.strip("\n").split("\n\n") if b.strip()]
    if "optimisation history" in text:  # a search: its best trials and what mattered
        table = blocks[0].split("\n")
        caption = next(b for b in blocks if b.startswith("search "))
        importances = next((line for b in blocks for line in b.split("\n") if line.startswith("parameter importances")), "")
        kept = "\n".join(table[: 2 + SEARCH_ROWS])
        return f"{kept}\n\n{caption}; the {SEARCH_ROWS} best shown\n\n{importances}\n".replace("\n\n\n", "\n\n")
    return "\n\n".join(blocks) + "\n"


def render(current: str, results: Path = RESULTS) -> str:
    names = {folder.name: folder for folder in folders(results)}

    def body(match: re.Match) -> str:
        name = match.group("name")
        if name == "status":
            new = status_table(results)
        elif name.startswith("report ") and name[len("report "):] in names:
            new = report_tables(names[name[len("report "):]])
        else:
            raise SystemExit(f"results/README.md: a generated block names {name!r}, which is neither 'status' "
                             f"nor 'report FOLDER' of a folder under results/ with a report.md")
        return f"{match.group(1)}{new}{match.group(4)}"

    out = BLOCK.sub(body, current)
    present = {m.group("name") for m in BLOCK.finditer(out)}
    for name, folder in names.items():
        if f"report {name}" not in present:
            out = (out.rstrip("\n") + f"\n\n## {name}\n\n`raygan report results/{name}`"
                   f" ([report]({name}/report.md), [provenance]({name}/PROVENANCE.md)):\n\n"
                   f"<!-- generated: report {name} -->\n{report_tables(folder)}<!-- end generated: report {name} -->\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if results/README.md is stale; write nothing")
    args = parser.parse_args(argv)
    current = README.read_text()
    new = render(current)
    if args.check:
        if new != current:
            print("results/README.md is stale: run python scripts/results_report.py", file=sys.stderr)
            return 1
        return 0
    if new != current:
        README.write_text(new)
        print("results/README.md: refreshed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
