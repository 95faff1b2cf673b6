"""Run the Azurite blob emulator: for the test suite (a context manager) and local delivery (a daemon).

Test and local-delivery support, not part of the shipped ``modelstore`` library: the store only needs
an endpoint and a credential (``AZURE_STORAGE_CONNECTION_STRING`` for this emulator).

Azurite comes from npm at an exact version, installed once under ``.local/azurite`` in the repo
(gitignored). It listens on 127.0.0.1 only. Its account key is the public, well-known emulator key;
it is still never printed, so logs look the same as they would with a real store.

    python -m delivery.azurite start  --port 10000 --data .local/azurite-data
    python -m delivery.azurite status --port 10000 --data .local/azurite-data
    python -m delivery.azurite stop   --data .local/azurite-data
"""

from __future__ import annotations

import argparse
import fcntl
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from delivery.processes import PidFile, free_port, start, tail, terminate, wait_until

__all__ = ["Azurite", "EmulatorError", "answers", "blob_endpoint", "connection_string", "daemon_start",
           "daemon_stop", "ensure_installed", "free_port", "main"]

AZURITE_VERSION = "3.37.0"
"""Exact npm version of Azurite; bump deliberately."""
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTALL_DIR = REPO_ROOT / ".local" / "azurite"
ACCOUNT = "devstoreaccount1"
# The documented, public key of the emulator account (identical in every Azurite installation).
_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"


class EmulatorError(RuntimeError):
    """Azurite could not be installed, started or stopped; the message says why."""


def connection_string(port: int, host: str = HOST) -> str:
    """Connection string for an Azurite blob service on ``host:port`` (contains the public key)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={_ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{ACCOUNT};"
    )


def blob_endpoint(port: int, host: str = HOST) -> str:
    return f"http://{host}:{port}/{ACCOUNT}"


def install_dir() -> Path:
    return Path(os.environ.get("MODELSHIP_AZURITE_DIR") or DEFAULT_INSTALL_DIR)


def ensure_installed(prefix: Path | None = None) -> Path:
    """Install the pinned Azurite with npm if it is missing; return the ``azurite-blob`` executable."""
    prefix = Path(prefix or install_dir())
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    package = prefix / "node_modules" / "azurite" / "package.json"

    def installed() -> bool:
        try:
            return binary.exists() and json.loads(package.read_text())["version"] == AZURITE_VERSION
        except (OSError, ValueError, KeyError):
            return False

    if installed():
        return binary
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        raise EmulatorError(
            "Azurite needs Node.js and npm: install them (e.g. `apt-get install nodejs npm`) and retry"
        )
    prefix.mkdir(parents=True, exist_ok=True)
    # Parallel test sessions may race to install; one installs, the others wait for it.
    with open(prefix.parent / f".{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():
            return binary
        print(f"installing azurite@{AZURITE_VERSION} into {prefix} (one-off, ~1 min)", file=sys.stderr)
        proc = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
             f"azurite@{AZURITE_VERSION}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
        )
        if proc.returncode != 0 or not installed():
            tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
            raise EmulatorError(f"npm install azurite@{AZURITE_VERSION} failed:\n{tail}")
    return binary


def answers(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    """Whether an Azurite blob service answers HTTP on ``host:port``."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", f"/{ACCOUNT}?comp=list")
        resp = conn.getresponse()
        resp.read()
        # Azurite answers an unsigned request with 403 and its own request-id header.
        return resp.getheader("x-ms-request-id") is not None
    except OSError:
        return False
    finally:
        conn.close()


def _command(binary: Path, port: int, data_dir: Path, host: str) -> list[str]:
    return [
        str(binary), "--blobHost", host, "--blobPort", str(port), "--location", str(data_dir),
        "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry",
    ]


def _wait_ready(proc: subprocess.Popen, port: int, host: str, timeout: float, log: Path) -> None:
    try:
        wait_until(lambda: answers(port, host), timeout, f"Azurite on {host}:{port}", process=proc)
    except (TimeoutError, ChildProcessError) as exc:
        raise EmulatorError(f"{exc}:\n{tail(log)}") from None


