"""Background services of the local flow: the OCI registry standing in for ACR, and process helpers.

The registry is Debian's ``docker-registry`` (CNCF distribution 2.8) with its own config under the
state directory: it listens on 127.0.0.1 only, stores blobs on the local filesystem and has no auth.
Docker treats registries on 127.0.0.0/8 as insecure by default, so plain HTTP push and pull work
without touching the daemon's configuration. Each service started here writes a pid file; stopping
kills exactly that pid, never a process found by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REGISTRY_BIN = Path("/usr/bin/docker-registry")


class ServiceError(RuntimeError):
    """A local service could not be started or does not answer; the message says which and why."""


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is still alive, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def stop_pid(pid_file: Path, what: str, timeout: float = 15.0) -> bool:
    """Stop the process recorded in ``pid_file`` (TERM, then KILL); True if one was running."""
    pid = read_pid(pid_file)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # Reap it if it is our child, so it does not linger as a zombie.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    print(f"[local] {what} (pid {pid}) ignored SIGTERM for {timeout:.0f} s; killing it")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


class LocalRegistry:
    """A ``docker-registry`` on 127.0.0.1:``port`` with its data and pid file under ``state_dir``."""

    def __init__(self, state_dir: Path, port: int = 5000):
        if not 1 <= port <= 65535:
            raise ValueError(f"registry port must be 1-65535, got {port}")
        self.port = port
        self.root = state_dir / "registry"
        self.config_file = self.root / "config.yml"
        self.pid_file = self.root / "registry.pid"
        self.log_file = self.root / "registry.log"

    @property
    def host(self) -> str:
        """``127.0.0.1:port``, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    def config(self) -> str:
        # Deletes are enabled so that `garbage-collect` can reclaim space; no auth, loopback only.
        return (
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
            "health:\n  storagedriver:\n    enabled: false\n"
        )

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def running_pid(self) -> int | None:
        return read_pid(self.pid_file)

    def ensure(self, timeout: float = 20.0) -> bool:
        """Start the registry unless ours already answers; True if it was started now."""
        if self.running_pid() is not None and self.answers():
            return False
        if port_open(self.port):
            if self.answers():
                # Some other registry serves this port (e.g. one the user started); use it as is.
                print(f"[local] using the registry already listening on {self.host}")
                return False
            raise ServiceError(
                f"port {self.port} is taken by something that is not an OCI registry; "
                "free it or set MODELSHIP_REGISTRY_PORT to another port"
            )
        if not REGISTRY_BIN.exists():
            raise ServiceError(f"{REGISTRY_BIN} is missing: run scripts/bootstrap.sh (apt docker-registry)")
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [str(REGISTRY_BIN), "serve", str(self.config_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceError(
                    f"docker-registry exited with {proc.returncode}; see {self.log_file}"
                )
            if self.answers():
                print(f"[local] registry started on {self.host} (pid {proc.pid}, data {self.root / 'data'})")
                return True
            time.sleep(0.2)
        raise ServiceError(f"docker-registry did not answer on {self.host} within {timeout:.0f} s")

    def stop(self) -> bool:
        return stop_pid(self.pid_file, "docker-registry")
