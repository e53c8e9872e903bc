"""What a person running a study sees between its first and last line: one status line.

``study: 2/6 finished, 1 running (3/15 epochs), 3 waiting, 0 failed; ETA 4m10s``

On a terminal the line is redrawn in place (at most every half second); in a log (a file, `ray job
logs`, CI) it is printed as a new line only when it changed and at most every
``$RAYGAN_PROGRESS_SECONDS`` (default 30) seconds, so a study of thousands of trials does not flood
it. Lines about single trials (one per ended trial) are printed above it.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

PROGRESS_ENV = "RAYGAN_PROGRESS_SECONDS"
LOG_INTERVAL_S = 30.0
TTY_INTERVAL_S = 0.5
SHOWN_RUNNING = 4  # epochs of this many running trials are listed, then "…"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class StatusLine:
    def __init__(self, total: int | None, stream: TextIO | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if interval is None:
            interval = TTY_INTERVAL_S if self.tty else float(os.environ.get(PROGRESS_ENV, LOG_INTERVAL_S))
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.ended_here = 0  # trials that ended under this driver: the ETA's rate
        self.drawn = ""  # TTY: the line on screen now
        self.last_text: str | None = None
        self.last_time = -math.inf

    def text(self, finished: int, failed: int, running: list[tuple[int, int]]) -> str:
        """``running``: (epochs done, epochs) of each running trial."""
        total = self.total if self.total is not None else finished + failed + len(running)
        waiting = max(0, total - finished - failed - len(running))
        active = ""
        if running:
            shown = ", ".join(f"{done}/{epochs}" for done, epochs in running[:SHOWN_RUNNING])
            active = f" ({shown}{', …' if len(running) > SHOWN_RUNNING else ''} epochs)"
        text = f"study: {finished}/{total} finished, {len(running)} running{active}, {waiting} waiting, {failed} failed"
        remaining = total - finished - failed
        if self.ended_here and remaining > 0:
            # Throughput of this driver so far (concurrency included), not of one trial.
            per_trial = (self.clock() - self.started) / self.ended_here
            text += f"; ETA {duration(per_trial * remaining)}"
        return text

    def update(self, text: str, force: bool = False) -> None:
        now = self.clock()
        if text == (self.drawn if self.tty else self.last_text):
            return
        if not force and now - self.last_time < self.interval:
            return
        self.last_time, self.last_text = now, text
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.drawn = text[:width]
            self.stream.write("\r" + self.drawn + "\x1b[K")
            self.stream.flush()
        else:
            print(text, file=self.stream, flush=True)

    def print(self, line: str) -> None:
        """A line of its own (a trial ended), above the status line."""
        if self.tty and self.drawn:
            self.stream.write("\r\x1b[K" + line + "\n" + self.drawn)
            self.stream.flush()
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = ""
