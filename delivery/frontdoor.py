"""The local front door: a TCP forwarder on 127.0.0.1:<port> that stands in for the LoadBalancer.

In the cluster, clients reach the pods through the Service, and a rolling update with
``maxUnavailable: 0`` adds the new pod to the Service before it removes the old one. Docker cannot
publish one host port from two containers, so locally the fixed port belongs to this small
forwarder instead, and each model container publishes an ephemeral loopback port. A release
starts the new container on its own port, smoke-tests it there, then switches the front door to
it and only then stops the old one (SIGTERM: the server finishes its in-flight requests).

The backend is a small JSON file (``backend.json``: port and container id), replaced atomically
(write + rename) by :meth:`FrontDoor.switch`; the forwarder reads it for every new connection, so
the switch takes effect on the next connection and connections already open keep their backend.
A connection whose backend does not answer is closed at once (no hang). Stdlib only (asyncio);
the daemon is ``python -m delivery.frontdoor`` with a pid file, like the registry and Azurite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from delivery.services import ServiceError, port_open, read_pid, stop_pid

ROOT = Path(__file__).resolve().parent.parent
CONNECT_TIMEOUT = 5.0
"""Seconds to reach the backend before the client connection is closed."""
CHUNK = 64 * 1024


def read_backend(path: Path) -> dict | None:
    """The backend record (``{"port": int, "container_id": str}``), or None if there is none yet."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("port"), int) else None


def write_backend(path: Path, port: int, container_id: str = "") -> None:
    """Replace the backend record atomically: readers see the old or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"port": port, "container_id": container_id}) + "\n")
    os.replace(tmp, path)


# --- the forwarder (runs in the daemon) ---------------------------------------------------------

async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (an HTTP client may still read the answer)."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


class Forwarder:
    """Accepts on ``listen_port`` and joins each connection to the backend named in ``backend_file``."""

    def __init__(self, listen_port: int, backend_file: Path, host: str = "127.0.0.1"):
        self.listen_port = listen_port
        self.backend_file = backend_file
        self.host = host
        self._last_port: int | None = None

    def log(self, msg: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} frontdoor: {msg}", flush=True)

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        backend = read_backend(self.backend_file)
        try:
            if backend is None:
                return  # nothing deployed yet: a clean close
            port = backend["port"]
            if port != self._last_port:
                self.log(f"backend is now {self.host}:{port} ({backend.get('container_id', '')[:12]})")
                self._last_port = port
            try:
                back_r, back_w = await asyncio.wait_for(
                    asyncio.open_connection(self.host, port), CONNECT_TIMEOUT
                )
            except (TimeoutError, OSError) as exc:
                self.log(f"backend {self.host}:{port} does not answer: {exc!r}")
                return
            tasks = [asyncio.ensure_future(_pipe(client_r, back_w)),
                     asyncio.ensure_future(_pipe(back_r, client_w))]
            try:
                # Both directions end on EOF; an error on one (reset) ends the other too.
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in pending:
                    task.cancel()
                for task in done:
                    task.exception()  # retrieved: a reset is the peer's business, not ours
            finally:
                for task in tasks:
                    task.cancel()
                back_w.close()
        finally:
            client_w.close()

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        # Signal handlers exist only on the main thread of a Unix loop; tests serve from a thread
        # and stop through the event instead.
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        server = await asyncio.start_server(self.handle, self.host, self.listen_port, reuse_address=True)
        self.log(f"listening on {self.host}:{self.listen_port}, backend from {self.backend_file}")
        async with server:
            await stop.wait()
        self.log("stopped")


# --- the daemon's lifecycle (used by delivery.local) --------------------------------------------

class FrontDoor:
    """The front door of one deployment: pid, log and backend files under ``root``."""

    def __init__(self, root: Path, port: int):
        self.root = root
        self.port = port
        self.pid_file = root / "frontdoor.pid"
        self.log_file = root / "frontdoor.log"
        self.backend_file = root / "backend.json"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def running_pid(self) -> int | None:
        return read_pid(self.pid_file)

    def backend(self) -> dict | None:
        return read_backend(self.backend_file)

    def switch(self, port: int, container_id: str = "") -> None:
        """Send every new connection to 127.0.0.1:``port`` from now on."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_backend(self.backend_file, port, container_id)

    def ensure(self, timeout: float = 10.0) -> bool:
        """Start the forwarder unless ours runs; True if it was started now."""
        if self.running_pid() is not None and port_open(self.port):
            return False
        if port_open(self.port):
            raise ServiceError(
                f"port {self.port} is taken by another process, so the front door cannot listen there; "
                "free it (a container left by an older `make up`: `make down` once) or set MODELSHIP_PORT"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "delivery.frontdoor", "--port", str(self.port),
                 "--backend-file", str(self.backend_file)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(f"the front door exited with {proc.returncode}; see {self.log_file}")
            if port_open(self.port):
                print(f"[local] front door listening on {self.endpoint} (pid {proc.pid})", flush=True)
                return True
            time.sleep(0.1)
        stop_pid(self.pid_file, "front door")
        raise ServiceError(f"the front door did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s")

    def stop(self) -> bool:
        stopped = stop_pid(self.pid_file, "front door")
        self.backend_file.unlink(missing_ok=True)
        return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery.frontdoor", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1)")
    parser.add_argument("--backend-file", type=Path, required=True, help="JSON file naming the backend port")
    args = parser.parse_args(argv)
    try:
        asyncio.run(Forwarder(args.port, args.backend_file).serve())
    except OSError as exc:
        print(f"frontdoor: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
