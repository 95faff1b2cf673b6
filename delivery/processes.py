"""Background processes of the local flow, one helper for all: free ports, start, wait until ready, stop.

Every long-lived helper process (Azurite, the registry, Prometheus and the front door) is started
detached in its own session, recorded in a pid file, waited for until it answers, and stopped by
that record only, never by a name. The pid file also holds the process's start time
(``/proc/PID/stat``), so a pid that the kernel has since given to another process is not taken for
ours: ``PidFile.read`` returns None for it and ``PidFile.stop`` never signals it.

Test and local-delivery support, like the Azurite helper (``delivery.azurite``): neither ships in the
library wheel, which only talks to a Blob endpoint and never runs a process. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.1,
    process: subprocess.Popen | None = None,
) -> T:
    """Poll ``condition`` until it returns something true, and return that.

    Raises ``TimeoutError`` naming ``what`` after ``timeout`` seconds, or ``ChildProcessError`` as soon
    as ``process`` (the one expected to make the condition true) has exited.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise ChildProcessError(f"{what}: the process exited with status {process.returncode}")
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def _alive(pid: int) -> bool:
    # Reap it first if it is our child, so that an exited child is not seen as a live zombie.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (a daemon started through sudo)
    if not Path("/proc").is_dir():
        return True  # no procfs: the signal probe is all there is
    return _start_time(pid) is not None  # None: a zombie


class PidFile:
    """A pid file that knows the process it names: ``PID START_TIME`` on one line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid} {_start_time(pid) or '-'}\n")

    def read(self) -> int | None:
        """The recorded pid if that very process still runs, else None.

        A file holding only a pid (written by a shell script) is trusted while that pid lives.
        """
        try:
            parts = self.path.read_text().split()
            pid = int(parts[0])
        except (OSError, ValueError, IndexError):
            return None
        if pid <= 0 or not _alive(pid):
            return None
        recorded = parts[1] if len(parts) > 1 else "-"
        if recorded != "-" and _start_time(pid) not in (None, recorded):
            return None  # the pid now belongs to another process
        return pid

    def stop(self, what: str, timeout: float = 15.0) -> bool:
        """Stop the recorded process (SIGTERM, then SIGKILL); True if one was running.

        A process that leads its own session (started by ``start``) is stopped with its whole
        process group, so children it spawned (node's workers, for instance) go too.
        """
        pid = self.read()
        self.path.unlink(missing_ok=True)
        if pid is None:
            return False
        group = _own_group(pid)
        _signal(pid, signal.SIGTERM, group)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not _alive(pid), timeout, what)
            return True
        print(f"[local] {what} (pid {pid}) ignored SIGTERM for {timeout:g} s; killing it")
        _signal(pid, signal.SIGKILL, group)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not _alive(pid), 5, what)
        return True


def _own_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


def _signal(pid: int, sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def start(
    command: Sequence[str],
    log: Path,
    ready: Callable[[], object],
    what: str,
    timeout: float,
    pid_file: PidFile | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start ``command`` detached (own session, output appended to ``log``) and wait until ``ready()``.

    Records the pid in ``pid_file`` once ready. If the process exits or is not ready in time it is
    stopped, and ``RuntimeError`` says what failed, with the end of its log.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env,
        )
    try:
        wait_until(ready, timeout, what, process=proc)
    except (TimeoutError, ChildProcessError) as exc:
        terminate(proc)
        raise RuntimeError(f"{exc}; log {log}:\n{tail(log)}") from None
    if pid_file is not None:
        pid_file.write(proc.pid)
    return proc


def terminate(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process ``start`` made, with its process group (SIGTERM, then SIGKILL), and reap it."""
    if proc.poll() is None:
        _signal(proc.pid, signal.SIGTERM, True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL, True)
            proc.wait(timeout=timeout)


def tail(log: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log, for error messages."""
    try:
        return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
