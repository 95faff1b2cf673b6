"""``python -m modelserver.canary``: exit codes, figures, and the workload-identity token exchange.

A small HTTP server in the test answers as Prometheus would (fixed series per pod-template hash)
and as the Entra token endpoint would; the real-Prometheus path is tested in
tests/delivery/test_prometheus.py.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modelserver.canary.__main__ import EXIT_UNREACHABLE, EXIT_USAGE, main
from tests.app.modelserver_process import SERVER_ENV

UNIFORM = {str(d): 100.0 for d in range(10)}


class FakeBackend:
    """Answers /api/v1/query from ``sides`` (hash -> figures) and /tenant/oauth2/v2.0/token."""

    def __init__(self) -> None:
        self.sides: dict[str, dict] = {}
        self.queries: list[tuple[str, str | None]] = []
        self.token_forms: list[dict] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                form = dict(urllib.parse.parse_qsl(raw.decode()))
                if self.path.endswith("/oauth2/v2.0/token"):
                    backend.token_forms.append(form)
                    self._send({"access_token": "tok-123", "expires_in": 3600, "token_type": "Bearer"})
                    return
                query = form["query"]
                backend.queries.append((query, self.headers.get("Authorization")))
                side = next((s for h, s in backend.sides.items() if f'="{h}"' in query), None)
                self._send({"status": "success", "data": {"resultType": "vector",
                                                          "result": backend.result(query, side)}})

            def _send(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def result(query: str, side: dict | None) -> list:
        if side is None:
            return []
        if query.startswith("sum by (label)"):
            return [{"metric": {"label": k}, "value": [0, str(v)]} for k, v in side["labels"].items()]
        if query.startswith("histogram_quantile"):
            return [{"metric": {}, "value": [0, str(side["p99"])]}]
        key = "errors" if 'status=~"5.."' in query else "requests"
        return [{"metric": {}, "value": [0, str(side[key])]}]


@pytest.fixture()
def backend() -> Iterator[FakeBackend]:
    fake = FakeBackend()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def side(requests=1000.0, errors=0.0, p99=0.02, labels=None) -> dict:
    labels = UNIFORM if labels is None else labels
    return {"requests": requests, "errors": errors, "p99": p99, "labels": labels}


def run(backend: FakeBackend, *extra: str, capsys) -> tuple[int, dict | None, str]:
    code = main(["analyze", "--prometheus", backend.url, "--canary-hash", "can", "--stable-hash", "sta",
                 "--wait-seconds", "0", *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_pass_fail_and_inconclusive_exit_codes(backend: FakeBackend, capsys) -> None:
    backend.sides = {"can": side(), "sta": side(requests=5000.0)}
    code, verdict, err = run(backend, capsys=capsys)
    assert code == 0 and verdict["status"] == "pass", err
    assert "canary analysis: pass" in err

    backend.sides["can"] = side(labels={"0": 1000.0})
    code, verdict, err = run(backend, capsys=capsys)
    assert code == 1 and verdict["status"] == "fail"
    drift = next(c for c in verdict["checks"] if c["name"] == "prediction_drift")
    assert drift["status"] == "fail" and drift["value"] > 5

    backend.sides["can"] = side(requests=20.0, labels={"0": 20.0})
    code, verdict, _ = run(backend, capsys=capsys)
    assert code == 3 and verdict["status"] == "inconclusive"


def test_the_window_reaches_the_queries(backend: FakeBackend, capsys) -> None:
    backend.sides = {"can": side(), "sta": side()}
    run(backend, "--window-seconds", "42", capsys=capsys)
    assert backend.queries and all("offset 42s" in q for q, _ in backend.queries)
    assert all(auth is None for _, auth in backend.queries)


def test_azure_workload_identity_exchanges_the_federated_token(
    backend: FakeBackend, tmp_path: Path, monkeypatch, capsys
) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("projected.sa.jwt\n")
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-x")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", backend.url + "/")
    backend.sides = {"can": side(), "sta": side()}
    code, _, err = run(backend, "--auth", "azure-workload-identity", capsys=capsys)
    assert code == 0, err
    assert backend.token_forms == [{
        "client_id": "11111111-2222-3333-4444-555555555555",
        "scope": "https://prometheus.monitor.azure.com/.default",
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": "projected.sa.jwt",
    }]  # one exchange, cached for every query
    assert {auth for _, auth in backend.queries} == {"Bearer tok-123"}


def test_workload_identity_missing_in_the_pod_is_named(backend: FakeBackend, monkeypatch, capsys) -> None:
    for key in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(key, raising=False)
    code, _, err = run(backend, "--auth", "azure-workload-identity", capsys=capsys)
    assert code == EXIT_UNREACHABLE
    assert "AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE unset" in err


def test_unreachable_prometheus_and_bad_input_have_their_own_exit_codes(tmp_path: Path, capsys) -> None:
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        code = main(["analyze", "--prometheus", f"http://127.0.0.1:{port}", "--canary-hash", "a",
                     "--stable-hash", "b", "--wait-seconds", "0"])
    assert code == EXIT_UNREACHABLE
    assert "cannot reach Prometheus" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"min_requests": -1}')
    code = main(["analyze", "--prometheus", "http://127.0.0.1:1", "--canary-hash", "a", "--stable-hash", "b",
                 "--definition", str(bad)])
    assert code == EXIT_USAGE
    assert "min_requests must be a positive integer" in capsys.readouterr().err
    code = main(["analyze", "--prometheus", "ftp://x", "--canary-hash", "a", "--stable-hash", "b"])
    assert code == EXIT_USAGE


def test_runs_as_a_module_without_a_traceback() -> None:
    # As in the image: the server's package and the contract side by side on the path.
    env = SERVER_ENV
    result = subprocess.run([sys.executable, "-m", "modelserver.canary", "show"], capture_output=True,
                            text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["drift_test"] == "psi"
