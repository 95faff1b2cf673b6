"""The post-deploy smoke test against the real model server process on 127.0.0.1.

One real model (trained once per session into a temporary directory) is served by
``python -m modelserver``; the smoke test must pass against it, and fail with a message naming
the check against a wrong expected version, a wrong model name and a dead endpoint. Answers a
real server cannot be made to give (a wrong label, a hung socket) come from a tiny stdlib server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from delivery import smoke
from delivery.processes import free_port, port_open, wait_until
from delivery.smoke import DIGIT_ZERO, SmokeError, run_smoke

REPO = Path(__file__).resolve().parents[2]
VERSION = "1.2.3"


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "delivery.smoke", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[str]:
    """The real model server serving a freshly trained digits@1.2.3; yields its base URL."""
    from training.train_digits import train

    model_dir = tmp_path_factory.mktemp("smoke") / "model"
    train(model_dir, "digits", VERSION)
    port = free_port()
    log = (model_dir.parent / "server.log").open("w")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "app"), str(REPO)])}
    proc = subprocess.Popen([sys.executable, "-m", "modelserver", "--model-dir", str(model_dir),
                             "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:  # the port opening is enough here; readiness is what the smoke test checks
            wait_until(lambda: port_open(port), 60, "model server port", process=proc)
        except ChildProcessError:
            pytest.fail(f"model server exited {proc.returncode}: "
                        f"{(model_dir.parent / 'server.log').read_text()[-2000:]}")
        except TimeoutError:
            pytest.fail("model server did not open its port within 60 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_digit_constant_is_sklearn_first_digit():
    from sklearn.datasets import load_digits

    digits = load_digits()
    assert list(DIGIT_ZERO) == [float(v) for v in digits.data[0]]
    assert digits.target[0] == smoke.EXPECTED_LABEL == 0


def test_passes_against_the_real_server(server):
    result = run_smoke(server, "digits", expect_version=VERSION, timeout=30, interval=0.2)
    assert result.version == VERSION
    assert result.label == 0
    assert result.model == "digits"
    assert result.attempts >= 1


def test_passes_without_an_expected_version_and_reports_the_served_one(server):
    assert run_smoke(server + "/", "digits", timeout=30, interval=0.2).version == VERSION


def test_cli_passes_against_the_real_server(server):
    proc = _cli("--url", server, "--model", "digits", "--expect-version", VERSION, "--timeout", "30")
    assert proc.returncode == 0, proc.stderr
    assert f"PASSED {server} serves digits@{VERSION}" in proc.stdout


def test_wrong_version_fails_clearly(server):
    with pytest.raises(SmokeError, match=rf"wrong model version: expected digits@9\.9\.9, .* serves "
                                         rf"digits@{VERSION}"):
        run_smoke(server, "digits", expect_version="9.9.9", timeout=30, interval=0.2)
    proc = _cli("--url", server, "--expect-version", "9.9.9", "--timeout", "30")
    assert proc.returncode == 1
    assert "FAILED: wrong model version: expected digits@9.9.9" in proc.stderr


def test_unknown_model_fails_naming_the_metadata_call(server):
    with pytest.raises(SmokeError, match=r"model 'cats' metadata: GET .*/v2/models/cats answered HTTP 404"):
        run_smoke(server, "cats", timeout=30, interval=0.2)


def test_dead_endpoint_fails_clearly_within_the_timeout():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(SmokeError, match=r"not ready: .*/v2/health/ready did not answer 200 within 1\.5 s "
                                         r"\(\d+ probes every 0\.2 s\); last answer: .*refused"):
        run_smoke(url, timeout=1.5, interval=0.2)
    assert time.monotonic() - started < 1.5 + 1.0
    proc = _cli("--url", url, "--timeout", "1", "--interval", "0.2")
    assert proc.returncode == 1
    assert "smoke: FAILED: not ready" in proc.stderr


def test_hung_endpoint_is_bounded_by_the_timeout():
    """A socket that accepts connections but never answers must not outlast ``timeout``."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(SmokeError, match=r"not ready: .*timed out"):
            run_smoke(url, timeout=1.0, interval=0.2)
        assert time.monotonic() - started < 1.0 + 1.0


