"""A local Ray that a driver started ends with the driver, even after ``kill -9``.

`ray.init()` without an address starts GCS, raylet, dashboard and the raylet's two agents as the
driver's descendants. GCS and raylet share the driver's fate, but after a SIGKILL of the driver the
raylet's `ray::DashboardAgent` and `ray::RuntimeEnvAgent` stay (measured here, Ray 2.60: 60-120 s):
each notices that the raylet is gone and, before exiting, reports it to the GCS, which died too,
in a call that blocks its main thread for up to 60 s (`publish_error_to_driver`, timeout 60); a
blocked main thread never runs Python's SIGTERM handler, so they also ignore SIGTERM (see
ray-project/ray#59162). On a busy or slow machine the wait can be longer still.

So a driver that starts its own Ray also starts this small watcher (``python -m raygan.raytrain.reaper
PID``, its own session, no Ray import): it notes the driver's descendants every two seconds while
the driver lives, and once the driver is gone, gives Ray a few seconds to stop by itself, then ends
whatever of those processes is left: SIGTERM, then SIGKILL. Processes are matched by PID and start
time, so a reused PID is never hit; a Ray the driver only joined (``--address``) is not its
descendant and is never touched. Linux only (it reads /proc); elsewhere nothing is started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 2.0
GRACE_S = 3.0  # for Ray's own shutdown after a normal exit or the fate-sharing of GCS and raylet
KILL_AFTER_S = 2.0
PROC = "/proc"


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent PID, start time in clock ticks, command name) of a live process, else None."""
    try:
        with open(f"{PROC}/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie is dead already
        return None
    return int(fields[1]), int(fields[19]), name


def descendants(root: int) -> dict[int, tuple[int, str]]:
    """Every live descendant of ``root``: PID -> (start time, command name)."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[int, str]] = {}
    for entry in os.listdir(PROC):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
                info[int(entry)] = (stat[1], stat[2])
    found, pending = {}, list(children.get(root, []))
    while pending:
        pid = pending.pop()
        if pid not in found and pid in info:
            found[pid] = info[pid]
            pending += children.get(pid, [])
    return found


def _alive(pid: int, start: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] == start


def watch(driver: int, me: int) -> list[int]:
    """Track ``driver``'s descendants until it dies, then end those left; return their PIDs."""
    stat = _stat(driver)
    if stat is None:
        return []
    driver_start, tracked = stat[1], {}
    while _alive(driver, driver_start):
        tracked.update({pid: start for pid, (start, _) in descendants(driver).items() if pid != me})
        time.sleep(POLL_S)
    time.sleep(GRACE_S)
    left = [pid for pid, start in tracked.items() if _alive(pid, start)]
    for sig, wait in ((signal.SIGTERM, KILL_AFTER_S), (signal.SIGKILL, 0.0)):
        for pid in left:
            if _alive(pid, tracked[pid]):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        time.sleep(wait)
    return left


def started_local_ray() -> bool:
    """Whether this process started a Ray instance (its raylet is our descendant), not joined one."""
    if not os.path.isdir(PROC):
        return False
    return any(name in ("raylet", "gcs_server") for _, name in descendants(os.getpid()).values())


def start_reaper() -> int | None:
    """Start the watcher for this driver if it started its own local Ray; return its PID."""
    if not started_local_ray():
        return None
    process = subprocess.Popen(
        [sys.executable, "-m", "raygan.raytrain.reaper", str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C or a kill of the driver's process group spares it
    )
    return process.pid


if __name__ == "__main__":
    watch(int(sys.argv[1]), os.getpid())
