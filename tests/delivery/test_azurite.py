"""The Azurite helper: a daemon for local delivery (start/status/stop with a pid file)."""

from __future__ import annotations

import json

import pytest

from delivery.azurite import Azurite, answers, free_port, main

pytestmark = pytest.mark.azurite


def test_session_emulator_answers_on_loopback(azurite):
    assert azurite.host == "127.0.0.1" and answers(azurite.port)
    assert "AccountKey" not in repr(azurite)


def test_daemon_start_status_stop(azurite, tmp_path, capsys):
    # `azurite` ensures the npm package is installed, so only the daemon itself is under test here.
    port = free_port()
    data = tmp_path / "azurite-data"
    assert main(["status", "--port", str(port), "--data", str(data)]) == 3
    try:
        assert main(["start", "--port", str(port), "--data", str(data)]) == 0
        pid = int((data / "azurite.pid").read_text().split()[0])
        assert answers(port)
        assert main(["start", "--port", str(port), "--data", str(data)]) == 0, "start is not idempotent"
        assert int((data / "azurite.pid").read_text().split()[0]) == pid
        capsys.readouterr()
        assert main(["status", "--port", str(port), "--data", str(data), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status == {"running": True, "pid": pid, "port": port,
                          "blob_endpoint": f"http://127.0.0.1:{port}/devstoreaccount1", "data": str(data)}
    finally:
        assert main(["stop", "--data", str(data)]) == 0
    assert not answers(port)
    assert not (data / "azurite.pid").exists()
    assert main(["status", "--port", str(port), "--data", str(data)]) == 3
    out = capsys.readouterr()
    assert "AccountKey" not in out.out + out.err


def test_start_refuses_a_port_held_by_another_azurite(azurite, tmp_path, capsys):
    assert main(["start", "--port", str(azurite.port), "--data", str(tmp_path / "other")]) == 1
    assert "already has an Azurite" in capsys.readouterr().err


def test_context_manager_stops_and_cleans_up():
    with Azurite() as emulator:
        port, data = emulator.port, emulator.data_dir
        assert answers(port)
    assert not answers(port)
    assert not data.exists()
