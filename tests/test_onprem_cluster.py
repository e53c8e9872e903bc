"""cluster-onprem.yaml launched for real: `ray up` of Ray's on-premise provider against an sshd on
loopback, the bn_ablation smoke study submitted with `ray job submit` through `ray dashboard`'s
tunnel, its results read back, then `ray down`, and nothing of that cluster left running.

The "servers" are this machine at two loopback addresses (head 127.0.0.1, worker 127.0.0.2), both
served by one sshd of the test's own: its own host key, port and authorised key, reached through
the config's `auth.ssh_proxy_command` (`nc`), so no file of the user running the tests
(~/.ssh/config, known_hosts, ~/.ray) is read or changed. `ray down` runs Ray's stop command, which stops
every Ray of the SSH user on the machine: the nodes therefore log in as a user created for this run
alone (removed after it), so every other Ray here is out of their reach; whatever happens, the
test ends that user's processes by UID. It needs root (to create the user and run sshd),
openssh-server, rsync and netcat-openbsd (.ci/run installs them); without them it is skipped with
the reason.

What the test copy of cluster-onprem.yaml changes, and only that (each replaced text must be there):
the "Change:" values (addresses, SSH user and key, the storage path, the token file), ports of its
own for every Ray service (other Rays on this machine hold the defaults), one CPU per node, no
Ray's stop command before the worker starts (one machine, one user: it would stop the head), and the node
environment. Instead of a venv that `pip install -e` fills with torch and Ray (minutes, and a
download), ~/raygan-env is a venv without packages whose site-packages adds this test's
environment, with the `ray` and `raygan` commands pip wrote here pointed at the node's python. The
PATH line, the commands that use it and everything else run as written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
SMOKE_KEYS = 6  # bn_ablation smoke: γ ∈ {0, .1} × AdvProp × Freeze (Freeze only at γ > 0)
EPOCHS = 2  # of the smoke profile's 15: what is tested is where trials run and what comes back
HEAD, WORKER = "127.0.0.1", "127.0.0.2"
SSHD = "/usr/sbin/sshd"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def missing_requirement() -> str | None:
    """Why this machine cannot run the launch, or None."""
    if sys.platform != "linux":
        return "needs Linux (the nodes are loopback addresses of this machine)"
    if os.geteuid() != 0:
        return ("needs root: the nodes log in as a user of their own, created here, so that `ray down`'s "
                "Ray's stop command cannot reach anyone else's Ray (run as root, as .ci/run does)")
    needs = {SSHD: "openssh-server", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
             "rsync": "rsync", "nc": "netcat-openbsd", "useradd": "passwd"}
    missing = sorted({pkg for tool, pkg in needs.items() if not shutil.which(tool)})
    if missing:
        return f"needs {', '.join(missing)} (apt-get install {' '.join(missing)}; .ci/run does)"
    if not (BIN / "ray").exists() or not (BIN / "raygan").exists():
        return f"needs the `ray` and `raygan` commands beside {sys.executable} (pip install -e .)"
    if node_interpreter() is None:
        return (f"no python{sys.version_info.major}.{sys.version_info.minor} that another user may run "
                f"(this one's base, {getattr(sys, '_base_executable', sys.executable)}, is private)")
    site = Path(sysconfig.get_paths()["purelib"])
    if not world_usable(site) or not world_usable(ROOT / "raygan" / "__init__.py"):
        return f"{site} and {ROOT} must be readable by other users (the nodes' user imports from them)"
    try:
        free_port(WORKER)
    except OSError as exc:
        return f"cannot use {WORKER} as a second node's address ({exc})"
    return None


def user_pids(uid: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid and (entry / "stat").read_text().split(") ")[1][0] != "Z":
                    pids.add(int(entry.name))
            except (OSError, IndexError):
                pass
    return pids


def cmdline_pids(needle: str) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.add(int(entry.name))
            except OSError:
                pass
    return pids


def session_pids(session: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[3]) == session:
                    pids.add(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def control_dir(cluster_name: str, user: str) -> Path:
    """Where Ray's SSH connection sharing keeps its sockets (autoscaler command_runner.py)."""
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()[:10]  # noqa: E731
    return Path(f"/tmp/ray_ssh_{sha(user)}/{sha(cluster_name)}")