class Azurite:
    """An Azurite blob service for the lifetime of a ``with`` block.

    ``port=None`` picks a free loopback port; ``data_dir=None`` uses a temporary directory that is
    removed on exit.
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | str | None = None,
        host: str = HOST,
        prefix: Path | None = None,
        startup_timeout: float = 60.0,
    ):
        self.host = host
        self.port = port
        self.data_dir = Path(data_dir) if data_dir else None
        self._prefix = prefix
        self._own_data = data_dir is None
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen | None = None

    @property
    def connection_string(self) -> str:
        if self.port is None:
            raise EmulatorError("Azurite is not started")
        return connection_string(self.port, self.host)

    @property
    def blob_endpoint(self) -> str:
        if self.port is None:
            raise EmulatorError("Azurite is not started")
        return blob_endpoint(self.port, self.host)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __repr__(self) -> str:  # no connection string here: it holds the key
        return f"Azurite({self.host}:{self.port}, data={self.data_dir})"

    def start(self) -> Azurite:
        binary = ensure_installed(self._prefix)
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="azurite-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port is not None
        for _attempt in range(1 if fixed_port else 3):
            port = self.port if fixed_port else free_port(self.host)
            log = self.data_dir / "azurite.log"
            with open(log, "wb") as out:
                self._proc = subprocess.Popen(
                    _command(binary, port, self.data_dir, self.host),
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )
            try:
                _wait_ready(self._proc, port, self.host, self._startup_timeout, log)
            except EmulatorError:
                self._kill()
                if fixed_port:
                    raise
                continue  # another process took the free port between probe and bind
            self.port = port
            return self
        raise EmulatorError(f"Azurite failed to start on a free port:\n{tail(log)}")

    def stop(self) -> None:
        self._kill()
        if self._own_data and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _kill(self) -> None:
        if self._proc is not None:
            terminate(self._proc)
        self._proc = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- daemon for local delivery ---------------------------------------------------------------


def _pid_file(data_dir: Path) -> PidFile:
    return PidFile(data_dir / "azurite.pid")


def daemon_start(port: int, data_dir: Path, host: str = HOST, timeout: float = 60.0) -> int:
    """Start a detached Azurite recorded in ``DATA/azurite.pid``; idempotent. Returns its pid."""
    data_dir = data_dir.absolute()
    pid = _pid_file(data_dir).read()
    if pid and answers(port, host):
        return pid
    if answers(port, host):
        raise EmulatorError(
            f"port {port} already has an Azurite not started from {data_dir}; stop it or use another --port"
        )
    binary = ensure_installed()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        proc = start(_command(binary, port, data_dir, host), data_dir / "azurite.log",
                     lambda: answers(port, host), f"Azurite on {host}:{port}", timeout, _pid_file(data_dir))
    except RuntimeError as exc:
        raise EmulatorError(str(exc)) from None
    return proc.pid


def daemon_stop(data_dir: Path) -> int | None:
    """Stop the Azurite recorded in ``DATA/azurite.pid``; returns its pid, or None if none ran."""
    pid_file = _pid_file(data_dir.absolute())
    pid = pid_file.read()
    pid_file.stop("Azurite", timeout=10)
    return pid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery.azurite",
                                     description="Run a long-lived Azurite blob emulator on 127.0.0.1.")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=10000, help="blob port (default 10000)")
    parser.add_argument("--data", type=Path, default=REPO_ROOT / ".local" / "azurite-data",
                        help="data directory; holds azurite.pid and azurite.log")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be 1-65535, got {args.port}")
    where = blob_endpoint(args.port)
    try:
        if args.action == "start":
            pid = daemon_start(args.port, args.data)
            print(f"Azurite blob service at {where} (pid {pid}, data {args.data.absolute()})")
            return 0
        if args.action == "stop":
            pid = daemon_stop(args.data)
            print(f"stopped Azurite (pid {pid})" if pid else f"no Azurite running from {args.data}")
            return 0
        pid = _pid_file(args.data.absolute()).read()
        running = bool(pid and answers(args.port))
        if args.json:
            print(json.dumps({"running": running, "pid": pid if running else None, "port": args.port,
                              "blob_endpoint": where, "data": str(args.data.absolute())}))
        else:
            print(f"Azurite running at {where} (pid {pid})" if running else f"Azurite not running at {where}")
        return 0 if running else 3
    except EmulatorError as exc:
        print(f"azurite: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
