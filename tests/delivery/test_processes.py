"""The one helper for background processes: pid files that know their process, start, wait, stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from delivery.processes import PidFile, free_port, port_open, start, wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_a_pid_file_names_its_process_and_stop_ends_it(tmp_path: Path) -> None:
    proc = subprocess.Popen(SLEEPER, start_new_session=True)
    pid_file = PidFile(tmp_path / "run" / "x.pid")
    pid_file.write(proc.pid)
    assert pid_file.read() == proc.pid
    assert pid_file.stop("sleeper") is True
    assert proc.wait(timeout=10) is not None
    assert not pid_file.path.exists()
    assert pid_file.read() is None and pid_file.stop("sleeper") is False


def test_a_reused_pid_is_never_taken_for_ours(tmp_path: Path) -> None:
    proc = subprocess.Popen(SLEEPER)
    try:
        pid_file = PidFile(tmp_path / "x.pid")
        pid_file.write(proc.pid)
        recorded_start = pid_file.path.read_text().split()[1]
        # The same pid with another start time: what the file says after the kernel reused the pid.
        pid_file.path.write_text(f"{proc.pid} {int(recorded_start) + 1}\n")
        assert pid_file.read() is None
        assert pid_file.stop("stranger") is False
        assert proc.poll() is None, "a process that merely reuses the pid must not be signalled"
    finally:
        proc.kill()
        proc.wait()


def test_a_bare_pid_from_a_shell_script_is_trusted_while_it_lives(tmp_path: Path) -> None:
    proc = subprocess.Popen(SLEEPER)
    pid_file = PidFile(tmp_path / "dockerd.pid")
    pid_file.path.write_text(f"{proc.pid}\n")
    assert pid_file.read() == proc.pid
    assert pid_file.stop("sleeper") is True
    assert proc.wait(timeout=10) is not None
    pid_file.path.write_text("not a pid\n")
    assert pid_file.read() is None


def test_start_waits_until_ready_and_records_the_pid(tmp_path: Path) -> None:
    port = free_port()
    server = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    pid_file = PidFile(tmp_path / "http.pid")
    proc = start(server, tmp_path / "http.log", lambda: port_open(port), "http.server", 30, pid_file)
    try:
        assert port_open(port) and pid_file.read() == proc.pid
    finally:
        assert pid_file.stop("http.server") is True
    assert proc.wait(timeout=10) is not None
    assert wait_until(lambda: not port_open(port), 10, "port closed")


def test_start_reports_a_process_that_exits_with_its_log(tmp_path: Path) -> None:
    failing = [sys.executable, "-c", "import sys; print('bad config line 3'); sys.exit(4)"]
    pid_file = PidFile(tmp_path / "f.pid")
    exited = r"(?s)failing: the process exited with status 4.*bad config line 3"
    with pytest.raises(RuntimeError, match=exited):
        start(failing, tmp_path / "f.log", lambda: False, "failing", 30, pid_file)
    assert not pid_file.path.exists()


def test_wait_until_returns_the_value_or_names_what_it_waited_for() -> None:
    values = iter([0, None, "ready"])
    assert wait_until(lambda: next(values), 10, "values", interval=0) == "ready"
    with pytest.raises(TimeoutError, match=r"the moon: not within 0\.2 s"):
        wait_until(lambda: False, 0.2, "the moon", interval=0.05)
