"""The error boundary of raygan's front doors (the `raygan` CLI and the study scripts).

What reaches the person at the keyboard is one line:

- an expected failure (a RayganError, a file system refusal such as a full disk or a read-only
  directory): what is wrong with which input and what to do, exit status 2;
- Ctrl-C or SIGTERM: what was kept and how to continue, exit status 130 or 143;
- anything else (a bug): where the full traceback was written, exit status 70 (EX_SOFTWARE), never
  a screen of frames.

Argument parsing errors are one line too (`OneLineParser`), exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from raygan.core.errors import RayganError, first_line
from raygan.core.paths import free_space
from raygan.core.signals import sigterm_as_interrupt, terminated

EXIT_USAGE = 2
EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE: neither success (0) nor Python's own uncaught error (1)
EXIT_INTERRUPTED = 128 + signal.SIGINT  # what a shell reports for a process ended by that signal
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # as if killed by SIGPIPE, what a shell expects of `cmd | head`
CRASH_LOG = "raygan-error.log"


class OneLineParser(argparse.ArgumentParser):
    """argparse's usage errors as one line naming the command, instead of the whole usage text
    (`raygan train`'s runs to a screen: every config field is a flag)."""

    def error(self, message: str):
        print(f"raygan: error in {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def finite_float(text: str) -> float:
    """argparse type for a number flag: float() reads 'nan' and 'inf', which no count or share means."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


# --------------------------------------------------------------------------------------------
# Expected file system failures and unexpected exceptions


def os_error_line(exc: OSError) -> str | None:
    """One line for a file system refusal the user can act on, or None for other OSErrors."""
    where = exc.filename or ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        if not where:
            return "no space left on a device raygan was writing to; free some space"
        return f"{where}: no space left on the device ({free_space(Path(where))}); free some space"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where or 'a file'}: {exc.strerror} (check that it is writable, or choose another place)"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG) and where:
        return f"{where}: {exc.strerror}"
    return None


def crash_log(exc: BaseException, directory: Path | None) -> Path:
    """Write the traceback of ``exc`` to ``directory``/raygan-error.log (appended), or a temp file when
    there is no such directory or it cannot be written; return the file."""
    text = (f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} raygan {' '.join(sys.argv[1:])}\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    if directory is not None and Path(directory).is_dir():
        path = Path(directory) / CRASH_LOG
        try:
            with open(path, "a") as f:
                f.write(text)
            return path
        except OSError:
            pass
    fd, name = tempfile.mkstemp(prefix="raygan-error-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(name)


def guarded(run: Callable[[], int], prefix: str, interrupted: Callable[[], str],
            log_dir: Callable[[], Path | None]) -> int:
    """Run a front door's command; every way it can end is one line and an exit status.

    ``prefix`` starts each line ("raygan: error" or "raygan: error in COMMAND"); ``interrupted()``
    is the line for Ctrl-C and SIGTERM; ``log_dir()`` is where a traceback goes (the run's or the
    study's directory), asked only when one happens."""
    with sigterm_as_interrupt():
        try:
            return run()
        except RayganError as exc:
            print(f"{prefix}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print(interrupted(), file=sys.stderr)
            return EXIT_TERMINATED if terminated() else EXIT_INTERRUPTED
        except BrokenPipeError:
            # the reader went away (`raygan report DIR | head`): not an error, and nothing more to say
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # the interpreter's own flush at exit must not fail
            return EXIT_BROKEN_PIPE
        except OSError as exc:
            line = os_error_line(exc)
            if line is None:
                return _internal(exc, prefix, log_dir)
            print(f"{prefix}: {line}", file=sys.stderr)
            return EXIT_USAGE
        except Exception as exc:  # noqa: BLE001  (the boundary: a bug becomes one line and a log)
            return _internal(exc, prefix, log_dir)


def _internal(exc: BaseException, prefix: str, log_dir: Callable[[], Path | None]) -> int:
    try:
        directory = log_dir()
    except Exception:  # noqa: BLE001  (finding the directory must not hide the error)
        directory = None
    path = crash_log(exc, directory)
    print(f"{prefix}: internal error ({type(exc).__name__}: {first_line(exc)}); the full traceback is in {path}. "
          f"Please report it with that file", file=sys.stderr)
    return EXIT_INTERNAL