def end(pids_of, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, whatever ``pids_of()`` lists, until it lists nothing."""
    for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL):
        for pid in pids_of():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and pids_of():
            time.sleep(0.2)
        if not pids_of():
            return


def wait_until(condition, timeout: float, what: str, poll: float = 1.0):
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.time() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(poll)


def config_for_this_machine(onprem: dict, *, name: str, user: str, key: Path, token: Path, storage: Path, proxy: str,
                            ports: dict, base: str, worker_tmp: Path) -> dict:
    """cluster-onprem.yaml with this machine's values; every replaced text must be there, so the
    copy cannot drift silently from the file users run."""
    cfg = json.loads(json.dumps(onprem))

    def replace(commands: list[str], old: str, new: str) -> list[str]:
        assert any(old in c for c in commands), f"cluster-onprem.yaml: no command has {old!r}"
        return [c.replace(old, new) for c in commands]

    cfg["cluster_name"] = name
    cfg["provider"].update(head_ip=HEAD, worker_ips=[WORKER])
    cfg["auth"] = {"ssh_user": user, "ssh_private_key": str(key), "ssh_proxy_command": proxy}
    assert cfg["file_mounts"] == {"~/raygan": ".", "~/.ray/auth_token": "~/.ray/auth_token"}
    cfg["file_mounts"]["~/.ray/auth_token"] = str(token)
    setup = cfg["setup_commands"]
    creates = [c for c in setup if "python3 -m venv ~/raygan-env" in c or "raygan-env/bin/pip install" in c]
    assert len(creates) == 2, setup
    setup = [c for c in setup if c not in creates]
    setup.insert(0, node_environment(base))
    cfg["setup_commands"] = replace(setup, "/mnt/raygan-studies", str(storage))
    common = (f" --num-cpus=1 --object-store-memory=100000000 --min-worker-port=0 --max-worker-port=0"
              f" --disable-usage-stats")
    head = replace(cfg["head_start_ray_commands"], "--port=6379", f"--port={ports['gcs']}")
    cfg["head_start_ray_commands"] = replace(
        head, " --disable-usage-stats",
        f" --dashboard-port={ports['dashboard']} --ray-client-server-port={ports['client']}"
        f" --dashboard-agent-listen-port={ports['head_agent']} --metrics-export-port={ports['head_metrics']}"
        + common)
    worker = replace(cfg["worker_start_ray_commands"], "$RAY_HEAD_IP:6379", f"$RAY_HEAD_IP:{ports['gcs']}")
    # A worker's Ray's stop command (a fresh start on a server of its own) would stop the head here: one
    # machine, one user. `ray down`'s stop command on the head stops both, as it does here.
    assert worker[0].split() == ["ray", "stop"], worker
    worker = worker[1:]
    cfg["worker_start_ray_commands"] = replace(
        worker, " --disable-usage-stats",
        f" --dashboard-agent-listen-port={ports['worker_agent']} --metrics-export-port={ports['worker_metrics']}"
        # A joining node takes the head's temp dir unless told (one machine: the same directory,
        # whose runtime-env agents would delete each other's copy of a job's working directory).
        f" --temp-dir={worker_tmp}/ray" + common)
    return cfg


def world_usable(path: Path) -> bool:
    """Whether a user with no group in common can reach ``path`` (every directory above it
    searchable, the file itself readable and, for a program, executable)."""
    path = Path(os.path.realpath(path))
    need = os.R_OK | (os.X_OK if path.is_dir() or os.access(path, os.X_OK) else 0)
    bits = {os.R_OK: 0o004, os.X_OK: 0o001}
    mode = path.stat().st_mode
    if any(need & flag and not mode & bit for flag, bit in bits.items()):
        return False
    return all(parent.stat().st_mode & 0o001 for parent in path.parents)


def node_interpreter() -> str | None:
    """A Python of this minor version that the nodes' user may run: this environment's own base, or
    the system's (a pyenv build under /root is not)."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (getattr(sys, "_base_executable", sys.executable), f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        if candidate and Path(candidate).exists() and world_usable(Path(candidate)):
            return candidate
    return None


def node_environment(base: str) -> str:
    """The test's stand-in for the config's `python3 -m venv` + `pip install -e`: a venv without
    packages of its own whose site-packages adds this environment's (torch, Ray and raygan, already
    installed), and the `ray` and `raygan` commands pip wrote here, pointed at the node's python."""
    site = sysconfig.get_paths()["purelib"]
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return " && ".join([
        f"{{ test -x ~/raygan-env/bin/python || {base} -m venv --without-pip ~/raygan-env; }}",
        f"echo \"import site; site.addsitedir('{site}')\" > ~/raygan-env/lib/{minor}/site-packages/test-env.pth",
        f"for c in ray raygan; do sed \"1s|.*|#!$HOME/raygan-env/bin/python|\" {BIN}/$c > ~/raygan-env/bin/$c"
        f" && chmod +x ~/raygan-env/bin/$c; done",
    ])


def nodes(dashboard: str, token: str) -> list[dict]:
    request = urllib.request.Request(f"{dashboard}/api/v0/nodes", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["data"]["result"]["result"]
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.slow
@pytest.mark.timeout(1200)  # above the sum of the steps' own limits, so that clean-up always runs
def test_ray_up_of_the_onprem_config_runs_a_study_on_two_nodes_and_ray_down_leaves_nothing():
    reason = missing_requirement()
    if reason:
        pytest.skip(f"on-premise launch: {reason}")
    timings: dict[str, float] = {}
    started = time.time()
    run_id = secrets.token_hex(3)
    user = f"rg-node-{run_id}"  # of this run alone: a concurrent run has its own
    root = Path(tempfile.mkdtemp(prefix="rg-op-"))  # short: Ray's socket paths live below it
    root.chmod(0o755)
    home, storage, sshd_dir = root / "home", root / "studies", root / "sshd"
    ray_tmp = {HEAD: root / "h", WORKER: root / "w"}  # short: Ray's socket paths go below them
    created_user = sshd = tunnel = None
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    try:
        # --- the machine: a user of its own, an sshd of its own --------------------------------
        subprocess.run(["useradd", "--home-dir", str(home), "--create-home", "--shell", "/bin/bash",
                        "--user-group", user], check=True, capture_output=True)
        created_user = user
        subprocess.run(["usermod", "-p", "*", user], check=True)  # no password, not locked: keys only
        account = pwd.getpwnam(user)
        for d in (storage, *ray_tmp.values()):
            d.mkdir()
            os.chown(d, account.pw_uid, account.pw_gid)
        sshd_dir.mkdir(mode=0o700)
        key = sshd_dir / "id_ed25519"
        for path in (sshd_dir / "host_ed25519", key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        dot_ssh = home / ".ssh"
        dot_ssh.mkdir(mode=0o700)
        port = free_port()
        shutil.copy(key.with_suffix(".pub"), dot_ssh / "authorized_keys")
        # The head reaches workers on SSH's own port: Ray drops ssh_proxy_command from the config it
        # gives the head (commands.py). This user's client config, the test's file, says where.
        (dot_ssh / "config").write_text(f"Host {WORKER}\n  Port {port}\n")
        for path in (dot_ssh, dot_ssh / "authorized_keys", dot_ssh / "config"):
            os.chown(path, account.pw_uid, account.pw_gid)
        (sshd_dir / "sshd_config").write_text(
            f"Port {port}\nListenAddress {HEAD}\nListenAddress {WORKER}\n"
            f"HostKey {sshd_dir / 'host_ed25519'}\nPidFile {sshd_dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile .ssh/authorized_keys\nAllowUsers {user}\nPermitRootLogin no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            # The nodes' Ray keeps its temp dir (sessions, `ray_current_cluster`, the local
            # provider's state) to itself, never /tmp/ray, which other users' Rays here share:
            # one per address, as on servers of their own.
            + "".join(f"Match LocalAddress {ip}\n  SetEnv RAY_TMPDIR={d}\n" for ip, d in ray_tmp.items()))
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", str(sshd_dir / "sshd_config")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

        def listening() -> bool:
            try:
                socket.create_connection((WORKER, port), timeout=1).close()
                return True
            except OSError:
                return sshd.poll() is not None

        wait_until(listening, 20, "sshd listening", poll=0.2)
        if sshd.poll() is not None:
            pytest.skip(f"on-premise launch: sshd does not start here: {sshd.stdout.read()[-500:]}")

        # --- the config: cluster-onprem.yaml with this machine's values ------------------------
        token_value = secrets.token_hex(32)
        token = sshd_dir / "auth_token"
        token.write_text(token_value)
        token.chmod(0o600)
        ports = {name: free_port() for name in ("gcs", "dashboard", "client", "head_agent", "head_metrics",
                                                 "worker_agent", "worker_metrics")}
        name = f"raygan-test-{run_id}"
        cfg = config_for_this_machine(
            yaml.safe_load((ROOT / "cluster-onprem.yaml").read_text()), name=name, user=user, key=key, token=token,
            storage=storage, proxy=f"nc %h {port}", ports=ports, base=node_interpreter(), worker_tmp=ray_tmp[WORKER])
        config = root / "cluster.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        launcher_tmp = root / "launcher"
        launcher_tmp.mkdir()
        # This side's Ray state (the local provider's cluster state, ray up's config cache) in the
        # test's directory too; the job client's token is the test's.
        env.update(RAY_TMPDIR=str(launcher_tmp), TMPDIR=str(launcher_tmp), RAY_AUTH_MODE="token",
                   RAY_AUTH_TOKEN_PATH=str(token))

        def ray(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
            return subprocess.run([RAY, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

        # --- ray up ------------------------------------------------------------------------------
        t = time.time()
        up = ray("up", "-y", "--no-config-cache", str(config), timeout=300)
        timings["ray up"] = time.time() - t
        assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
        which = ray("exec", "--no-config-cache", str(config), "command -v ray python raygan", timeout=60)
        assert which.returncode == 0, (which.stdout + which.stderr)[-2000:]
        resolved = [line for line in which.stdout.splitlines() if line.startswith("/")]
        assert resolved == [f"{home}/raygan-env/bin/{c}" for c in ("ray", "python", "raygan")], which.stdout

        # --- the dashboard through `ray dashboard`'s SSH tunnel; the worker joins ----------------
        local = free_port()
        tunnel = subprocess.Popen([RAY, "dashboard", "--no-config-cache", "--port", str(local), "--remote-port",
                                   str(ports["dashboard"]), str(config)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        dashboard = f"http://127.0.0.1:{local}"
        t = time.time()

        def both_alive() -> list[dict] | None:
            alive = [n for n in nodes(dashboard, token_value) if n.get("state") == "ALIVE"]
            return alive if len(alive) >= 2 else None

        alive = wait_until(both_alive, 180, "the worker at 127.0.0.2 joining the head", poll=2)
        timings["worker joined after ray up"] = time.time() - t
        node_ids = {n["node_id"] for n in alive}
        assert len(node_ids) == 2
        assert all((d / "ray" / "session_latest").exists() for d in ray_tmp.values())  # a temp dir each
        with pytest.raises(urllib.error.HTTPError) as refused:  # token authentication is on
            urllib.request.urlopen(f"{dashboard}/api/jobs/", timeout=10)
        assert refused.value.code == 401

        # --- the study as a job ------------------------------------------------------------------
        t = time.time()
        job = ray("job", "submit", "--address", dashboard, "--working-dir", str(ROOT), "--", "python",
                  "studies/bn_ablation.py", "--profile", "smoke", "--address", "auto", "--storage", str(storage),
                  "--epochs", str(EPOCHS),
                  timeout=420)
        timings["job"] = time.time() - t
        assert job.returncode == 0 and "succeeded" in job.stdout, (job.stdout + job.stderr)[-4000:]
        study_dir = storage / "bn_ablation"
        pq = pytest.importorskip("pyarrow.parquet")
        rows = pq.read_table(study_dir / "results.parquet").to_pylist()
        expected = sorted(t["key"] for t in json.loads((study_dir / "study.json").read_text())["trial_list"])
        assert len(expected) == SMOKE_KEYS and sorted(r["trial_key"] for r in rows) == expected
        assert all(r["status"] == "finished" and r["error"] is None for r in rows), rows
        assert all(0.0 <= r["auroc"] <= 1.0 and math.isfinite(r["auroc"]) for r in rows), rows
        assert {r["node_id"] for r in rows} == node_ids  # trials ran on both nodes
        records = {p.stem: json.loads(p.read_text()) for p in (study_dir / "rows").glob("*.json")}
        assert {r["trial_key"]: r["auroc"] for r in rows} == {k: r["metrics"]["auroc"] for k, r in records.items()}
        assert all(len(r["history"]) == EPOCHS for r in records.values())

        end(lambda: session_pids(tunnel.pid))  # the tunnel is this side's, not the cluster's
        tunnel = None
        # so is Ray's SSH connection sharing: a master that carried the tunnel's forward outlives it
        sharing = str(control_dir(name, pwd.getpwuid(os.getuid()).pw_name))
        end(lambda: cmdline_pids(sharing))

        # --- ray down: nothing of the cluster is left --------------------------------------------
        t = time.time()
        down = ray("down", "-y", str(config), timeout=120)
        out = down.stdout + down.stderr
        assert down.returncode == 0 and "command not found" not in out, out[-3000:]
        # The head's Ray's stop command stops both nodes (one user, one machine); SSH sessions that Ray's
        # connection sharing keeps open (ControlPersist 10 s) end by themselves.
        left = None
        deadline = time.time() + 60
        while time.time() < deadline:
            left = user_pids(account.pw_uid) | cmdline_pids(sharing)
            if not left:
                break
            time.sleep(1)
        timings["ray down until nothing left"] = time.time() - t
        assert not left, {p: Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in left if Path(f"/proc/{p}").exists()}
        # Ray's stop command cleared the head's record of the cluster; the worker's, where no Ray's stop command ran,
        # names the dead head (what raygan's local start does not read)
        assert not (ray_tmp[HEAD] / "ray" / "ray_current_cluster").exists()
    finally:
        timings["total"] = time.time() - started
        print("on-premise launch timings (s):", {k: round(v, 1) for k, v in timings.items()})
        if tunnel is not None:
            end(lambda: session_pids(tunnel.pid))
        # Whatever failed, the nodes are this run's user's processes: ended by UID, no `ray down`.
        if created_user:
            uid = pwd.getpwnam(created_user).pw_uid
            end(lambda: user_pids(uid))
        if sshd is not None:
            end(lambda: {sshd.pid} if sshd.poll() is None else set())
        name = f"raygan-test-{run_id}"
        end(lambda: cmdline_pids(str(control_dir(name, pwd.getpwuid(os.getuid()).pw_name))))
        shutil.rmtree(control_dir(name, pwd.getpwuid(os.getuid()).pw_name), ignore_errors=True)
        if created_user:
            shutil.rmtree(control_dir(name, created_user).parent, ignore_errors=True)
            subprocess.run(["userdel", created_user], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
