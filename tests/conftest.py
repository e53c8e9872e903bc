from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


@pytest.fixture(scope="session")
def searched_config_file(tmp_path_factory):
    return write_search_best_config(tmp_path_factory.mktemp("searched") / "best_config.json")


@pytest.fixture(autouse=True)
def isolated_data_env(tmp_path, monkeypatch, searched_config_file):
    """Tests never read the user's cache or $RAYGAN_DATA unless they set them, and hpo_confirm
    confirms a search configuration of the test's own (not the committed results/hpo-cpu)."""
    monkeypatch.setenv("RAYGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RAYGAN_DATA", raising=False)
    monkeypatch.setenv("RAYGAN_STORAGE", str(tmp_path / "studies"))
    monkeypatch.setenv("RAYGAN_CONFIRM_CONFIG", str(searched_config_file))


# What `raygan report` writes as a search's best_config.json: a complete AGAD RunConfig whose
# searched values differ from the paper's defaults.
SEARCHED = {"method": "agad", "data": {"dataset": "fashion_mnist", "class_index": 8},
            "model": {"latent_size": 50, "backbone": "naive", "bn_strategy": "advprop"},
            "loss": {"adversarial_weight": 0.3, "contextual_weight": 120.0, "contextual_adversarial_weight": 4.0,
                     "latent_weight": 0.7, "detach_pseudo_anomaly": False},
            "train": {"lr": 6e-4, "epochs": 5, "batch_size": 64}}


def write_search_best_config(path):
    import json

    from raygan.core.config import RunConfig

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(RunConfig.from_dict(SEARCHED).to_dict(), indent=1))
    return path


@dataclass
class LocalServer:
    """Serves byte strings on 127.0.0.1; a path in ``truncate`` promises more bytes than it sends."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    truncate: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    state = LocalServer(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if self.path in state.truncate else body)
            if self.path in state.truncate:
                self.close_connection = True

        def log_message(self, *args):  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session (it takes seconds to start); drivers under test join it
    with --address, so killing a driver never leaves Ray processes of its own behind."""
    ray = pytest.importorskip("ray")
    # "local": a new Ray, never the cluster a `ray start` recorded in Ray's temp dir (maybe dead)
    ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
