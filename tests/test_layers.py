"""The layers are packages, each importing only those below it (imports inside functions count
too): the import-linter contracts in pyproject.toml, checked on the source tree."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold(monkeypatch, capsys):
    cli = pytest.importorskip("importlinter.cli", reason="import-linter is in the test extra")
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    code = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 broken" in out, out


def test_the_top_level_holds_only_packages():
    top = sorted(p.name for p in (ROOT / "raygan").iterdir()
                 if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    assert [name for name in top if name.endswith(".py")] == ["__init__.py", "__main__.py"], top
