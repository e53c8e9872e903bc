"""The study's status line: counts, epochs, ETA; redrawn on a terminal, rate-limited in a log."""

from __future__ import annotations

import io

from raygan.tune.progress import StatusLine, duration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_counts_trials_and_shows_running_epochs_and_an_eta_once_trials_ended():
    clock = Clock()
    line = StatusLine(6, io.StringIO(), clock=clock)
    assert line.text(0, 0, []) == "study: 0/6 finished, 0 running, 6 waiting, 0 failed"  # no ETA yet
    clock.now = 100.0
    line.ended_here = 2  # two trials ended in 100 s: 50 s each, 3 left (one failed)
    assert line.text(2, 1, [(3, 15)]) == "study: 2/6 finished, 1 running (3/15 epochs), 2 waiting, 1 failed; ETA 2m30s"
    many = line.text(0, 0, [(1, 2)] * 5)
    assert "5 running (1/2, 1/2, 1/2, 1/2, … epochs), 1 waiting" in many


def test_in_a_log_a_line_is_printed_on_change_at_most_every_interval():
    clock, log = Clock(), io.StringIO()
    line = StatusLine(2, log, interval=30, clock=clock)
    line.update("a", force=True)
    clock.now = 10
    line.update("b")  # changed, but too soon
    line.update("b")
    clock.now = 31
    line.update("c")  # changed and 30 s on
    clock.now = 70
    line.update("c")  # unchanged: nothing
    line.print("[1/2] trial finished")
    assert log.getvalue().splitlines() == ["a", "c", "[1/2] trial finished"]


def test_on_a_terminal_the_line_is_redrawn_in_place_and_trial_lines_go_above_it():
    clock, tty = Clock(), Terminal()
    line = StatusLine(2, tty, clock=clock)
    line.update("study: 0/2", force=True)
    clock.now = 1
    line.update("study: 1/2")
    line.print("[1/2] k finished")
    line.close()
    assert tty.getvalue() == ("\rstudy: 0/2\x1b[K" "\rstudy: 1/2\x1b[K"
                              "\r\x1b[K[1/2] k finished\nstudy: 1/2" "\r\x1b[K")
    assert "\n" not in tty.getvalue().replace("[1/2] k finished\n", "")  # no line per update


def test_durations_read_easily():
    assert [duration(s) for s in (5, 75, 3725)] == ["5s", "1m15s", "1h02m"]
