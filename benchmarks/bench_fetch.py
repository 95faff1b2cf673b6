"""Model-store fetch vs the SDK's own downloads of the same blob, against Azurite.

Starts its own Azurite on a free 127.0.0.1 port, publishes one model of ``--size-mib``, then times,
side by side in one run, each in a fresh interpreter (so peak RSS and CPU time are per method),
each round starting with another method. CPU time (user + system of the client process) barely
moves when other work loads the machine; wall time does:

- ``sdk readall``:  ``download_blob(max_concurrency=1).readall()``, hash, write to disk
- ``sdk readinto``: ``download_blob(max_concurrency=1).readinto(file)``, then hash the file
- ``sdk readinto x4``: ``download_blob(max_concurrency=4).readinto(file)``, then hash the file: the
  SDK's best path, the strongest fair baseline (fetch adds verification, atomic swap and the cache);
  once with the SDK's default sizes (32 MiB first request, 4 MiB ranges) and once with the store's
  (8 MiB both); "vs SDK x4" is against the faster of the two
- ``fetch (cold)``: ``ModelStore.fetch`` with no cache: the same SDK call writing through the
  in-order hasher, then the signature check, fsync and the atomic swap
- ``fetch (cold), hash after``: the same fetch with the download swapped for ``readinto(file)`` and
  a second pass hashing the file (the alternative to hashing in order while the ranges land)
- ``fetch (cache hit)``: the same fetch again with a warm cache

    .venv/bin/python benchmarks/bench_fetch.py [--size-mib 200] [--repeat 3] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "app")]

from delivery.azurite import Azurite  # noqa: E402
from modelship_contract.manifest import Datatype, ModelManifest, TensorSpec, sha256_file  # noqa: E402
from modelstore.store import ModelStore  # noqa: E402

CONTAINER = "bench"

# Each run: a fresh interpreter; VmHWM is reset after the imports so "growth" is the transfer's own.
RUNNER = r"""
import hashlib, json, os, resource, sys, time
from pathlib import Path

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

method, blob_name, out, cache, conc = sys.argv[1:6]
from azure.storage.blob import BlobServiceClient
from modelstore.store import ModelStore
cs = os.environ["AZURE_STORAGE_CONNECTION_STRING"]
from modelstore.connection import CLIENT_SIZES
sizes = CLIENT_SIZES if method.endswith("-8mib") else {}  # the store's client sizes, or the SDK's defaults
container = BlobServiceClient.from_connection_string(cs, **sizes).get_container_client(
    os.environ["BENCH_CONTAINER"])
blob = container.get_blob_client(blob_name)
store = ModelStore.from_connection_string(cs, os.environ["BENCH_CONTAINER"], progress=False,
                                          concurrency=int(conc))
if method == "fetch-hash-after":
    from azure.core import MatchConditions
    from modelstore import transfer

    def download(blob, size, etag, target, *, concurrency, bar):
        with open(target, "wb") as fh:
            blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified,
                               max_concurrency=concurrency, progress_hook=bar.hook).readinto(fh)
            fh.flush()
            os.fsync(fh.fileno())
        h = hashlib.sha256()
        with open(target, "rb") as fh:
            while b := fh.read(1 << 20):
                h.update(b)
        return h.hexdigest()

    transfer.download = download
blob.get_blob_properties(); store.latest("bench")  # open connections before measuring
# Imports are not measured for any method: model-signing's alone takes ~1 s, once per process.
import model_signing.verifying  # noqa: E402,F401
Path("/proc/self/clear_refs").write_text("5")
base = hwm()
t0, c0 = time.perf_counter(), cpu()
transferred = 0
if method == "sdk-readall":
    data = blob.download_blob(max_concurrency=1).readall()
    digest = hashlib.sha256(data).hexdigest()
    Path(out).write_bytes(data)
    transferred = len(data)
elif method.startswith("sdk-readinto"):
    with open(out, "wb") as fh:
        transferred = blob.download_blob(max_concurrency=4 if "-4" in method else 1).readinto(fh)
    h = hashlib.sha256()
    with open(out, "rb") as fh:
        while b := fh.read(1 << 20):
            h.update(b)
    digest = h.hexdigest()
else:
    r = store.fetch("bench@1", Path(out), cache_dir=Path(cache) if cache != "-" else None)
    digest, transferred = r.manifest.sha256, r.bytes_transferred
seconds, cpu_s = time.perf_counter() - t0, cpu() - c0
print(json.dumps({"seconds": seconds, "cpu": cpu_s, "growth": hwm() - base, "bytes": transferred,
                  "sha256": digest}))
