"""The cluster path: cluster.yaml checked offline against Ray's own autoscaler schema, and a real
two-node Ray cluster on this machine (two `ray start`s, token authentication on) running the
bn_ablation smoke study submitted with `ray job submit`: trials on both nodes, the second node
killed mid-study, then the driver killed and the study resumed (one study does both: each pays a
job's start-up and a smoke study's worth of trials).

The nodes are stopped by PID (every process of each `ray start` session, found by session id and
temp dir); nothing machine-wide is called, since that would stop every Ray of the user.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fixtures import run_source_probe_study

pytest.importorskip("ray")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
SMOKE_KEYS = 6  # bn_ablation smoke: γ ∈ {0, .1} × AdvProp × Freeze (Freeze only at γ > 0)


# --------------------------------------------------------------------------------------------
# cluster.yaml, offline


def load_cluster_yaml() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def ray_requirement():
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (req,) = [Requirement(d) for d in deps if Requirement(d).name == "ray"]
    return req


def test_cluster_yaml_passes_rays_schema_offline(monkeypatch):
    from ray.autoscaler._private.util import prepare_config, validate_config

    # prepare_config only merges the AWS defaults file; with the AWS SDK unimportable any attempt
    # to reach AWS would raise here
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.setitem(sys.modules, "botocore", None)
    raw = load_cluster_yaml()
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["available_node_types"]["ray.worker.gpu"]["min_workers"] == 0
    assert prepared["available_node_types"]["ray.worker.gpu"]["node_config"]["InstanceType"].startswith("g5.")
    assert prepared["head_node_type"] == "ray.head.cpu"

    # the schema is strict: a misspelt key or an impossible value in the same file is refused
    import jsonschema

    for broken in ({**raw, "max_worker": 8}, {**raw, "head_node_type": "ray.head.gpu"},
                   {**raw, "idle_timeout_minutes": "ten"}):
        with pytest.raises((jsonschema.ValidationError, ValueError)):
            validate_config(prepare_config(copy.deepcopy(broken)))


def test_cluster_yaml_pins_the_ray_version_pyproject_admits():
    import ray

    cfg = load_cluster_yaml()
    image = cfg["docker"]["image"]
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-gpu", image)
    assert match, f"docker.image {image}: expected rayproject/ray:<version>-py3XX-gpu (ray-ml is discontinued)"
    assert "head_image" not in cfg["docker"] and "worker_image" not in cfg["docker"], "one image, one Ray version"
    version = match.group(1)
    requirement = ray_requirement()
    assert requirement.specifier.contains(version), f"image Ray {version} is outside pyproject's {requirement}"
    assert {"default", "tune", "train"} <= requirement.extras
    assert version == ray.__version__, (
        f"cluster.yaml runs Ray {version} but this environment (where the tests ran) has {ray.__version__}: "
        f"change the image tag (Ray pickles trainables between driver and cluster)")
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(python).contains(f"{match.group(2)}.{match.group(3)}")

    # setup_commands install the project and keep Ray at the image's version: any literal pin
    # must equal the image's, and the extras are pyproject's
    commands = " ".join(cfg["setup_commands"] + cfg["head_setup_commands"] + cfg["worker_setup_commands"])
    assert "pip install -e ~/raygan" in commands and cfg["file_mounts"]["~/raygan"] == "."
    for extras, pinned in re.findall(r"ray(\[[a-z,]+\])?==([0-9][0-9.]*)", commands):
        assert pinned == version, f"setup_commands pin ray=={pinned}, the image has {version}"
    installs = re.findall(r"ray\[([a-z,]+)\]==", commands)
    assert installs and all(set(e.split(",")) == requirement.extras for e in installs)


def test_cluster_yaml_is_secure_by_default_and_commented():
    cfg = load_cluster_yaml()
    # Ray creates the group with traffic from the group itself and SSH from anywhere, then adds
    # these rules (ray/autoscaler/_private/aws/config.py, _create_default_inbound_rules): none but SSH
    extra = cfg["provider"]["security_group"]["IpPermissions"]
    assert all((r["FromPort"], r["ToPort"]) == (22, 22) for r in extra), extra
    for node_type in cfg["available_node_types"].values():  # no group of its own that bypasses those rules
        assert "SecurityGroupIds" not in node_type["node_config"]

    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    text = (ROOT / "cluster.yaml").read_text()
    assert all("RAY_AUTH_MODE=token ray start" in c for c in starts if "ray start" in c)
    assert "RAY_AUTH_MODE=disabled" not in text and "0.0.0.0" not in text
    assert any("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"])
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # one token on every node

    # every top-level block says what to change
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            comment = []
            for above in reversed(lines[:i]):
                if not above.startswith("#"):
                    break
                comment.append(above)
            assert any(c.startswith("# Change:") for c in comment), f"cluster.yaml: {line} has no '# Change:' comment"


def load_onprem_yaml() -> dict:
    return yaml.safe_load((ROOT / "cluster-onprem.yaml").read_text())


def test_onprem_yaml_passes_rays_schema_offline():
    """The on-premise config (Ray's local provider) through the same offline check; its launch
    for real is tests/test_onprem_cluster.py."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = load_onprem_yaml()
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "local"
    (node_type,) = prepared["available_node_types"].values()  # Ray's one type for listed servers
    assert node_type["min_workers"] == node_type["max_workers"] == len(raw["provider"]["worker_ips"])

    import jsonschema

    for broken in ({**raw, "max_worker": 2}, {**raw, "auth": {**raw["auth"], "ssh_usr": "x"}},
                   {**raw, "file_mounts_sync_continuously": "no"}):
        with pytest.raises((jsonschema.ValidationError, ValueError)):
            validate_config(prepare_config(copy.deepcopy(broken)))


def test_onprem_yaml_runs_one_environment_the_ray_version_here_and_is_secure():
    import ray

    cfg = load_onprem_yaml()
    text = (ROOT / "cluster-onprem.yaml").read_text()
    setup = cfg["setup_commands"]
    # one environment per node, first on the PATH of the login shells Ray runs commands in
    assert any("python3 -m venv ~/raygan-env" in c for c in setup)
    assert any("~/raygan-env/bin/pip install" in c and "-e ~/raygan" in c for c in setup)
    assert any(">> ~/.bashrc" in c and 'export PATH="$HOME/raygan-env/bin:$PATH"' in c for c in setup)
    assert cfg["file_mounts"] == {"~/raygan": ".", "~/.ray/auth_token": "~/.ray/auth_token"}
    requirement = ray_requirement()
    pins = re.findall(r"ray\[([a-z,]+)\]==([0-9][0-9.]*)", " ".join(setup))
    assert pins, "setup_commands must pin Ray to the version that drives the cluster"
    for extras, version in pins:
        assert set(extras.split(",")) == requirement.extras and requirement.specifier.contains(version)
        assert version == ray.__version__, (
            f"cluster-onprem.yaml installs Ray {version} but this environment has {ray.__version__}")

    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token ray start" in c for c in starts if "ray start" in c)
    assert any("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"])
    assert any("RAY_enable_autoscaler_v2=0 RAY_AUTH_MODE=token ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=disabled" not in text and "0.0.0.0" not in text

    # every top-level block says what to change, and so does every value a user fills in
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            above = []
            for previous in reversed(lines[:i]):
                if not previous.startswith("#"):
                    break
                above.append(previous)
            assert any(c.startswith("# Change:") for c in above), f"cluster-onprem.yaml: {line} has no '# Change:'"
    for key in ("head_ip:", "worker_ips:", "ssh_user:", "ssh_private_key:"):
        (line,) = [line for line in lines if line.strip().startswith(key)]
        assert "# Change:" in line, line
    (storage,) = [i for i, line in enumerate(lines) if "/mnt/raygan-studies" in line and not line.startswith("#")]
    assert "Change: where the shared study storage" in " ".join(lines[storage - 3:storage])


def test_ray_start_head_refuses_token_mode_without_a_token(tmp_path):
    """Why cluster.yaml starts Ray with RAY_AUTH_MODE=token: without it `ray start --head` turns
    authentication on only if a token file exists, and otherwise starts an open cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(tmp_path / "home"), RAY_AUTH_MODE="token")
    process = subprocess.Popen(
        [RAY, "start", "--head", "--num-cpus=0", f"--port={free_port()}", f"--dashboard-port={free_port()}",
         f"--temp-dir={tmp_path / 'ray'}", "--include-dashboard=false", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=120)
        assert process.returncode != 0, out[-2000:]
        assert "no authentication token was found" in out
    finally:
        stop_processes(session_pids(process.pid, tmp_path / "ray"))


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:{port}", "cannot reach a Ray cluster at --address 127.0.0.1:{port} (Connection refused)"),
    ("http://127.0.0.1:{port}", "a dashboard http:// address is for `ray job submit`, not for --address"),
])
def test_an_unreachable_address_fails_in_seconds_with_one_line(tmp_path, address, message):
    port = free_port()  # nothing listens there
    started = time.time()
    run = subprocess.run([sys.executable, "studies/bn_ablation.py", "--address", address.format(port=port),
                          "--storage", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2 and time.time() - started < 60
    assert run.stderr.strip().splitlines() == [run.stderr.strip()] and message.format(port=port) in run.stderr
    assert not (tmp_path / "bn_ablation").exists()  # nothing to --resume from a run that never joined Ray


def stale_ray_tmpdir() -> tuple[Path, str]:
    """A Ray temp dir of the test's own (RAY_TMPDIR, never the machine's) whose
    `ray_current_cluster` names a GCS that is gone, as a head ended without Ray's stop command leaves it."""
    tmpdir = Path(tempfile.mkdtemp(prefix="rg-stale-"))  # short: Ray's socket paths go below it
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    (tmpdir / "ray").mkdir()
    (tmpdir / "ray" / "ray_current_cluster").write_text(dead + "\n")
    return tmpdir, dead


