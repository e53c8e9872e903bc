"""`raygan ...` run in the test's own process: the same `raygan.cli.main` that `python -m raygan`
calls (and a study script's entry point), without paying a new interpreter and a torch import
(seconds each) for commands that end without training or that read a study directory (report,
export, best, dry runs, refusals). Drivers that are killed or interrupted stay subprocesses,
and test_cli_data.py checks the `python -m raygan` front door itself."""

from __future__ import annotations

import contextlib
import io
import subprocess


def _captured(argv: list[str], run) -> subprocess.CompletedProcess:
    """``run()``'s exit code (its return value, or SystemExit's) and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run() or 0
        except SystemExit as exited:  # argparse's usage errors, a study script's sys.exit
            code = exited.code if isinstance(exited.code, int) else (0 if exited.code is None else 2)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def raygan(*args: str) -> subprocess.CompletedProcess:
    """Run ``raygan ARGS`` in-process; the result reads like ``subprocess.run(..., text=True)``."""
    from raygan.cli.main import main

    return _captured(["raygan", *args], lambda: main(list(args)))


def study_script(study, *args: str) -> subprocess.CompletedProcess:
    """Run ``python studies/<study>.py ARGS`` through its entry point (raygan.cli.study.main), in-process."""
    from raygan.cli.study import main

    return _captured([f"studies/{study.name}.py", *args], lambda: main(study, list(args)))
