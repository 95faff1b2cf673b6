"""The server's request path in process: this checkout's modelserver against another copy, side by side.

    .venv/bin/python benchmarks/bench_request_path.py --baseline-app DIR [--rounds 7]

DIR holds another ``modelserver`` package (for example the code before a change:
``git archive <rev> app/modelserver | tar -x -C /tmp/base`` then ``--baseline-app /tmp/base/app``).
Each round runs one fresh process per copy, alternating, that sends infer requests for the demo
model straight into the ASGI app (request-id middleware, routes, data plane, protocol, predictor,
ONNX Runtime; no sockets, no wrk) and reports requests per second of CPU time, so other work on a
busy machine barely moves the figures. ``bench_server.py`` measures the whole server over HTTP.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

CHILD = r'''
import asyncio, json, logging, sys, time
app_dir, model_dir, batch, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, app_dir)
import modelserver
assert modelserver.__file__.startswith(app_dir), modelserver.__file__
from modelserver.http import create_app
from modelserver.predictor import Predictor
from modelserver.settings import Settings
from sklearn.datasets import load_digits

logging.disable(logging.CRITICAL)
predictor = Predictor(model_dir)
predictor.load()
app = create_app(Settings(model_dir=model_dir), predictor)
data = load_digits().data[:batch].ravel().tolist()
tensor = {"name": "input", "shape": [batch, 64], "datatype": "FP32", "data": data}
body = json.dumps({"inputs": [tensor]}).encode()
path = "/v2/models/digits/infer"
scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "root_path": "",
         "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
         "query_string": b"", "http_version": "1.1", "scheme": "http", "server": ("x", 80),
         "client": ("y", 1)}

async def receive():
    return {"type": "http.request", "body": body, "more_body": False}

async def one():
    status = []
    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])
    await app(dict(scope), receive, send)
    if status != [200]:
        raise SystemExit(f"status {status}")

async def main():
    for _ in range(200):
        await one()
    start = time.process_time()
    for _ in range(n):
        await one()
    return n / (time.process_time() - start)

print(round(asyncio.run(main())))
'''


def run(app_dir: Path, model_dir: Path, batch: int, requests: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(app_dir), str(model_dir), str(batch), str(requests)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"request path run for {app_dir} failed:\n{out.stderr[-3000:]}")
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-app", type=Path, required=True,
                        help="directory holding the other modelserver package")
    parser.add_argument("--rounds", type=int, default=7, help="alternating runs per copy (default 7)")
    args = parser.parse_args(argv)
    baseline = args.baseline_app.resolve()
    if not (baseline / "modelserver" / "__main__.py").is_file():
        raise SystemExit(f"--baseline-app {baseline}: no modelserver package there")
    from training.train_digits import train

    print("| batch | requests | this checkout req/s (best, median) | baseline req/s (best, median) "
          "| ratio (best) |")
    print("|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="modelship-bench-path-") as work:
        model_dir = Path(work) / "model"
        train(model_dir, "digits", "1.0.0", "bench")
        for batch, requests in ((1, 3000), (64, 1500)):
            ours, theirs = [], []
            for _ in range(args.rounds):
                theirs.append(run(baseline, model_dir, batch, requests))
                ours.append(run(ROOT / "app", model_dir, batch, requests))
            ours.sort()
            theirs.sort()
            print(f"| {batch} | {requests} | {ours[-1]:.0f}, {ours[len(ours) // 2]:.0f} | "
                  f"{theirs[-1]:.0f}, {theirs[len(theirs) // 2]:.0f} | {ours[-1] / theirs[-1]:.3f}x |",
                  flush=True)
    print("requests per second of CPU time; one process per run; the ASGI app called in process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