def test_a_local_start_ignores_a_dead_cluster_left_in_rays_temp_dir(monkeypatch):
    """ray.init() without an address joins the cluster recorded in Ray's temp dir and waits on a
    dead one for minutes (measured: still waiting after 60 s); raygan's local start does not read
    that record and starts a Ray of its own in seconds."""
    from raygan.raytrain.startup import ray_init_address

    tmpdir, dead = stale_ray_tmpdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_TMPDIR"] = str(tmpdir)
    probe = ("import ray\nfrom raygan.raytrain.startup import start_ray\nstart_ray(None)\n"
             "print('gcs', ray.get_runtime_context().gcs_address, flush=True)\nray.shutdown()\n")
    process = subprocess.Popen([sys.executable, "-c", probe], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=150)  # a start takes 10-30 s here; a dead GCS, minutes
    finally:
        stop_processes(session_pids(process.pid, tmpdir))
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert process.returncode == 0, out[-3000:]
    (line,) = [line for line in out.splitlines() if line.startswith("gcs ")]
    assert line.split()[1].rpartition(":")[2] != dead.rpartition(":")[2]  # a Ray of its own
    assert "raygan: local Ray up" in out
    # the rule itself (every driver starts or joins Ray through start_ray)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_init_address(None) == "local" and ray_init_address("local") == "local"
    assert ray_init_address("auto") == "auto" and ray_init_address("10.0.0.1:6379") == "10.0.0.1:6379"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a job's driver on a cluster: join it
    assert ray_init_address(None) is None


