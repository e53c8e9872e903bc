"""The documentation stays true to the code and the data: the site builds with --strict, the CLI
reference is what the parsers say, results/README.md's tables are what results/ holds, and the
README starts with its set-up commands and links only to files that exist."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_generated_from_the_parsers():
    committed = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert committed == _script("cli_reference").render(), (
        "docs/reference/cli.md is stale: run python scripts/cli_reference.py")


def test_cli_reference_lists_every_command_and_flag():
    from raygan.cli.main import build_parser

    text = (ROOT / "docs" / "reference" / "cli.md").read_text()
    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    for action in train._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert f"`{flag}" in text, flag
    for command in ("raygan data split", "raygan study run", "raygan study export", "raygan report"):
        assert f"## {command}\n" in text


def test_help_names_every_environment_variable_raygan_reads():
    from inprocess import raygan

    read = set()
    for path in [*(ROOT / "raygan").rglob("*.py"), *(ROOT / "studies").glob("*.py")]:
        text = path.read_text()
        read |= set(re.findall(r"\b(RAYGAN_[A-Z_]+)\b", text))
    read.add("RAY_worker_niceness")  # Ray's, which raygan passes on to the local Ray it starts
    out = raygan("--help").stdout
    assert read and all(name in out for name in read), sorted(n for n in read if n not in out)
    study = raygan("study", "run", "--help").stdout
    assert "RAYGAN_PROGRESS_SECONDS" in study and "RAY_worker_niceness" in study


def test_study_run_help_lists_the_named_study_profiles():
    from inprocess import raygan

    from raygan.study import load_studies

    result = raygan("study", "run", "bn_ablation", "--help")
    assert result.returncode == 0
    for name, profile in load_studies().get("bn_ablation").profiles.items():
        assert f"  {name}: {profile.description}" in result.stdout
    assert "examples:" in result.stdout and "raygan study run bn_ablation --profile smoke" in result.stdout
    unnamed = raygan("study", "run", "--help").stdout
    assert "studies: " in unnamed and "bn_ablation" in unnamed and "\nprofiles:\n" not in unnamed


def test_train_help_says_whose_default_applies():
    from inprocess import raygan

    out = raygan("train", "--help").stdout
    assert "(default: None)" not in out
    assert "default: the method's own" in out.replace("\n", " ").replace("  ", " ")
    assert "examples:" in out


def test_results_report_tables_come_from_results():
    readme = (ROOT / "results" / "README.md").read_text()
    module = _script("results_report")
    assert module.render(readme) == readme, "results/README.md is stale: run python scripts/results_report.py"
    # every committed study folder has its report section, and each links its report and provenance
    for folder in module.folders(ROOT / "results"):
        assert f"<!-- generated: report {folder.name} -->" in readme
        assert f"]({folder.name}/report.md)" in readme and f"]({folder.name}/PROVENANCE.md)" in readme


def test_results_report_refresh_finds_a_new_study_folder(tmp_path):
    """A study folder exported later gets its section without hand-editing the markers."""
    module = _script("results_report")
    results = tmp_path / "results"
    source = ROOT / "results" / "supervision-cpu"
    (results / "supervision-cpu").mkdir(parents=True)
    for name in ("report.md", "PROVENANCE.md"):
        (results / "supervision-cpu" / name).write_text((source / name).read_text())
    start = "# Report\n\n<!-- generated: status -->\n<!-- end generated: status -->\n"
    out = module.render(start, results)
    assert "| `supervision-cpu` | 20 planned: 20 finished, 0 stopped, 0 failed |" in out
    assert "<!-- generated: report supervision-cpu -->\n| dataset | gamma |" in out
    assert "| fashion_mnist | 0.05 | 95.2 |" in out
    assert module.render(out, results) == out  # refreshing again changes nothing


def test_results_report_rejects_a_block_without_a_folder(tmp_path):
    module = _script("results_report")
    (tmp_path / "results").mkdir()
    with pytest.raises(SystemExit, match="nope-cpu"):
        module.render("<!-- generated: report nope-cpu -->\n<!-- end generated: report nope-cpu -->\n",
                      tmp_path / "results")


def test_parquet_schema_page_names_every_column():
    """docs/reports.md documents every column the committed Parquet files have."""
    import pyarrow.parquet as pq

    page = (ROOT / "docs" / "reports.md").read_text()
    prefixes = ("factor.", "data.", "model.", "loss.", "train.", "loss_")
    for name in ("results.parquet", "curves.parquet"):
        for path in sorted((ROOT / "results").glob(f"*/{name}")):
            for column in pq.read_schema(path).names:
                if not column.startswith(prefixes):
                    assert f"`{column}`" in page, f"{path.relative_to(ROOT)}: column {column} is not in docs/reports.md"


def test_readme_is_short_and_starts_with_the_set_up_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the details belong in docs/"
    first_screen = "\n".join(lines[:30])
    assert "python studies/bn_ablation.py --profile smoke && raygan report ~/raygan-studies/bn_ablation" in first_screen
    assert 'pip install -e ".[test]" && python -m pytest' in first_screen
    assert "docs/index.md" in "\n".join(lines[:10])  # the documentation map, on the first screen


@pytest.mark.parametrize("page", ["README.md", "results/README.md", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))])
def test_relative_links_point_at_files_that_exist(page):
    """What the forge shows: every relative link of a page resolves to a file in the repository."""
    path = ROOT / page
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).resolve().exists(), f"{page} links {target}, which does not exist"


def test_pages_speak_of_no_issue_session_or_machine():
    pages = [ROOT / "README.md", ROOT / "results" / "README.md", *(ROOT / "docs").rglob("*.md")]
    # (the papers/00N labels that study files print are explained on docs/index.md)
    banned = re.compile(r"\bissues? \d+|\bsessions?\b|/work/|DESIGN\.md|RAY_NOTES|benchmarks/quality\.py")
    for page in pages:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            assert not banned.search(line), f"{page.relative_to(ROOT)}:{number}: {line}"


def test_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs-material is not installed (pip install -e '.[docs]')")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "results" / "index.html").exists()  # the reproduction report is in the site
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()
