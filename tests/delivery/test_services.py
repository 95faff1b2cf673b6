"""The loopback registry that stands in for ACR: real docker-registry process, no Docker needed."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from delivery.services import REGISTRY_BIN, LocalRegistry, ServiceError, free_port, read_pid, stop_pid
from tests.needs import mandatory

needs_registry = pytest.mark.skipif(
    not REGISTRY_BIN.exists() and not mandatory(),
    reason="docker-registry is not installed (scripts/bootstrap.sh installs it)",
)


@needs_registry
def test_registry_starts_once_answers_and_stops(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path, free_port())
    try:
        assert registry.ensure() is True
        assert registry.ensure() is False  # already ours and answering: reused, not restarted
        with urllib.request.urlopen(f"http://{registry.host}/v2/_catalog", timeout=5) as resp:
            assert resp.status == 200
        pid = registry.running_pid()
        assert pid is not None
        assert "127.0.0.1" in registry.config_file.read_text()
    finally:
        assert registry.stop() is True
    assert read_pid(registry.pid_file) is None
    assert not registry.answers()
    assert registry.stop() is False


def test_a_port_held_by_something_else_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        registry = LocalRegistry(tmp_path, s.getsockname()[1])
        with pytest.raises(ServiceError, match="is taken by something that is not an OCI registry"):
            registry.ensure(timeout=2)


def test_stop_pid_kills_only_the_recorded_process(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(str(proc.pid))
    assert stop_pid(pid_file, "sleeper") is True
    assert proc.wait(timeout=5) is not None
    assert not pid_file.exists()
    pid_file.write_text("not a pid")
    assert stop_pid(pid_file, "nothing") is False


def test_registry_port_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="registry port must be 1-65535, got 0"):
        LocalRegistry(tmp_path, 0)