def test_address_auto_naming_a_dead_cluster_fails_in_seconds_with_one_line(tmp_path):
    tmpdir, dead = stale_ray_tmpdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_TMPDIR"] = str(tmpdir)
    started = time.time()
    try:
        run = subprocess.run([sys.executable, "studies/bn_ablation.py", "--address", "auto", "--storage",
                              str(tmp_path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert run.returncode == 2 and time.time() - started < 60, run.stderr[-3000:]
    assert run.stderr.strip().splitlines() == [run.stderr.strip()], run.stderr
    assert f"--address auto: {tmpdir}/ray/ray_current_cluster names the Ray cluster at {dead}" in run.stderr
    assert "delete it if that cluster is gone" in run.stderr and not (tmp_path / "bn_ablation").exists()


def test_a_local_ray_that_does_not_start_is_one_line_and_stops_what_started(tmp_path, monkeypatch):
    """ray.init of a local Ray raising what Ray 2.60 raises when its raylet does not register in
    30 s (seen here on a loaded machine, and under `nice`): the study says so in one line, leaves
    no study directory, and shuts down what had started. ray.init is replaced (Ray would wait 30 s
    first); the session's own Ray, if any, is not touched."""
    import ray

    from inprocess import study_script

    from raygan.study import load_studies

    def init(**kwargs):
        raise Exception("The current node timed out during startup. This could happen because some of "
                        "the raylet failed to startup or the GCS has become overloaded.")

    shutdowns = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(True))
    result = study_script(load_studies().get("bn_ablation"), "--profile", "smoke", "--storage", str(tmp_path))
    err = result.stderr
    lines = [line for line in err.strip().splitlines() if not line.startswith("raygan: starting a local Ray")]
    assert result.returncode == 2 and len(lines) == 1, err
    assert "the local Ray did not start: The current node timed out during startup." in lines[0]
    assert "RAY_worker_niceness" in lines[0] and "Traceback" not in err
    assert shutdowns and not (tmp_path / "bn_ablation").exists()


# --------------------------------------------------------------------------------------------
# Retries


@pytest.mark.slow
def test_a_deterministic_error_is_recorded_once_not_retried(ray_cluster, tmp_path):
    """With --max-failures, Tune would retry every raised error; a configuration the data split
    rejects fails the same way from the same checkpoint, so the trial ends once, recorded failed."""
    study_dir, rows = run_source_probe_study(tmp_path, max_failures=2)
    assert rows["all"]["status"] == "finished" and rows["all"]["error"] is None
    assert rows["0"]["status"] == "failed" and rows["0"]["auroc"] is None
    assert rows["0"]["error"].startswith("data.anomaly_source 0 is not an anomalous class"), rows["0"]["error"]
    assert len(attempts(study_dir, rows["0"]["trial_key"])) == 1  # one attempt, no retry
    assert len(attempts(study_dir, rows["all"]["trial_key"])) == 1


# --------------------------------------------------------------------------------------------
# A real two-node cluster on this machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, command line) of every live, non-zombie process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] == "Z":
            continue
        out[int(entry.name)] = (int(fields[1]), int(fields[3]), cmdline)
    return out


def session_pids(session: int, temp_dir: Path) -> set[int]:
    """Every process a `ray start` started: its session (start_new_session), anything naming its
    temp dir, and their descendants (raylet workers, DashboardAgent, RuntimeEnvAgent)."""
    procs = _processes()
    found = {pid for pid, (_, sid, cmd) in procs.items() if sid == session or str(temp_dir) in cmd}
    grown = True
    while grown:
        more = {pid for pid, (ppid, _, _) in procs.items() if ppid in found} - found
        found |= more
        grown = bool(more)
    found.discard(os.getpid())
    return found


def stop_processes(pids: set[int], grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and set(_processes()) & pids:
            time.sleep(0.2)
        pids = set(_processes()) & pids
        if not pids:
            return


@dataclass
class Node:
    temp_dir: Path
    session: int  # the `ray start` process's pid = the session id of everything it started
    node_id: str = ""

    def pids(self) -> set[int]:
        return session_pids(self.session, self.temp_dir)

    def stop(self) -> None:
        # Again until none is left: a raylet or dashboard being stopped may still spawn a process.
        for _ in range(5):
            pids = self.pids()
            if not pids:
                return
            stop_processes(pids)

    def raylet_pid(self) -> int:
        (pid,) = [p for p, (_, _, cmd) in _processes().items()
                  if "/raylet/raylet " in cmd and str(self.temp_dir) in cmd]
        return pid


@dataclass
class Cluster:
    root: Path
    env: dict
    gcs_port: int
    dashboard: str
    nodes: list[Node] = field(default_factory=list)

    def start_node(self, name: str, *args: str) -> Node:
        temp_dir = self.root / name  # each node its own: a job's working dir must not vanish under it
        # No --node-ip-address: Ray maps 127.0.0.1 to this machine's own address anyway
        # (services.resolve_ip_for_localhost); the nodes are joined and reached through 127.0.0.1.
        command = [RAY, "start", "--num-cpus=1", f"--temp-dir={temp_dir}",
                   "--object-store-memory=100000000", "--min-worker-port=0", "--max-worker-port=0",
                   f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                   "--disable-usage-stats", *args]
        process = subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        node = Node(temp_dir, process.pid)
        self.nodes.append(node)
        out, _ = process.communicate(timeout=180)
        assert process.returncode == 0, out[-3000:]
        raylet = _processes()[node.raylet_pid()][2]
        node.node_id = re.search(r"--node_id=([0-9a-f]+)", raylet).group(1)
        return node

    @property
    def head(self) -> Node:
        return self.nodes[0]

    def second(self) -> Node:
        """The live second node, started again if an earlier test lost it."""
        live = [n for n in self.nodes[1:] if n.pids()]
        if live:
            return live[-1]
        return self.start_node(f"second-{len(self.nodes)}", f"--address=127.0.0.1:{self.gcs_port}")

    def kill_node(self, node: Node) -> None:
        """Lose a node as a machine would: its raylet first (SIGKILL), then what is left of it."""
        os.kill(node.raylet_pid(), signal.SIGKILL)
        node.stop()

    def submit(self, *args: str, log: Path, study: str = "bn_ablation") -> subprocess.Popen:
        command = [RAY, "job", "submit", "--address", self.dashboard, "--working-dir", str(ROOT), "--",
                   "python", f"studies/{study}.py", "--profile", "smoke", "--address", "auto", *args]
        return subprocess.Popen(command, env=self.env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                text=True, cwd=ROOT)


def wait_for_dashboard(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=5)
            return
        except urllib.error.HTTPError:
            return  # it answers (401: it wants the token)
        except OSError:
            assert time.time() < deadline, f"the dashboard at {url} did not come up"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def two_nodes():
    # A short directory of its own: Ray's socket paths under it must stay below the 107-byte
    # AF_UNIX limit, and pytest's basetemp rotation by a concurrent session must not remove it.
    root = Path(tempfile.mkdtemp(prefix="raygan-cluster-"))
    (root / "auth_token").write_text(secrets.token_hex(32))
    (root / "auth_token").chmod(0o600)
    # The token lives in this test's directory (RAY_AUTH_TOKEN_PATH), not in the user's ~/.ray.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(root / "auth_token"),
               # notice a lost node in seconds
               RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
    gcs, dashboard = free_port(), free_port()
    cluster = Cluster(root, env, gcs, f"http://127.0.0.1:{dashboard}")
    try:
        cluster.start_node("head", "--head", f"--port={gcs}", f"--dashboard-port={dashboard}",
                           f"--ray-client-server-port={free_port()}")
        wait_for_dashboard(cluster.dashboard)
        cluster.start_node("second", f"--address=127.0.0.1:{gcs}")
        yield cluster
    finally:
        for node in reversed(cluster.nodes):
            node.stop()
        left = set().union(*(node.pids() for node in cluster.nodes)) if cluster.nodes else set()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes left running: {left}"


def records(study_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (study_dir / "rows").glob("*.json")}


def attempts(study_dir: Path, key: str) -> list[dict]:
    path = study_dir / "trials" / key / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def finish(job: subprocess.Popen, log: Path, timeout: float = 400) -> str:
    job.wait(timeout=timeout)
    return log.read_text()


def check_complete(study_dir: Path, epochs: int) -> list[dict]:
    """Every trial of the study's list exactly once in results.parquet, each epoch trained once."""
    pq = pytest.importorskip("pyarrow.parquet")
    expected = sorted(t["key"] for t in json.loads((study_dir / "study.json").read_text())["trial_list"])
    assert len(expected) == SMOKE_KEYS
    rows = pq.read_table(study_dir / "results.parquet").to_pylist()
    assert sorted(r["trial_key"] for r in rows) == expected
    assert all(r["status"] == "finished" and r["error"] is None and r["epochs"] == epochs for r in rows)
    for key, record in records(study_dir).items():
        assert [h["epoch"] for h in record["history"]] == list(range(epochs)), key
    return rows


@pytest.mark.slow
def test_a_study_on_two_nodes_survives_losing_one_then_its_driver_killed_and_resumed(two_nodes, tmp_path):
    """The bn_ablation smoke study as a `ray job submit` entrypoint on a two-node cluster (token
    authentication on): trials run on both nodes; the second node is lost (SIGKILL of its raylet)
    in the middle of a trial, which is retried on the head from its last checkpoint; then the
    driver itself is killed (kill -9) while that retry runs, and --resume as a new job keeps what
    finished and trains the rest, every epoch of every trial exactly once."""
    from raygan.engine.checkpoints import load_checkpoint

    cluster = two_nodes
    head, second = cluster.head, cluster.second()
    # token authentication is on: the job API refuses a request without the token
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{cluster.dashboard}/api/jobs/", timeout=10)
    assert refused.value.code == 401

    storage = tmp_path / "studies"
    study_dir, log = storage / "bn_ablation", tmp_path / "first.log"
    epochs = 3
    args = ("--epochs", str(epochs), "--max-failures", "2", "--storage", str(storage))
    job = cluster.submit(*args, log=log)
    try:
        # Lose the second node once it has finished a trial and is past the first epoch of another.
        # (Tune hands a waiting trial to an idle actor on a node that is already warm, so with
        # trials this short a node whose first actor starts slowly may get none: then this fails.)
        victim, deadline = None, time.time() + 300
        while victim is None:
            placed = {k: [a["node_id"][:8] for a in attempts(study_dir, k)] for k in records(study_dir)}
            assert job.poll() is None, (f"ended before the second node got two trials: {placed}\n"
                                        + log.read_text()[-3000:])
            assert time.time() < deadline, "no trial on the second node reached its first checkpoint"
            done = records(study_dir)
            if not any(r["node_id"] == second.node_id for r in done.values()):
                time.sleep(0.1)
                continue
            for run in (study_dir / "trials").iterdir():
                tried = attempts(study_dir, run.name)
                checkpoint = run / "checkpoints" / "last.pt"
                if (run.name not in done and tried and tried[-1]["node_id"] == second.node_id
                        and checkpoint.exists() and load_checkpoint(checkpoint)["epoch"] == 1):
                    victim = run.name  # one epoch done, two to go: it cannot finish before the kill
            time.sleep(0.1)
        cluster.kill_node(second)
        assert not second.pids()

        # The head alone now runs one trial at a time, the victim's retry first among them or not:
        # kill the driver once that retry has started, before the study can finish.
        deadline = time.time() + 300
        while len(attempts(study_dir, victim)) < 2:
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "the lost trial was not retried in time"
            time.sleep(0.1)
        head_pids = head.pids()  # the driver is a descendant of the head's raylet (not the local
        # `ray job submit` client, which names the same script)
        (driver,) = [pid for pid, (_, _, cmd) in _processes().items()
                     if pid in head_pids and cmd.startswith("python studies/bn_ablation.py") and str(storage) in cmd]
        before = records(study_dir)
        os.kill(driver, signal.SIGKILL)
        out = finish(job, log, timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert victim not in before and len(before) < SMOKE_KEYS and "succeeded" not in out
    assert f"{victim} failed on" in out and "retry 1 of 2, from its last checkpoint" in out
    first, retry = attempts(study_dir, victim)[:2]
    assert first["node_id"] == second.node_id and first["start_epoch"] == 0
    assert retry["node_id"] == head.node_id and 1 <= retry["start_epoch"] < epochs  # not from scratch

    resumed = cluster.submit(*args, "--resume", log=tmp_path / "second.log")
    out = finish(resumed, tmp_path / "second.log")
    assert resumed.returncode == 0 and "succeeded" in out, out[-4000:]
    rows = check_complete(study_dir, epochs)
    assert {r["node_id"] for r in rows} == {head.node_id, second.node_id}  # results from both nodes
    after = records(study_dir)
    assert after[victim]["node_id"] == head.node_id
    for key, record in before.items():  # finished before the kill: kept, not trained again
        assert after[key]["recorded_at"] == record["recorded_at"]
    for key in after:
        if key != victim:
            assert len(attempts(study_dir, key)) == 1, key
