"""Inference server benchmark: modelship vs MLServer vs the in-process ONNX Runtime ceiling, in one run.

    .venv/bin/python benchmarks/bench_server.py [--duration 5] [--workers 2] [--write-readme]
        [--baseline-app DIR]

Trains the demo model (ONNX for us, the same fitted sklearn model for MLServer), starts each server
on 127.0.0.1, and drives it with ``wrk`` (Debian package; a Lua script sends the POST body) at
concurrency 1, 8 and 32 with batches of 1 and 64 rows. MLServer (``mlserver`` + ``mlserver-sklearn``)
runs from its own venv, ``benchmarks/.venv-mlserver``, created from ``requirements-mlserver.txt`` if
missing; it is asked for both outputs (``predict`` + ``predict_proba``), as our server returns label and
probabilities. The ceiling is ``Predictor.predict`` on ready numpy arrays in this process: no HTTP, no
JSON. Any non-2xx response aborts the run. Load generator and servers share the same 2 cores.
``--baseline-app DIR`` also runs the modelserver package found in DIR (for example an older
checkout's ``app/``, from ``git archive <rev> app/modelserver | tar -x -C /tmp/base``) side by side,
to measure a change of the server against the code before it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

from modelserver.predictor import Predictor  # noqa: E402
from training.train_digits import train  # noqa: E402

MLSERVER_VENV = ROOT / "benchmarks" / ".venv-mlserver"
MLSERVER_REQS = ROOT / "benchmarks" / "requirements-mlserver.txt"
README = ROOT / "benchmarks" / "README.md"
BEGIN, END = "<!-- bench_server:begin -->", "<!-- bench_server:end -->"
CONCURRENCY = (1, 8, 32)
BATCHES = (1, 64)
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY"), "r"); wrk.body = f:read("*a"); f:close()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_mlserver() -> Path:
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    if not mlserver.exists():
        print(f"creating {MLSERVER_VENV} from {MLSERVER_REQS.name} (one-off, ~1-2 min)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        subprocess.run(
            [str(MLSERVER_VENV / "bin" / "pip"), "install", "-q", "-r", str(MLSERVER_REQS)], check=True
        )
    return mlserver


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wrk(url: str, body: Path, lua: Path, concurrency: int, duration: int) -> dict[str, float]:
    threads = 1 if concurrency == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(lua), url],
        capture_output=True,
        text=True,
        env={**os.environ, "BODY": str(body)},
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors against {url}:\n{out}")

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"rps": rps, "p50": ms("50%"), "p99": ms("99%")}


def ceiling(model_dir: Path, data: np.ndarray, seconds: float = 2.0) -> dict[int, dict[str, float]]:
    predictor = Predictor(model_dir)
    predictor.load()
    results = {}
    for batch in BATCHES:
        x = {"input": np.ascontiguousarray(data[:batch], dtype=np.float32)}
        for _ in range(200):
            predictor.predict(x)
        times = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            predictor.predict(x)
            times.append(time.perf_counter() - start)
        arr = np.array(times) * 1000
        results[batch] = {
            "rps": len(times) / arr.sum() * 1000,
            "p50": float(np.percentile(arr, 50)),
            "p99": float(np.percentile(arr, 99)),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers for modelship (default 2)")
    parser.add_argument(
        "--write-readme", action="store_true", help="write the table into benchmarks/README.md"
    )
    parser.add_argument(
        "--baseline-app", type=Path, default=None,
        help="directory holding another modelserver package to measure side by side (e.g. an old app/)",
    )
    args = parser.parse_args(argv)
    if args.baseline_app and not (args.baseline_app / "modelserver" / "__main__.py").is_file():
        raise SystemExit(f"--baseline-app {args.baseline_app}: no modelserver package there")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    mlserver = ensure_mlserver()

    from sklearn.datasets import load_digits

    digits = load_digits().data
    work = Path(tempfile.mkdtemp(prefix="modelship-bench-"))
    try:
        onnx_dir, sk_dir = work / "onnx", work / "sklearn" / "digits"
        manifest = train(onnx_dir, "digits", "1.0.0", "bench", sklearn_out=sk_dir)
        lua = work / "post.lua"
        lua.write_text(LUA)
        bodies: dict[tuple[str, int], Path] = {}
        for batch in BATCHES:
            tensor = {
                "name": "input",
                "shape": [batch, 64],
                "datatype": "FP32",
                "data": digits[:batch].ravel().tolist(),
            }
            for server, extra in (
                ("modelship", {}),
                ("baseline", {}),
                ("mlserver", {"outputs": [{"name": "predict"}, {"name": "predict_proba"}]}),
            ):
                path = work / f"{server}-{batch}.json"
                path.write_text(json.dumps({"inputs": [tensor], **extra}))
                bodies[(server, batch)] = path

        results: dict[tuple[str, int, int], dict[str, float]] = {}
        servers = []
        port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "app"), str(ROOT)]),
               "MODELSHIP_LOG_LEVEL": "info"}
        servers.append(
            (
                "modelship",
                [
                    sys.executable,
                    "-m",
                    "modelserver",
                    "--model-dir",
                    str(onnx_dir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    str(args.workers),
                ],
                env,
                port,
                "/v2/models/digits/infer",
            )
        )
        if args.baseline_app:
            base_port = free_port()
            base_env = {**env, "PYTHONPATH": str(args.baseline_app.resolve())}
            command = [*servers[0][1][:-4], "--port", str(base_port), "--workers", str(args.workers)]
            servers.append(("baseline", command, base_env, base_port, "/v2/models/digits/infer"))
        ml_port = free_port()
        (work / "sklearn" / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "http_port": ml_port,
                    "grpc_port": free_port(),
                    "metrics_port": free_port(),
                }
            )
        )
        ml_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        servers.append(
            (
                "mlserver",
                [str(mlserver), "start", str(work / "sklearn")],
                ml_env,
                ml_port,
                "/v2/models/digits/infer",
            )
        )
        # Both servers run side by side and the cells alternate between them, so background load on
        # the machine hits both alike.
        processes = []
        try:
            for name, command, server_env, server_port, path in servers:
                log = work / f"{name}.log"
                with open(log, "wb") as fh:
                    process = subprocess.Popen(
                        command, stdout=fh, stderr=subprocess.STDOUT, env=server_env, cwd=work
                    )
                processes.append(process)
                base = f"http://127.0.0.1:{server_port}"
                wait_ready(f"{base}/v2/models/digits/ready", process, log)
                for batch in BATCHES:
                    check = httpx.post(
                        base + path,
                        content=bodies[(name, batch)].read_bytes(),
                        headers={"content-type": "application/json"},
                        timeout=10,
                    )
                    check.raise_for_status()
            for batch in BATCHES:
                for concurrency in CONCURRENCY:
                    for name, _, _, server_port, path in servers:
                        url = f"http://127.0.0.1:{server_port}{path}"
                        print(
                            f"{name:9s} batch {batch:2d} concurrency {concurrency:2d} ...",
                            end=" ",
                            flush=True,
                        )
                        r = wrk(url, bodies[(name, batch)], lua, concurrency, args.duration)
                        results[(name, batch, concurrency)] = r
                        print(
                            f"{r['rps']:8.0f} req/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms",
                            flush=True,
                        )
        finally:
            for process in processes:
                stop(process)
        print("in-process ONNX Runtime ceiling ...", flush=True)
        ceil = ceiling(onnx_dir, digits)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        f"Model: `{manifest.ref}` ({manifest.size} B ONNX; MLServer serves the same fitted sklearn model). "
        f"wrk {args.duration} s per cell; modelship with {args.workers} uvicorn workers, access log on; "
        "MLServer 1.7.1 with its default settings.",
        "",
        "| batch | conc. | modelship req/s | p50 ms | p99 ms | MLServer req/s | p50 ms | p99 ms | "
        "throughput ratio | p99 ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in BATCHES:
        for c in CONCURRENCY:
            ours, theirs = results[("modelship", batch, c)], results[("mlserver", batch, c)]
            lines.append(
                f"| {batch} | {c} | {ours['rps']:.0f} | {ours['p50']:.2f} | {ours['p99']:.2f} | "
                f"{theirs['rps']:.0f} | {theirs['p50']:.2f} | {theirs['p99']:.2f} | "
                f"{ours['rps'] / theirs['rps']:.2f}x | {theirs['p99'] / ours['p99']:.2f}x lower |"
            )
    lines += [
        "",
        "In-process ONNX Runtime ceiling (one thread, numpy in, no HTTP/JSON):",
        "",
        "| batch | calls/s | rows/s | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    for batch in BATCHES:
        c = ceil[batch]
        lines.append(
            f"| {batch} | {c['rps']:.0f} | {c['rps'] * batch:.0f} | {c['p50']:.3f} | {c['p99']:.3f} |"
        )
    ours, theirs = results[("modelship", 1, 32)], results[("mlserver", 1, 32)]
    ratio = ours["rps"] / theirs["rps"]
    met = ratio >= 2 and ours["p99"] < theirs["p99"]
    lines += [
        "",
        f"Target (concurrency 32, batch 1: >= 2x MLServer throughput, lower p99): "
        f"{ratio:.2f}x throughput, p99 {ours['p99']:.2f} vs {theirs['p99']:.2f} ms -> "
        f"{'MET' if met else 'NOT MET'}.",
    ]
    if args.baseline_app:
        lines += [
            "",
            f"modelship against the baseline server code in `{args.baseline_app}` (same run, same cells):",
            "",
            "| batch | conc. | modelship req/s | p99 ms | baseline req/s | p99 ms | throughput ratio |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for batch in BATCHES:
            for c in CONCURRENCY:
                ours, base = results[("modelship", batch, c)], results[("baseline", batch, c)]
                lines.append(
                    f"| {batch} | {c} | {ours['rps']:.0f} | {ours['p99']:.2f} | {base['rps']:.0f} | "
                    f"{base['p99']:.2f} | {ours['rps'] / base['rps']:.2f}x |"
                )
    table = "\n".join(lines)
    print("\n" + table)
    if args.write_readme:
        text = README.read_text() if README.exists() else "# Benchmarks\n"
        block = f"{BEGIN}\n{table}\n{END}"
        if BEGIN in text:
            text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
        else:
            text = text.rstrip() + "\n\n## Inference server (`bench_server.py`)\n\n" + block + "\n"
        README.write_text(text)
        print(f"wrote the table into {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