"""


def make_model(path: Path, size: int) -> ModelManifest:
    path.mkdir(parents=True)
    block = os.urandom(1 << 20)
    with open(path / "model.onnx", "wb") as fh:
        for i in range(0, size, 1 << 20):
            fh.write((i.to_bytes(8, "big") + block[8:])[: size - i])
    m = ModelManifest(
        name="bench", version="1", model_file="model.onnx", sha256=sha256_file(path / "model.onnx"),
        size=size, framework="onnx", inputs=(TensorSpec("x", Datatype.FP32, (-1, 1)),),
        outputs=(TensorSpec("y", Datatype.FP32, (-1, 1)),), created_at="2025-01-01T00:00:00Z",
        source_revision="bench",
    )
    (path / "manifest.json").write_text(m.to_json())
    return m


def run(method: str, work: Path, env: dict[str, str], conc: int, cache: str) -> dict:
    out = work / f"out-{method}"
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, method, "bench/1/model.onnx", str(out), cache, str(conc)],
        env=env, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr}")
    shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
    return json.loads(proc.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=ModelStore.__init__.__kwdefaults__["concurrency"])
    args = ap.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp, Azurite() as az:
        work = Path(tmp)
        print(f"Azurite {az.blob_endpoint}; publishing a {args.size_mib} MiB model ...", file=sys.stderr)
        m = make_model(work / "src", size)
        t0 = time.perf_counter()
        publisher = ModelStore.from_connection_string(az.connection_string, CONTAINER, progress=False)
        publisher.publish(work / "src")
        publish_s = time.perf_counter() - t0
        shutil.rmtree(work / "src")
        env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": az.connection_string,
               "BENCH_CONTAINER": CONTAINER, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'app'}"}
        cache = work / "cache"
        results: dict[str, list[dict]] = {}
        methods = ["sdk-readall", "sdk-readinto", "sdk-readinto-4", "sdk-readinto-4-8mib", "fetch-cold",
                   "fetch-hash-after"]
        for r in range(args.repeat):
            # Each round starts with another method, so none always runs first (or last) in a round.
            for method in methods[r % len(methods):] + methods[:r % len(methods)]:
                results.setdefault(method, []).append(run(method, work, env, args.concurrency, "-"))
            shutil.rmtree(cache, ignore_errors=True)
            run("fetch-fill-cache", work, env, args.concurrency, str(cache))
            results.setdefault("fetch-cache-hit", []).append(
                run("fetch-cache-hit", work, env, args.concurrency, str(cache)))
    for method, runs in results.items():
        bad = [r for r in runs if r["sha256"] != m.sha256]
        if bad:
            raise SystemExit(f"{method}: wrong sha256 {bad[0]['sha256']}")

    base = statistics.median(r["seconds"] for r in results["sdk-readall"])
    # The strongest SDK baseline: the faster of its x4 download with its default sizes or the store's.
    best = min(statistics.median(r["seconds"] for r in results[k])
               for k in ("sdk-readinto-4", "sdk-readinto-4-8mib"))
    labels = {"sdk-readall": "download_blob().readall() (1 stream)",
              "sdk-readinto": "download_blob().readinto(file) (1 stream)",
              "sdk-readinto-4": "download_blob(max_concurrency=4).readinto(file)",
              "sdk-readinto-4-8mib": "  the same, store's client sizes (8 MiB ranges)",
              "fetch-cold": f"modelstore fetch, cold (SDK x{args.concurrency}, hashed in order)",
              "fetch-hash-after": f"modelstore fetch, cold (SDK x{args.concurrency}, hash after)",
              "fetch-cache-hit": "modelstore fetch, cache hit"}
    print(f"# {args.size_mib} MiB blob on Azurite, median of {args.repeat}; publish took {publish_s:.2f} s; "
          f"{os.cpu_count()} CPUs")
    print(f"{'method':<52} {'time s':>7} {'MiB/s':>8} {'vs readall':>10} {'vs SDK x4':>9} {'CPU s':>6} "
          f"{'peak RSS +MiB':>13} {'bytes moved':>12}")
    for method in [*methods, "fetch-cache-hit"]:
        runs = results[method]
        secs = statistics.median(r["seconds"] for r in runs)
        cpu_s = statistics.median(r["cpu"] for r in runs)
        growth = max(r["growth"] for r in runs) / (1 << 20)
        moved = runs[-1]["bytes"]
        print(f"{labels[method]:<52} {secs:7.2f} {args.size_mib / secs:8.0f} {base / secs:9.2f}x "
              f"{best / secs:8.2f}x {cpu_s:6.2f} {growth:13.0f} {moved:12d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
