"""Joining or starting Ray, for every driver (a study's, and `raygan train --workers`).

A host:port that nothing answers fails in seconds with the address in the message (ray.init would
retry for minutes); a local Ray that does not start is one line naming the likely cause, and what
did start is shut down; a local Ray gets the reaper, so that its processes do not outlive a killed
driver. Requests the cluster cannot place are refused before Tune or Ray Train would wait for ever.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys

from raygan.core.errors import ConfigError, RayganError, first_line

# Environment passed to trial and worker processes on a cluster that the driver did not start.
FORWARDED_ENV = ("RAYGAN_DATA", "RAYGAN_CACHE")


def start_ray(address: str | None, stops_with: str | None = "this study", log_to_driver: bool = True) -> None:
    """Join the Ray at ``address`` (or RAY_ADDRESS), or start a local one. ``stops_with``: what the
    local Ray's two lines on standard error say it ends with (None: say nothing)."""
    import ray

    check_reachable(address)  # also when this process holds a Ray already: a wrong address is still wrong
    if ray.is_initialized():
        return
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    target = ray_init_address(address)
    local = target == "local"
    if local and stops_with:
        print(f"raygan: starting a local Ray (it stops with {stops_with})", file=sys.stderr, flush=True)
    try:
        with quiet_ray_start(local):
            context = ray.init(
                address=target,
                runtime_env={"env_vars": env} if env else None,
                log_to_driver=log_to_driver,
                configure_logging=False,
            )
    except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
        raise RayganError(
            f"cannot join the Ray cluster at --address {address}: {first_line(exc)} (with token "
            f"authentication, set RAY_AUTH_MODE=token and put the cluster's token in ~/.ray/auth_token)"
        ) from None
    except Exception as exc:
        if not local:
            raise
        # Seen: "The current node timed out during startup" on a machine whose cores other jobs
        # held (or a driver started under `nice`, which Ray's GCS and raylet inherit).
        with contextlib.suppress(Exception):  # best effort: the start failed already
            ray.shutdown()  # what did start (the GCS, say) must not outlive this driver
        raise RayganError(
            f"the local Ray did not start: {first_line(exc)} (on a busy machine, retry once the load is "
            f"lower; do not run the study under `nice`, whose priority Ray's own processes inherit: set "
            f"RAY_worker_niceness for the trials instead; or join a running Ray with --address)"
        ) from None
    from raygan.core.signals import handle_sigterm_as_interrupt

    handle_sigterm_as_interrupt()  # ray.init installed one that exits mid-fit and aborts (exit 134)
    if local:
        from raygan.raytrain.reaper import start_reaper

        start_reaper()  # its agents would outlive a killed driver (raygan.raytrain.reaper says why)
        if stops_with:
            cpus = ray.cluster_resources().get("CPU", 0)
            dashboard = f", dashboard http://{context.dashboard_url}" if getattr(context, "dashboard_url", None) else ""
            print(f"raygan: local Ray up ({cpus:g} CPUs{dashboard})", file=sys.stderr, flush=True)


def ray_init_address(address: str | None) -> str | None:
    """What to pass ray.init: "local" (always a new Ray of this driver's own) where neither the
    address nor RAY_ADDRESS names a cluster. ray.init(None) would first join the cluster named in
    Ray's temp dir (`ray_current_cluster`, written by `ray start`, left behind by a head that ended
    without `ray stop`): another user's, or a dead one whose GCS it waits on for minutes."""
    if address == "local" or (address is None and not os.environ.get("RAY_ADDRESS")):
        return "local"
    return address


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail in seconds, with the address in the message, where ray.init would retry an unreachable
    host:port for minutes."""
    if address == "auto" and not os.environ.get("RAY_ADDRESS"):
        _check_recorded_cluster(timeout)
    if address in (None, "auto", "local"):
        return  # ray.init finds (or starts) a cluster itself and fails fast when 'auto' finds none
    scheme, _, hostport = address.rpartition("://")
    host, _, port = hostport.rpartition(":")
    if scheme not in ("", "ray") or not host or not port.isdigit():
        raise RayganError(
            f"--address {address}: expected 'auto', host:port (the head's GCS, port 6379 by default) or "
            f"ray://host:port; a dashboard http:// address is for `ray job submit`, not for --address"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayganError(
            f"cannot reach a Ray cluster at --address {address} ({exc.strerror or exc}); start one with "
            f"`ray start --head`, or pass the head node's address"
        ) from None


def _check_recorded_cluster(timeout: float) -> None:
    """--address auto joins the cluster that `ray start` last recorded in Ray's temp dir; a head
    that ended without `ray stop` leaves that record naming a dead GCS, where ray.init would wait
    for minutes."""
    from pathlib import Path

    from ray._common.utils import get_ray_address_file  # Ray's own path ($RAY_TMPDIR/ray/...)

    path = Path(get_ray_address_file(None))
    try:
        recorded = path.read_text().strip()
    except OSError:
        return  # no record: Ray looks for a running GCS itself
    host, _, port = recorded.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise RayganError(
            f"--address auto: {path} names the Ray cluster at {recorded}, which does not answer ({reason}); "
            f"a head stopped without `ray stop` leaves this file: delete it if that cluster is gone, or pass "
            f"the head's address"
        ) from None


@contextlib.contextmanager
def quiet_ray_start(local: bool):
    """Ray's start-up warnings (token authentication on by default, ...) are for cluster operators,
    noise where a study or `raygan train` starts a private local Ray; errors still show."""
    import logging

    logger = logging.getLogger("ray")
    level = logger.level
    if local:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_resources(request: str, cpus: float = 0.0, gpus: float = 0.0, remedy: str = "") -> None:
    """Refuse a request (``request`` says whose, e.g. '--cpus-per-trial 4') for more CPUs or GPUs
    than the Ray cluster has: Tune and Ray Train would wait for them for ever."""
    import ray

    available = ray.cluster_resources()
    for need, kind in ((cpus, "CPU"), (gpus, "GPU")):
        have = available.get(kind, 0)
        if need > have:
            raise ConfigError(f"{request} needs {need:g} {kind}s; the Ray cluster has {have:g}"
                              + (f". {remedy}" if remedy else ""))
