"""Start and stop the real server process (``python -m modelserver``) for the HTTP tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from delivery.processes import free_port, wait_until
from modelship_contract.manifest import ModelManifest

REPO = Path(__file__).resolve().parents[2]
SERVER_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "app"), str(REPO)])}
"""The environment the server runs in here: as in the image, its package and the contract on the path."""


@dataclass
class RunningServer:
    process: subprocess.Popen
    url: str
    log_path: Path
    manifest: ModelManifest

    def logs(self) -> str:
        return self.log_path.read_text()

    def log_entries(self) -> list[dict]:
        """The JSON log lines written so far; a line still being written (no newline yet) is left out."""
        complete = self.logs().rpartition("\n")[0]
        # Split on "\n" only: str.splitlines() also breaks at U+2028, U+0085 and friends, which JSON
        # leaves unescaped inside strings (a fuzzed request path can carry them).
        return [json.loads(line) for line in complete.split("\n") if line.startswith("{")]


def start_server(
    model_dir: Path, log_path: Path, workers: int = 1, env: dict | None = None, wait: bool = True
) -> RunningServer:
    """``python -m modelserver`` as a subprocess on a free port; waits until /v2/health/ready is 200."""
    port = free_port()
    full_env = {**SERVER_ENV, "MODELSHIP_LOG_LEVEL": "info", **(env or {})}
    log_file = open(log_path, "wb")  # noqa: SIM115 - the process owns it until it exits
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelserver",
            "--model-dir",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=REPO,
    )
    log_file.close()
    from modelship_contract.manifest import read_manifest

    server = RunningServer(process, f"http://127.0.0.1:{port}", log_path, read_manifest(model_dir))
    if not wait:
        return server

    def ready() -> bool:
        try:
            return httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, 30, "server ready", process=process)
    except ChildProcessError:
        raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}") from None
    except TimeoutError:
        process.kill()
        raise RuntimeError(f"server not ready after 30 s:\n{log_path.read_text()}") from None
    return server


def stop_server(server: RunningServer) -> int:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode
