"""The canary's clients count every answer that is not a 200: the "0 failed requests" they report can fail."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import ClassVar

from delivery.canary import TRAFFIC_ROWS, Traffic
from delivery.services import free_port


class Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 200 to the first ``good`` inference requests, then 503; records what it received."""

    good = 3
    bodies: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        status = 200 if len(type(self).bodies) <= type(self).good else 503
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def _wait(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached within 30 s"
        time.sleep(0.02)


def test_non_200_answers_and_refused_connections_are_counted() -> None:
    Flaky.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with Traffic(f"http://127.0.0.1:{server.server_port}", "digits", clients=1) as traffic:
            _wait(lambda: traffic.failed >= 2)
    finally:
        server.shutdown()
        server.server_close()
    assert traffic.ok == 3 and traffic.failures[0] == "HTTP 503", traffic.summary()
    # Every request is the same fixed batch: that is what makes the canary's label counts exact.
    assert all(body == Flaky.bodies[0] for body in Flaky.bodies)
    assert Flaky.bodies[0]["inputs"][0]["shape"] == [TRAFFIC_ROWS, 64]

    with Traffic(f"http://127.0.0.1:{free_port()}", "digits", clients=1, timeout=5) as refused:
        _wait(lambda: refused.failed >= 1)
    assert refused.ok == 0 and refused.failures[0].startswith("ConnectError"), refused.summary()
