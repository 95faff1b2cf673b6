"""Background services of the local flow: the OCI registry standing in for ACR, and process helpers.

The registry is Debian's ``docker-registry`` (CNCF distribution 2.8) with its own config under the
state directory: it listens on 127.0.0.1 only, stores blobs on the local filesystem and has no auth.
Docker treats registries on 127.0.0.0/8 as insecure by default, so plain HTTP push and pull work
without touching the daemon's configuration. Processes are started, waited for, recorded and stopped
by ``delivery.processes`` (one helper for every background process): stopping kills exactly the
recorded process, never one found by name, and never a process that has since reused its pid.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from delivery.processes import PidFile, free_port, port_open, start

__all__ = ["REGISTRY_BIN", "LocalRegistry", "ServiceError", "free_port", "port_open", "read_pid", "stop_pid"]

REGISTRY_BIN = Path("/usr/bin/docker-registry")


class ServiceError(RuntimeError):
    """A local service could not be started or does not answer; the message says which and why."""


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that very process is still alive (not a reused pid), else None."""
    return PidFile(pid_file).read()


def stop_pid(pid_file: Path, what: str, timeout: float = 15.0) -> bool:
    """Stop the process recorded in ``pid_file`` (TERM, then KILL); True if one was running."""
    return PidFile(pid_file).stop(what, timeout)


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
        try:
            proc = start(
                [str(REGISTRY_BIN), "serve", str(self.config_file)], self.log_file, self.answers,
                f"docker-registry on {self.host}", timeout, PidFile(self.pid_file),
            )
        except RuntimeError as exc:
            raise ServiceError(str(exc)) from None
        print(f"[local] registry started on {self.host} (pid {proc.pid}, data {self.root / 'data'})")
        return True

    def stop(self) -> bool:
        return stop_pid(self.pid_file, "docker-registry")
