"""The front door (delivery.frontdoor) as a real daemon in front of two tiny HTTP backends on loopback."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from delivery.frontdoor import FrontDoor, read_backend, write_backend
from delivery.services import ServiceError, free_port, read_pid


def backend(name: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def door(tmp_path: Path) -> Iterator[FrontDoor]:
    door = FrontDoor(tmp_path / "frontdoor", free_port())
    try:
        yield door
    finally:
        door.stop()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def test_switch_while_a_client_loops_loses_no_request(door: FrontDoor) -> None:
    a, b = backend("A"), backend("B")
    try:
        door.switch(a.server_address[1], "a")
        assert door.ensure() is True
        assert door.ensure() is False  # ours and listening: reused
        answers: list[str] = []
        failures: list[str] = []
        for i in range(300):  # bounded; a new connection per request, like the e2e poller
            if i == 100:
                door.switch(b.server_address[1], "b")
            try:
                answers.append(get(door.endpoint))
            except OSError as exc:
                failures.append(repr(exc))
        assert failures == []
        assert answers[:100] == ["A"] * 100 and answers[100:] == ["B"] * 200
        assert read_backend(door.backend_file) == {"port": b.server_address[1], "container_id": "b"}
        # The old backend can go away: new connections no longer go there.
        a.shutdown()
        assert get(door.endpoint) == "B"
    finally:
        a.server_close()
        b.shutdown()
        b.server_close()


def test_a_dead_backend_gives_a_clean_close_not_a_hang(door: FrontDoor) -> None:
    door.switch(free_port())  # nothing listens there
    door.ensure()
    for _ in range(2):
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", door.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(1024) == b""  # closed by the door, within the timeout
        assert time.monotonic() - started < 3
    # No backend recorded at all: the same clean close.
    door.backend_file.unlink()
    with socket.create_connection(("127.0.0.1", door.port), timeout=5) as s:
        assert s.recv(1024) == b""


def test_stop_ends_the_daemon_and_a_taken_port_is_a_clear_error(door: FrontDoor, tmp_path: Path) -> None:
    door.ensure()
    pid = door.running_pid()
    assert pid is not None
    other = FrontDoor(tmp_path / "other", door.port)
    with pytest.raises(ServiceError, match="is taken by another process"):
        other.ensure()
    assert door.stop() is True
    assert read_pid(door.pid_file) is None and not door.backend_file.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", door.port), timeout=2).close()


def test_backend_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "backend.json"
    assert read_backend(path) is None
    write_backend(path, 1234, "abc")
    write_backend(path, 2345, "def")
    assert read_backend(path) == {"port": 2345, "container_id": "def"}
    assert [p.name for p in tmp_path.iterdir()] == ["backend.json"]
