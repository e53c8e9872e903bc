"""SIGTERM does what Ctrl-C does: a driver stopped by a scheduler, `kill` or `timeout` ends as an
interrupted one (nothing recorded as stopped, the resume hint), not with a native crash dump."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


_terminated = {"signal": False}


def terminated() -> bool:
    """Whether the interrupt being handled came from SIGTERM (exit 143) rather than Ctrl-C (130)."""
    return _terminated["signal"]


def _on_sigterm(signum, frame) -> None:
    _terminated["signal"] = True
    handler = signal.getsignal(signal.SIGINT)
    # Whoever handles Ctrl-C now (Tune's fit ends its trials gracefully and returns) handles this too.
    if callable(handler) and handler is not _on_sigterm:
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def handle_sigterm_as_interrupt() -> None:
    """Route SIGTERM to the Ctrl-C path. Called again after Ray starts: Ray's core worker installs
    its own handler, which prints a native stack and aborts (exit 134)."""
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, _on_sigterm)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    _terminated["signal"] = False
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:
        previous = None
    handle_sigterm_as_interrupt()
    try:
        yield
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGTERM, previous)
