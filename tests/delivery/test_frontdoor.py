"""The front door (delivery.frontdoor): a real HAProxy in front of tiny HTTP backends on loopback.

Each backend is a separate process, so "stopping a backend" kills every socket it holds, as a
container stop does. Every check is a count over a fixed number of requests (round robin is
exact), never a statistic or a timing.
"""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from delivery import frontdoor as frontdoor_module
from delivery.frontdoor import FrontDoor, FrontDoorError, render_config
from delivery.processes import wait_until
from delivery.services import ServiceError, free_port, port_open, read_pid

BACKEND_SCRIPT = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name, port, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "ready"

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the model server

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v2/health/ready":
            self.answer(200 if ready else 503, b"")
        else:
            self.answer(200, name.encode())

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer(200, name.encode())

    def log_message(self, *args):
        pass

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class Server:
    """One backend process on a free loopback port."""

    def __init__(self, name: str, ready: bool = True):
        self.name = name
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", BACKEND_SCRIPT, name, str(self.port),
                                      "ready" if ready else "not-ready"])
        wait_until(lambda: port_open(self.port), 20, f"backend {name} started", interval=0.05,
                   process=self.proc)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def start(servers: list[Server], name: str, ready: bool = True) -> Server:
    server = Server(name, ready)
    servers.append(server)
    return server


@pytest.fixture
def door(tmp_path: Path) -> Iterator[FrontDoor]:
    door = FrontDoor(tmp_path / "frontdoor", free_port())
    try:
        yield door
    finally:
        door.stop()


def keepalive(door: FrontDoor) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", door.port, timeout=10)


def ask(conn: http.client.HTTPConnection, method: str = "GET") -> str:
    conn.request(method, "/v2/models/digits/infer", body=b"{}" if method == "POST" else None)
    resp = conn.getresponse()
    body = resp.read().decode()
    assert resp.status == 200, (resp.status, body)
    return body


def test_the_generated_config_is_valid_haproxy(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_config(free_port(), tmp_path / "admin.sock"))
    check = subprocess.run([str(frontdoor_module.HAPROXY_BIN), "-c", "-f", str(cfg)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def test_a_release_loses_nothing_for_keepalive_clients(door: FrontDoor, servers: list[Server]) -> None:
    a, b = start(servers, "A"), start(servers, "B")
    assert door.ensure() is True
    assert door.ensure() is False  # ours and answering: reused
    door.switch(a.port, "id-a")
    assert door.backend() == {"port": a.port, "container_id": "id-a"}
    clients = [keepalive(door) for _ in range(4)]
    answers: list[str] = []
    for i in range(120):  # bounded; every request on one of four kept-alive connections
        if i == 40:
            door.switch(b.port, "id-b")  # drains A: no request in progress there afterwards
            a.kill()  # the old container stops: every socket it held is gone
        for conn in clients:
            answers.append(ask(conn, "POST" if i % 2 else "GET"))
    assert answers[:160] == ["A"] * 160 and answers[160:] == ["B"] * 320
    socks = {id(conn.sock) for conn in clients}
    assert len(socks) == 4 and all(conn.sock is not None for conn in clients), "connections were kept"
    assert door.backend() == {"port": b.port, "container_id": "id-b"}
    assert [x.port for x in door.backends() if not x.free] == [b.port]


def test_weights_split_traffic_exactly(door: FrontDoor, servers: list[Server]) -> None:
    stable, canary = start(servers, "stable"), start(servers, "canary")
    door.ensure()
    door.switch(stable.port, "s")
    added = door.add(canary.port, "c")
    assert added.weight == 0 and added.up
    conn = keepalive(door)
    assert Counter(ask(conn) for _ in range(20)) == {"stable": 20}, "weight 0 gets nothing"
    door.set_weights({stable.port: 3, canary.port: 1})
    assert Counter(ask(conn) for _ in range(40)) == {"stable": 30, "canary": 10}
    door.set_weights({stable.port: 0, canary.port: 1})
    assert Counter(ask(conn) for _ in range(10)) == {"canary": 10}
    # Rollback: the canary leaves, the stable takes everything again.
    door.set_weights({stable.port: 100})
    assert door.remove(canary.port) is True
    assert door.remove(canary.port) is False
    assert Counter(ask(conn) for _ in range(10)) == {"stable": 10}


def test_bad_weights_and_unknown_backends_are_refused(door: FrontDoor, servers: list[Server]) -> None:
    a = start(servers, "A")
    door.ensure()
    door.switch(a.port)
    with pytest.raises(ValueError, match="must be 0-256"):
        door.set_weights({a.port: 257})
    with pytest.raises(FrontDoorError, match="not a backend of the front door; add"):
        door.set_weights({free_port(): 1})


def test_a_backend_that_is_not_ready_never_gets_traffic(door: FrontDoor, servers: list[Server]) -> None:
    live, sick = start(servers, "live"), start(servers, "sick", ready=False)
    door.ensure()
    door.switch(live.port)
    with pytest.raises(FrontDoorError, match=r"did not pass the front door's health check \(GET /v2/health"):
        door.add(sick.port, timeout=3)
    sick_backend = door.find(sick.port)
    assert sick_backend is not None and sick_backend.status.startswith("DOWN")
    # Even with a weight, a backend that fails its check gets nothing.
    door.set_weights({sick.port: 100})
    conn = keepalive(door)
    assert Counter(ask(conn) for _ in range(10)) == {"live": 10}
    # Both slots are taken now; a third backend needs one freed first.
    with pytest.raises(FrontDoorError, match="no free slot"):
        door.add(free_port(), timeout=1)


def test_a_dead_backend_is_a_fast_503_not_a_hang(door: FrontDoor) -> None:
    door.ensure()
    started = time.monotonic()
    conn = keepalive(door)
    conn.request("GET", "/")
    resp = conn.getresponse()
    assert resp.status == 503  # nothing deployed yet: HAProxy says so, in HTTP
    assert time.monotonic() - started < 5


def test_stop_ends_haproxy_and_a_taken_port_is_a_clear_error(door: FrontDoor, tmp_path: Path) -> None:
    door.ensure()
    pid = door.running_pid()
    assert pid is not None
    other = FrontDoor(tmp_path / "other", door.port)
    with pytest.raises(ServiceError, match="is taken by another process"):
        other.ensure()
    assert door.stop() is True
    assert read_pid(door.pid_file) is None and not door.admin_socket.exists()
    # HAProxy itself is gone (or a reaped-later zombie, which holds no socket). Not "the port
    # refuses": on a shared machine another process may take a freed port at any moment.
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    with pytest.raises(FrontDoorError, match=r"admin socket .* does not answer"):
        door.backends()
    assert door.backend() is None


def test_a_missing_haproxy_names_the_fix(door: FrontDoor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frontdoor_module, "HAPROXY_BIN", Path("/nonexistent/haproxy"))
    with pytest.raises(FrontDoorError, match=r"run scripts/bootstrap\.sh"):
        door.ensure()
