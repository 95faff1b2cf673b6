"""The Open Inference Protocol REST API, tested against the real server process (uvicorn + workers).

Only a fault that no request can provoke (the model itself raising) is injected, in process.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import load_digits

from modelserver import logs
from modelserver.http import create_app
from modelserver.predictor import Predictor
from modelserver.settings import Settings
from modelship_contract.manifest import MANIFEST_FILE, sha256_file
from tests.app.modelserver_process import REPO, SERVER_ENV, RunningServer, start_server, stop_server

DIGITS = load_digits()


def infer_body(rows: int = 1, **overrides) -> dict:
    tensor = {
        "name": "input",
        "shape": [rows, 64],
        "datatype": "FP32",
        "data": DIGITS.data[:rows].ravel().tolist(),
    }
    tensor.update(overrides)
    return {"inputs": [tensor]}


def test_health_and_server_metadata(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "modelship"


@pytest.mark.parametrize("prefix", ["/v2/models/digits", "/v2/models/digits/versions/1.0.0"])
def test_model_metadata_ready_and_infer_by_name_and_version(client: httpx.Client, prefix: str) -> None:
    meta = client.get(prefix).json()
    assert meta["versions"] == ["1.0.0"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert client.get(f"{prefix}/ready").json() == {"name": "digits", "ready": True}
    response = client.post(f"{prefix}/infer", json={"id": "req-7", **infer_body(1)})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["model_name"], result["model_version"], result["id"]) == ("digits", "1.0.0", "req-7")
    label = next(o for o in result["outputs"] if o["name"] == "label")
    assert label == {"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}


def test_batch_of_64_rows(client: httpx.Client) -> None:
    result = client.post("/v2/models/digits/infer", json=infer_body(64)).json()
    outputs = {o["name"]: o for o in result["outputs"]}
    assert outputs["probabilities"]["shape"] == [64, 10] and len(outputs["probabilities"]["data"]) == 640
    correct = sum(int(a == b) for a, b in zip(outputs["label"]["data"], DIGITS.target[:64], strict=True))
    assert correct >= 60


def test_requested_output_only(client: httpx.Client) -> None:
    result = client.post(
        "/v2/models/digits/infer", json={**infer_body(2), "outputs": [{"name": "label"}]}
    ).json()
    assert [o["name"] for o in result["outputs"]] == ["label"]


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "message"),
    [
        ("GET", "/v2/models/cats", None, 404, "model 'cats' is not served here; this server serves 'digits'"),
        (
            "GET",
            "/v2/models/digits/versions/9/ready",
            None,
            404,
            "version '9' of model 'digits' is not served",
        ),
        ("POST", "/v2/models/cats/infer", infer_body(), 404, "model 'cats' is not served"),
        ("POST", "/v2/models/digits/infer", infer_body(datatype="INT32"), 400, "expected 'FP32'"),
        ("POST", "/v2/models/digits/infer", infer_body(shape=[1, 32]), 400, r"expected [-1, 64]"),
        ("POST", "/v2/models/digits/infer", infer_body(name="x"), 400, "expected 'input'"),
        ("POST", "/v2/models/digits/infer", infer_body(shape=[2, 64]), 400, "needs 128"),
        ("GET", "/v2/models/digits/infer", None, 405, "method GET is not allowed"),
        ("GET", "/v3", None, 404, "no route for /v3"),
    ],
)
def test_errors_use_the_protocol_error_format(
    client: httpx.Client, method: str, path: str, payload: dict | None, status: int, message: str
) -> None:
    response = client.request(method, path, json=payload)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


def test_malformed_json_and_empty_body(client: httpx.Client) -> None:
    for content in (b"{oops", b"", b"\xff\xfe"):
        response = client.post("/v2/models/digits/infer", content=content)
        assert response.status_code == 400, content
        assert response.json()["error"]


def test_oversized_body_gets_413_with_the_limit(model_dir: Path, tmp_path: Path) -> None:
    small = start_server(model_dir, tmp_path / "small.log", env={"MODELSHIP_MAX_BODY_BYTES": "4096"})
    try:
        response = httpx.post(f"{small.url}/v2/models/digits/infer", json=infer_body(64))
        assert response.status_code == 413
        assert "exceeds the limit of 4096 bytes" in response.json()["error"]

        def chunks():  # no Content-Length: the limit is enforced while streaming
            for _ in range(10):
                yield b" " * 1000

        response = httpx.post(f"{small.url}/v2/models/digits/infer", content=chunks())
        assert response.status_code == 413
        assert httpx.post(f"{small.url}/v2/models/digits/infer", json=infer_body(1)).status_code == 200
    finally:
        stop_server(small)


def test_request_id_is_echoed_and_logged_as_json(client: httpx.Client, server: RunningServer) -> None:
    response = client.get("/v2/health/live", headers={"x-request-id": "trace-abc-123"})
    assert response.headers["x-request-id"] == "trace-abc-123"
    generated = client.get("/v2").headers["x-request-id"]
    assert len(generated) == 32
    entries = server.log_entries()
    assert any(
        e.get("msg") == "request"
        and e["request_id"] == "trace-abc-123"
        and e["path"] == "/v2/health/live"
        and e["status"] == 200
        for e in entries
    )
    assert any(e.get("msg") == "model loaded" and e.get("model") == "digits@1.0.0" for e in entries)


def test_metrics_in_prometheus_format(client: httpx.Client, server: RunningServer) -> None:
    client.post("/v2/models/digits/infer", json=infer_body(3))
    text = client.get("/metrics").text
    assert (
        f'modelship_model_info{{name="digits",sha256="{server.manifest.sha256}",version="1.0.0"}} 1.0' in text
    )
    assert 'modelship_http_requests_total{method="POST",route="infer",status="200"}' in text
    assert "modelship_http_request_duration_seconds_bucket{" in text
    assert "modelship_inference_duration_seconds_count" in text
    rows = next(line for line in text.splitlines() if line.startswith("modelship_inference_rows_total"))
    assert float(rows.split()[-1]) >= 3


def test_two_workers_share_metrics_under_tmp(model_dir: Path, tmp_path: Path) -> None:
    multi = start_server(model_dir, tmp_path / "multi.log", workers=2)
    try:
        with httpx.Client(base_url=multi.url) as http:
            # New connections spread over both workers; all must answer and be counted once.
            for _ in range(20):
                assert (
                    http.post(
                        "/v2/models/digits/infer", json=infer_body(1), headers={"connection": "close"}
                    ).status_code
                    == 200
                )
            text = http.get("/metrics").text
        line = next(
            x
            for x in text.splitlines()
            if x.startswith('modelship_http_requests_total{method="POST",route="infer",status="200"}')
        )
        assert float(line.split()[-1]) == 20
        assert "modelship_model_info{" in text
    finally:
        assert stop_server(multi) in (0, -signal.SIGTERM)


def test_refuses_to_start_on_sha256_mismatch(model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    data = bytearray((bad / "model.onnx").read_bytes())
    data[10] ^= 0x01
    (bad / "model.onnx").write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-m", "modelserver", "--model-dir", str(bad), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO / "app",
        env=SERVER_ENV,
    )
    assert result.returncode == 2
    assert "refusing to start" in result.stderr and "sha256 mismatch" in result.stderr


def test_graceful_shutdown_finishes_in_flight_requests(model_dir: Path, tmp_path: Path) -> None:
    running = start_server(model_dir, tmp_path / "graceful.log")
    statuses: list[int] = []

    def slow_upload() -> None:
        def body():  # a request still arriving when SIGTERM lands
            import time

            yield b'{"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": '
            time.sleep(0.8)
            yield json.dumps(DIGITS.data[0].tolist()).encode() + b"}]}"

        statuses.append(
            httpx.post(f"{running.url}/v2/models/digits/infer", content=body(), timeout=10).status_code
        )

    thread = threading.Thread(target=slow_upload)
    thread.start()
    import time

    time.sleep(0.3)
    running.process.send_signal(signal.SIGTERM)
    thread.join(timeout=15)
    # uvicorn re-raises SIGTERM after draining: -SIGTERM here, 0 as PID 1 in a container (test_image).
    assert running.process.wait(timeout=20) in (0, -signal.SIGTERM)
    assert statuses == [200]
    assert "shutdown complete" in running.logs()


def _metric(text: str, prefix: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def test_client_hanging_up_mid_body_is_not_a_server_error(
    client: httpx.Client, server: RunningServer
) -> None:
    refused = 'modelship_http_requests_total{method="POST",route="infer",status="400"}'
    before = _metric(client.get("/metrics").text, refused)
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"inputs": ['
        )
    deadline = time.monotonic() + 10
    while _metric(text := client.get("/metrics").text, refused) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _metric(text, refused) == before + 1
    assert 'status="500"' not in text
    assert "Traceback" not in server.logs()


def test_a_model_that_does_not_load_is_refused_whatever_the_number_of_workers(
    model_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    (broken / "model.onnx").write_bytes(b"not an onnx graph")
    manifest = json.loads((broken / MANIFEST_FILE).read_text())
    manifest.update(sha256=sha256_file(broken / "model.onnx"), size=len(b"not an onnx graph"))
    (broken / MANIFEST_FILE).write_text(json.dumps(manifest))

    # The model loads once, in the main process, before any worker is forked: both refuse to start.
    for workers in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-m", "modelserver", "--model-dir", str(broken), "--port", "1",
             "--workers", workers],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO / "app",
            env=SERVER_ENV,
        )
        assert result.returncode == 2 and "not a loadable ONNX model" in result.stderr, workers


def test_an_unexpected_failure_is_a_json_500_traceable_by_request_id(model_dir: Path) -> None:
    class Exploding(Predictor):
        def infer(self, tensors, outputs=None, on_run=None):
            raise RuntimeError("boom")

    predictor = Exploding(model_dir)
    predictor.load()
    app = create_app(Settings(model_dir=model_dir), predictor)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("modelserver")
    logger.addHandler(handler)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            return await http.post(
                "/v2/models/digits/infer", json=infer_body(1), headers={"x-request-id": "trace-500"}
            )

    try:
        response = asyncio.run(call())
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "trace-500"
    assert response.json() == {"error": "internal error; see the server log for this request id"}
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    failure = next(e for e in entries if e["msg"] == "unexpected error")
    assert failure["request_id"] == "trace-500" and "RuntimeError: boom" in failure["exc"]


def test_one_worker_hashes_the_model_once(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``python -m modelserver --workers 1`` does: verify and load, then serve that predictor; the
    app's start-up finds it loaded and reads the model file no more."""
    import modelserver.predictor as predictor_module
    import modelship_contract.manifest as contract

    hashed: list[str] = []
    real = contract.hash_model_file

    def counting(fh):
        hashed.append(fh.name)
        return real(fh)

    monkeypatch.setattr(contract, "hash_model_file", counting)  # sha256_file, load_model_dir
    monkeypatch.setattr(predictor_module, "hash_model_file", counting)
    predictor = Predictor(model_dir)
    predictor.load()
    app = create_app(Settings(model_dir=model_dir), predictor)

    async def serve() -> list[int]:
        async with app.router.lifespan_context(app):  # the start-up uvicorn runs
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                return [(await http.get("/v2/health/ready")).status_code,
                        (await http.post("/v2/models/digits/infer", json=infer_body(1))).status_code]

    assert asyncio.run(serve()) == [200, 200]
    assert hashed == [str(model_dir / "model.onnx")]
