"""One copy of the model per server, whatever the number of workers; a dead worker stops the server.

A 160 MiB model (the demo model plus a weight every request reads, ``training.large_model``) is
big enough that two copies could not hide in the runtime's own memory. Memory is read from the
kernel (``/proc/<pid>/smaps_rollup``, proportional set size: a page shared by n processes counts
1/n in each), so the sum over the server's processes is what the container holds. Request memory
is deterministic here: the model's intermediate tensors are 56 KiB per row (``training.large_model``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.app.modelserver_process import start_server, stop_server
from tests.app.test_http import infer_body
from training.large_model import inflate

MIB = 1024 * 1024
WEIGHT_MIB = 160


@pytest.fixture(scope="module")
def large_model(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("large") / "model"
    inflate(model_dir, out, WEIGHT_MIB, version="1.0.0")
    return out


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def _mib(pid: int, field: str = "Pss", source: str = "smaps_rollup") -> float:
    """``field`` (kB) of ``/proc/<pid>/<source>``, in MiB."""
    for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/{source}")


def _wait_for_children(pid: int, count: int) -> list[int]:
    deadline = time.monotonic() + 30
    while len(kids := _children(pid)) < count:
        assert time.monotonic() < deadline, f"{pid} has children {kids}, expected {count}"
        time.sleep(0.1)
    return kids


def test_two_workers_hold_one_copy_of_the_model(large_model: Path, tmp_path: Path) -> None:
    size_mib = (large_model / "model.onnx").stat().st_size / MIB
    server = start_server(large_model, tmp_path / "server.log", workers=2)
    try:
        workers = _wait_for_children(server.process.pid, 2)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(8):  # fresh connections reach both workers; every answer reads the weight
                answer = http.post("/v2/models/digits/infer", json=infer_body(1),
                                   headers={"connection": "close"})
                assert answer.status_code == 200, answer.text
        processes = [server.process.pid, *workers]
        total = sum(_mib(pid) for pid in processes)
        anon = sum(_mib(pid, "Pss_Anon") for pid in processes)
        load_peak = _mib(server.process.pid, "VmHWM", "status")  # the parent loaded, then only waits
    finally:
        stop_server(server)
    # One copy: the model plus the runtimes (~100 MiB for three processes). Two copies would be
    # >= 2 x 160 MiB on their own.
    assert size_mib > WEIGHT_MIB
    assert total < size_mib + 150, f"{total:.0f} MiB held for a {size_mib:.0f} MiB model: more than one copy"
    # That copy is the file's own pages, mapped: no process holds the weight in memory of its own,
    # and loading never held a copy (by path, ONNX Runtime peaks at two).
    assert anon < WEIGHT_MIB / 2, f"{anon:.0f} MiB of anonymous memory: the weight was copied"
    assert load_peak < WEIGHT_MIB / 2, f"loading peaked at {load_peak:.0f} MiB: the weight was copied"


def test_a_request_too_large_for_its_memory_is_refused_and_the_server_lives(
    large_model: Path, tmp_path: Path
) -> None:
    # 1 MiB per request: one row (56 KiB of intermediate tensors) fits, 64 rows (3.5 MiB) do not.
    server = start_server(large_model, tmp_path / "server.log", workers=2,
                          env={"MODELSHIP_REQUEST_MEMORY_MIB": "1"})
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            refused = http.post("/v2/models/digits/infer", json=infer_body(64))
            assert refused.status_code == 413, refused.text
            assert refused.json()["error"] == (
                "this request (64 rows) needs more memory than one request may use on this server "
                "(MODELSHIP_REQUEST_MEMORY_MIB=1): send fewer rows per request"
            )
            for _ in range(4):  # both workers still serve
                ok = http.post("/v2/models/digits/infer", json=infer_body(1), headers={"connection": "close"})
                assert ok.status_code == 200, ok.text
        assert server.process.poll() is None
    finally:
        stop_server(server)


def test_a_worker_killed_stops_the_server_with_its_status(large_model: Path, tmp_path: Path) -> None:
    server = start_server(large_model, tmp_path / "server.log", workers=2)
    try:
        victim = _wait_for_children(server.process.pid, 2)[0]
        os.kill(victim, signal.SIGKILL)  # what the kernel's OOM killer does
        assert server.process.wait(timeout=60) == 128 + signal.SIGKILL
    finally:
        stop_server(server)
    logs = server.logs()
    assert f"worker {victim} killed by SIGKILL" in logs and "out-of-memory killer" in logs


def test_the_large_variant_answers_exactly_like_its_source(model_dir: Path, large_model: Path) -> None:
    import numpy as np
    from sklearn.datasets import load_digits

    from modelserver.predictor import Predictor

    rows = {"input": load_digits().data[:32].astype(np.float32)}
    small, large = Predictor(model_dir), Predictor(large_model)
    small.load()
    large.load()
    a, b = small.predict(rows), large.predict(rows)
    assert (a["label"] == b["label"]).all() and np.array_equal(a["probabilities"], b["probabilities"])
    assert large.manifest.size > WEIGHT_MIB * MIB > 1000 * small.manifest.size
