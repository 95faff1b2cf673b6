"""Framework overhead: the same V2-shaped JSON endpoint on raw ASGI, Starlette and FastAPI, one run.

    benchmarks/.venv-mlserver/bin/python benchmarks/bench_frameworks.py [--duration 5]

Runs in the MLServer venv because it already has FastAPI (which MLServer is built on), Starlette,
uvicorn, uvloop, httptools and orjson. Each app parses a batch-1 V2 request body with orjson and
returns a fixed V2 response: no model, so the figures are the framework's cost alone. One uvicorn
worker each, wrk at concurrency 32 for ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

APPS = r"""
import orjson
RESPONSE = orjson.dumps({"model_name": "digits", "model_version": "1", "outputs": [
    {"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}]})

async def raw(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    orjson.loads(body)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": RESPONSE})

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def infer(request):
    orjson.loads(await request.body())
    return Response(RESPONSE, media_type="application/json")

starlette_app = Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"])])

from fastapi import FastAPI, Request as FRequest
fastapi_app = FastAPI()

@fastapi_app.post("/v2/models/{name}/infer")
async def fastapi_infer(name: str, request: FRequest):
    orjson.loads(await request.body())
    return Response(RESPONSE, media_type="application/json")
"""
LUA = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = os.getenv("BODY")\n'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelship-fw-"))
    (work / "apps.py").write_text(APPS)
    (work / "post.lua").write_text(LUA)
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [1.0] * 64}]}
    )
    print("| framework | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|")
    for label, target in (
        ("raw ASGI", "apps:raw"),
        ("Starlette", "apps:starlette_app"),
        ("FastAPI", "apps:fastapi_app"),
    ):
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                target,
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=work,
        )
        try:
            url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
            for _ in range(100):
                try:
                    urllib.request.urlopen(urllib.request.Request(url, data=body.encode()), timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            out = subprocess.run(
                ["wrk", "-t2", "-c32", f"-d{args.duration}s", "--latency", "-s", str(work / "post.lua"), url],
                capture_output=True,
                text=True,
                env={**os.environ, "BODY": body},
                check=True,
            ).stdout

            def ms(p: str, out: str = out) -> float:
                v, u = re.search(rf"^\s+{p}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
                return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]

            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            print(f"| {label} | {rps:.0f} | {ms('50%'):.2f} | {ms('99%'):.2f} |", flush=True)
        finally:
            proc.terminate()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