class _Fake(BaseHTTPRequestHandler):
    """Answers like a V2 server but with the payloads the test sets on the server object."""

    def _send(self, status: int, payload) -> None:
        body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        answers = self.server.answers  # type: ignore[attr-defined]
        if self.path == "/v2/health/ready":
            answers["probes"] = answers.get("probes", 0) + 1
            ready = answers["probes"] > answers.get("not_ready_probes", 0)
            self._send(200 if ready else 503, {"ready": ready})
        else:
            self._send(200, answers["metadata"])

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        self.server.answers["request"] = json.loads(self.rfile.read(length))  # type: ignore[attr-defined]
        self._send(200, self.server.answers["infer"])  # type: ignore[attr-defined]

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[tuple[str, dict]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    httpd.answers = {  # type: ignore[attr-defined]
        "metadata": {"name": "digits", "versions": ["2"]},
        "infer": {"model_name": "digits", "model_version": "2",
                  "outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}]},
    }
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.answers  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_retries_until_ready_and_sends_the_known_input(fake):
    url, answers = fake
    answers["not_ready_probes"] = 3
    result = run_smoke(url, expect_version="2", timeout=10, interval=0.05)
    assert result.attempts == 4
    (tensor,) = answers["request"]["inputs"]
    assert tensor["name"] == "input" and tensor["datatype"] == "FP32" and tensor["shape"] == [1, 64]
    assert tensor["data"] == [float(v) for v in DIGIT_ZERO]


def test_wrong_label_fails_clearly(fake):
    url, answers = fake
    answers["infer"]["outputs"][0]["data"] = [8]
    with pytest.raises(SmokeError, match="wrong answer: the digit image of a 0 was labelled 8"):
        run_smoke(url, timeout=5, interval=0.05)


def test_missing_label_output_names_the_outputs_seen(fake):
    url, answers = fake
    answers["infer"]["outputs"] = [{"name": "probabilities", "data": [1.0]}]
    with pytest.raises(SmokeError, match=r"no output named 'label' .*outputs: \['probabilities'\]"):
        run_smoke(url, timeout=5, interval=0.05)


def test_version_from_metadata_and_inference_must_agree(fake):
    url, answers = fake
    answers["infer"]["model_version"] = "3"
    with pytest.raises(SmokeError, match=r"several versions \['2', '3'\]"):
        run_smoke(url, timeout=5, interval=0.05)


def test_no_version_reported_fails(fake):
    url, answers = fake
    answers["metadata"]["versions"] = []
    del answers["infer"]["model_version"]
    with pytest.raises(SmokeError, match="names a version"):
        run_smoke(url, expect_version="2", timeout=5, interval=0.05)


def test_non_json_answer_fails_clearly(fake):
    url, answers = fake
    answers["infer"] = "<html>bad gateway</html>"
    with pytest.raises(SmokeError, match=r"inference: POST .* did not answer a JSON object: <html>"):
        run_smoke(url, timeout=5, interval=0.05)


def test_not_ready_within_timeout_reports_last_status(fake):
    url, answers = fake
    answers["not_ready_probes"] = 10_000
    with pytest.raises(SmokeError, match=r"within 0\.5 s .*last answer: HTTP 503"):
        run_smoke(url, timeout=0.5, interval=0.1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"url": "127.0.0.1:8080"}, "--url must be an http:// or https:// URL"),
    ({"url": "ftp://host"}, "--url must be an http:// or https:// URL"),
    ({"model": "Digits_1"}, "--model must be a lowercase RFC 1123 label"),
    ({"timeout": 0}, "--timeout must be > 0"),
    ({"interval": -1}, "--interval must be > 0"),
])
def test_bad_arguments_are_rejected_before_any_request(kwargs, message):
    args = {"url": "http://127.0.0.1:9", "model": "digits", "timeout": 1.0, "interval": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        run_smoke(**args)


def test_cli_bad_arguments_exit_2():
    proc = _cli("--url", "localhost:8080")
    assert proc.returncode == 2
    assert "--url must be an http:// or https:// URL" in proc.stderr
