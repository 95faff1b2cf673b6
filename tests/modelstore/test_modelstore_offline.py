"""An unreachable or vanishing store: bounded failures that say what was unreachable, and recovery.

"Unreachable" is a loopback port that is bound but not listening (connections are refused at once,
and no other process can take the port). Mid-transfer faults come from ``FaultProxy``, triggered by
byte and connection counts. Each command runs as ``python -m modelstore`` in a fresh process, so
what is asserted is exactly what a user sees on stderr. The time bounds are the issue's (15 s
unreachable, 30 s lost mid-fetch, by default); the store fails well inside them (about 5 s).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelship_contract.manifest import load_model_dir
from tests.modelstore.faultproxy import AfterCut, FaultProxy

pytestmark = pytest.mark.azurite

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def cli(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    env = {**env, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'app'}"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "modelstore", *args], env=env, capture_output=True,
                          text=True, timeout=300)
    return proc, time.monotonic() - started


def via(port: int, connection_string: str) -> str:
    """The connection string with its blob endpoint moved to ``127.0.0.1:port``."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if p)
    parts["BlobEndpoint"] = f"http://127.0.0.1:{port}/{parts['AccountName']}"
    return ";".join(f"{k}={v}" for k, v in parts.items())


@pytest.fixture
def closed_port():
    """A loopback port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_an_unreachable_store_fails_within_15_s_naming_what_it_could_not_reach(
    closed_port, store_env, make_model, tmp_path
):
    env = {**store_env,
           "AZURE_STORAGE_CONNECTION_STRING": via(closed_port, store_env["AZURE_STORAGE_CONNECTION_STRING"])}
    env.pop("MODELSHIP_STORE_TIMEOUT", None)  # the default bound is what is tested
    src, _ = make_model("digits", "1")
    commands = {"list": ["list"], "show": ["show", "digits"],
                "fetch": ["fetch", "digits", str(tmp_path / "m")], "publish": ["publish", str(src)]}
    with ThreadPoolExecutor(len(commands)) as pool:
        results = dict(zip(commands, pool.map(lambda args: cli(args, env), commands.values()), strict=True))
    for name, (proc, elapsed) in results.items():
        assert "Traceback" not in proc.stderr, name
        assert proc.returncode == 1, (name, proc.stderr)
        where = f"http://127.0.0.1:{closed_port}/devstoreaccount1"
        assert f"cannot reach the model store at {where}" in proc.stderr
        assert "Connection refused" in proc.stderr and "--timeout" in proc.stderr, proc.stderr
        assert elapsed < 15, f"{name} took {elapsed:.1f} s to give up on an unreachable store"
    assert not (tmp_path / "m").exists()


def publish_and_fetch_once(store, make_model, tmp_path, size: int):
    """Version 1 fetched into DEST (what a failed fetch must leave); version 2 published, to fetch."""
    store.publish(make_model("digits", "1")[0])
    dest = tmp_path / "deploy" / "model"
    store.fetch("digits@1", dest)
    src, manifest = make_model("digits", "2", size=size)
    store.publish(src)
    return dest, manifest


# Where the cut falls: in the SDK's first request (the first 8 MiB, connection.CLIENT_SIZES), or
# while its concurrent range requests are in flight (it goes on requesting the remaining ranges).
PHASES = {"first request": (4 * MiB, 1 * MiB), "concurrent ranges": (48 * MiB, 14 * MiB)}


@pytest.mark.parametrize("phase", PHASES)
def test_a_connection_lost_mid_fetch_fails_within_30_s_and_leaves_dest(
    azurite, store, store_env, make_model, tmp_path, phase
):
    size, cut_after = PHASES[phase]
    dest, _ = publish_and_fetch_once(store, make_model, tmp_path, size)
    before = sorted(p.name for p in dest.parent.iterdir()), (dest / "model.onnx").read_bytes()
    with FaultProxy(azurite.port, cut_after=cut_after, after_cut=AfterCut.DOWN) as proxy:
        env = {**store_env, "AZURE_STORAGE_CONNECTION_STRING": via(proxy.port, azurite.connection_string)}
        proc, elapsed = cli(["fetch", "digits@2", str(dest), "--no-cache"], env)
        assert proxy.cut.is_set(), "the transfer was never cut: the test proves nothing"
    assert "Traceback" not in proc.stderr and "Incomplete download" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    where = f"http://127.0.0.1:{proxy.port}/devstoreaccount1"
    assert f"cannot reach the model store at {where} while downloading digits@2 " \
           "(the destination was left unchanged)" in proc.stderr
    assert elapsed < 30, f"a lost connection took {elapsed:.1f} s to fail"
    assert (sorted(p.name for p in dest.parent.iterdir()), (dest / "model.onnx").read_bytes()) == before


@pytest.mark.parametrize("phase", PHASES)
def test_a_stalled_transfer_fails_after_the_configured_timeout(
    azurite, store, store_env, make_model, tmp_path, phase
):
    size, cut_after = PHASES[phase]
    dest, _ = publish_and_fetch_once(store, make_model, tmp_path, size)
    with FaultProxy(azurite.port, cut_after=cut_after, after_cut=AfterCut.STALL) as proxy:
        env = {**store_env, "AZURE_STORAGE_CONNECTION_STRING": via(proxy.port, azurite.connection_string),
               "MODELSHIP_STORE_TIMEOUT": "2"}
        proc, elapsed = cli(["fetch", "digits@2", str(dest), "--no-cache"], env)
        assert proxy.cut.is_set()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert "while downloading digits@2" in proc.stderr and "up to 2 s" in proc.stderr, proc.stderr
    # The bound is 2 x 2 s; the SDK's own read timeout would have been 60 s.
    assert elapsed < 20, f"a stalled transfer took {elapsed:.1f} s to fail with --timeout 2"
    assert load_model_dir(dest).version == "1"


@pytest.mark.parametrize("phase", PHASES)
def test_a_fetch_recovers_quietly_when_the_store_comes_back_within_the_window(
    azurite, store, store_env, make_model, tmp_path, phase
):
    size, cut_after = PHASES[phase]
    dest, manifest = publish_and_fetch_once(store, make_model, tmp_path, size)
    with FaultProxy(azurite.port, cut_after=cut_after, after_cut=AfterCut.RESTART, refuse=2) as proxy:
        env = {**store_env, "AZURE_STORAGE_CONNECTION_STRING": via(proxy.port, azurite.connection_string)}
        proc, _ = cli(["fetch", "digits@2", str(dest), "--no-cache"], env)
        assert proxy.cut.is_set() and proxy.refused == 2, "the store never went away: proves nothing"
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", "a recovered fetch printed something (bare 'Incomplete download.' lines?)"
    assert "sha256" in proc.stdout and "verified" in proc.stdout
    assert load_model_dir(dest) == manifest
