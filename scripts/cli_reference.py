"""Write docs/reference/cli.md from raygan's argparse parsers.

The reference is rendered from the parsers' actions, not from `--help`'s wrapped text, so it is
the same on every Python version and terminal width. tests/test_docs.py fails when the committed
file differs from what this script writes.

    python scripts/cli_reference.py            # rewrite docs/reference/cli.md
    python scripts/cli_reference.py --check    # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reference" / "cli.md"

HEADER = """# CLI reference

Every `raygan` command with its flags, generated from the argparse parsers by
`python scripts/cli_reference.py` (do not edit by hand). `raygan COMMAND --help` prints the same.
A study script, `python studies/NAME.py`, takes exactly the flags of
[`raygan study run`](#raygan-study-run), and `python studies/NAME.py --help` lists its profiles.
"""


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, and <placeholders> outside code kept visible."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for i, p in enumerate(parts))


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`"
    names = list(action.option_strings)
    if isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
        return ", ".join(f"`{n}`" for n in names)
    metavar = action.metavar or action.dest.upper().lstrip("_")
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    if action.nargs in ("+", "*"):
        metavar = f"{metavar} [{metavar} ...]"
    return ", ".join(f"`{n} {metavar}`" for n in names)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = action.help or ""
    if "%" in text:
        params = dict(vars(action), prog=parser.prog)
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        text = text % params
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        listed = ", ".join(str(c) for c in action.choices)
        if listed not in text:
            text = f"{text} (one of: {listed})" if text else f"one of: {listed}"
    if action.required and action.option_strings:
        text = f"required; {text}"
    return _cell(text)


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _section(path: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## {path}", ""]
    description = parser.description or summary
    if description:
        lines += [" ".join(description.split()), ""]
    subs = list(_subcommands(parser))
    if subs:
        lines += ["| command | what it does |", "| --- | --- |"]
        lines += [f"| [`{path} {name}`](#{_anchor(f'{path} {name}')}) | {_cell(text)} |" for name, text, _ in subs]
        lines.append("")
    for group in parser._action_groups:
        actions = [a for a in group._group_actions
                   if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and a.help != argparse.SUPPRESS]
        if not actions:
            continue
        title = {"positional arguments": "Arguments", "options": "Options", "optional arguments": "Options"}.get(
            group.title or "", group.title or "Options")
        lines += [f"**{title}**" + (f": {' '.join(group.description.split())}" if group.description else ""), ""]
        lines += ["| argument | description |", "| --- | --- |"]
        lines += [f"| {_flag(a)} | {_help(parser, a)} |" for a in actions]
        lines.append("")
    if parser.epilog:
        lines += ["```text", parser.epilog.strip("\n"), "```", ""]
    for name, text, sub in subs:
        lines += _section(f"{path} {name}", text, sub)
    return lines


def _anchor(title: str) -> str:
    return title.lower().replace(" ", "-")


def _studies() -> list[str]:
    from raygan.study import load_studies

    studies = load_studies()
    lines = ["## Studies and their profiles", "",
             "What `raygan study list` prints: each study's `--profile` choices.", "",
             "| study | reproduces | profile | what it runs |", "| --- | --- | --- | --- |"]
    for name in studies:
        study = studies.get(name)
        for i, (profile, spec) in enumerate(study.profiles.items()):
            first = (f"`{name}`", _cell(study.reproduces)) if i == 0 else ("", "")
            lines.append(f"| {first[0]} | {first[1]} | `{profile}` | {_cell(spec.description)} |")
    return lines + [""]


def render() -> str:
    from raygan.cli.main import build_parser

    lines = _section("raygan", "", build_parser()) + _studies()
    return HEADER + "\n" + "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/reference/cli.md is stale; write nothing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/reference/cli.md is stale: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
