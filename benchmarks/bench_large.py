"""Large-model benchmark: the whole local flow with a 1 GiB model, figures against the issue's targets.

    .venv/bin/python benchmarks/bench_large.py [--mib 1024] [--write-readme]
    .venv/bin/python benchmarks/bench_large.py --verify-only [--mib 200] [--repeat 3]

``--verify-only`` measures only what reads the model's bytes, without Docker: the server's start-up
verification (signature, size and sha256, then the session) and a cache-hit fetch, this code against
the previous commits' code (``git archive``), each run in a fresh interpreter, rounds alternating
the order; wall and CPU seconds, medians (see ``verify_figures``).

Generates the model from the demo model (``training.large_model``: the digits classifier plus a
weight of ``--mib`` MiB that every request reads), then, on an isolated deployment (its own state
directory, Azurite, registry, front door port and container names, so a `make up` deployment is
untouched), with the default settings (memory and start-up budget derived from the model):

1. publish -> serving: ``make publish MODEL_DIR=...`` then ``make up`` (fetch, build, test, push, run);
2. the serving container's memory against the model size, idle and under load (two clients sending
   the canary's 50-row batch): the cgroup's working set (``memory.usage_in_bytes`` minus inactive
   file pages, as ``docker stats`` and the kubelet count it) and its peak, and the sum of the
   proportional set sizes of the container's processes (``smaps_rollup``: weights mapped by
   several processes count once). The target is judged on the larger of the two: the cgroup
   omits file pages first read by another container (the pre-push test's), the Pss sum does not;
3. a code-only release (default settings: the model is the live one, so no canary), and with
   ``--canary-always`` a second one with the canary forced: time, bytes added to the registry,
   build context sent;
4. a cache-hit fetch of the model;
5. the baseline, side by side in the same run: the previous server design (ONNX Runtime opens the
   model by path, default arena: the weights copied into the process) against this one, each in a
   fresh process tree of a parent and two forked workers serving the same requests.

Ends with ``down --purge`` (build cache kept) and prints one table; ``--write-readme`` records it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

from components import sizing  # noqa: E402
from delivery import cli, engine, model  # noqa: E402
from delivery.canary import TRAFFIC_ROWS  # noqa: E402
from delivery.services import free_port  # noqa: E402
from delivery.settings import DeliveryError, LocalSettings  # noqa: E402
from training.large_model import inflate  # noqa: E402
from training.train_digits import train  # noqa: E402

README = ROOT / "benchmarks" / "README.md"
BEGIN, END = "<!-- bench_large:begin -->", "<!-- bench_large:end -->"
_CONTEXT_RE = re.compile(r"transferring context: ([0-9.]+)([kMG]?B)")
_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def met(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class _Stamped(io.StringIO):
    """Captured output with each line's time since the start (where a release spends its time)."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.at_line_start = time.monotonic(), True

    def write(self, text: str) -> int:
        for part in text.splitlines(keepends=True):
            if self.at_line_start:
                super().write(f"[{time.monotonic() - self.started:6.1f} s] ")
            super().write(part)
            self.at_line_start = part.endswith("\n")
        return len(text)


def timed_up(settings: LocalSettings) -> tuple[float, dict, int]:
    """``up`` with its output captured: seconds, record, bytes of build context sent."""
    out = _Stamped()
    started = time.monotonic()
    with contextlib.redirect_stdout(out):
        record = cli.up(settings, echo=True)
    seconds = time.monotonic() - started
    sys.stderr.write(out.getvalue())  # its step timings, in the run's log
    # BuildKit repeats the line as the transfer progresses (cumulative): the last, largest one counts.
    sent = max((float(n) * _UNITS[u] for n, u in _CONTEXT_RE.findall(out.getvalue())), default=0)
    return seconds, record, int(sent)


def _cgroup(name: str) -> Path:
    cid = engine.container_state(name)["Id"]
    v1 = Path(f"/sys/fs/cgroup/memory/docker/{cid}")
    if v1.exists():
        return v1
    v2 = next(Path("/sys/fs/cgroup").glob(f"**/docker-{cid}.scope"), None)
    return v2 or Path(f"/sys/fs/cgroup/docker/{cid}")


def container_memory(name: str) -> tuple[int, int]:
    """(working set, peak) in bytes of a running container, from its memory cgroup (v1 or v2)."""
    cg = _cgroup(name)
    stat = dict(line.split() for line in (cg / "memory.stat").read_text().splitlines())
    if (cg / "memory.usage_in_bytes").exists():
        usage = int((cg / "memory.usage_in_bytes").read_text())
        return usage - int(stat["total_inactive_file"]), int((cg / "memory.max_usage_in_bytes").read_text())
    usage = int((cg / "memory.current").read_text())
    peak_file = cg / "memory.peak"
    return usage - int(stat["inactive_file"]), int(peak_file.read_text()) if peak_file.exists() else 0


def _smaps(pid: int | str) -> dict[str, int]:
    """Pss, Pss_Anon, Pss_File of a process in bytes (0 for a process that is gone)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in lines[1:])}


def container_pss(name: str) -> tuple[int, int]:
    """(Pss, anonymous Pss) in bytes summed over the container's processes."""
    pids = (_cgroup(name) / "cgroup.procs").read_text().split()
    rollups = [_smaps(pid) for pid in pids]
    return sum(r.get("Pss", 0) for r in rollups), sum(r.get("Pss_Anon", 0) for r in rollups)


def canary_batch() -> bytes:
    """The canary's own request (``delivery.canary``: the first 50 digits images): the same label mix
    on the stable side as the canary's traffic brings to both sides, or its drift check would see
    this load's labels in the stable version's window."""
    from sklearn.datasets import load_digits

    rows = load_digits().data[:TRAFFIC_ROWS]
    return json.dumps({"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                                   "data": rows.ravel().tolist()}]}).encode()


def under_load(url: str, seconds: float, sample) -> tuple[int, int, list]:
    """Two clients post the canary's batch ``seconds`` long, ``sample()`` polled: answers, errors, samples."""
    done, counts, samples = time.monotonic() + seconds, {"ok": 0, "errors": 0}, []
    body = canary_batch()

    def client() -> None:
        while time.monotonic() < done:
            request = urllib.request.Request(url, body, {"content-type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    answer.read()
                counts["ok"] += 1
            except OSError:
                counts["errors"] += 1

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    while time.monotonic() < done:
        samples.append(sample())
        time.sleep(0.2)
    for t in threads:
        t.join()
    return counts["ok"], counts["errors"], samples


BASELINE = r"""
import os, sys, time, json
import numpy as np, onnxruntime as ort
mode, model_dir = sys.argv[1], sys.argv[2]
def rollup(pid):
    return {k: int(v.split()[0]) * 1024 for k, v in
            (l.split(":", 1) for l in open(f"/proc/{pid}/smaps_rollup").read().splitlines()[1:])}
sys.path.insert(0, sys.argv[3])
from modelserver.predictor import Predictor  # both import the same modules: the same runtime
if mode == "previous":   # the server before: by path, ONNX Runtime's default arena, prepacking on
    o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
    s = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), sess_options=o,
                             providers=["CPUExecutionProvider"])
    run = lambda x: s.run(None, x)
else:                    # this one
    p = Predictor(model_dir); p.load()
    run = lambda x: p.predict(x)
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024
x = {"input": (np.arange(50 * 64, dtype=np.float32).reshape(50, 64) % 17)}
kids = []
for _ in range(2):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for _ in range(10):
            run(x)
        os.write(w, b"x"); time.sleep(60); os._exit(0)
    kids.append((pid, r))
for pid, r in kids:
    os.read(r, 1)
procs = [os.getpid()] + [pid for pid, _ in kids]
rolls = [rollup(p) for p in procs]
print(json.dumps({"load_peak": peak, "pss": sum(r["Pss"] for r in rolls),
                  "anon": sum(r["Pss_Anon"] for r in rolls)}))
for pid, _ in kids:
    os.kill(pid, 9)
"""


def baseline(mode: str, model_dir: Path) -> dict:
    """Load peak and steady memory of a parent + two forked workers after 10 batches of 50 rows each."""
    out = subprocess.run([sys.executable, "-c", BASELINE, mode, str(model_dir), str(ROOT / "app")],
                         capture_output=True, text=True, timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


BEFORE_ONE_PASS = "bb73bfe"
"""main before one read per start and per cache hit: the server ran model-signing's verify (a full read)
then hashed the file again for the manifest; a cache hit reused a recorded signature verdict."""
BEFORE_MEMO = "b0739e8"
"""main before that verdict memo (43675e6): a cache hit re-read the file for model-signing."""

VERIFY_RUNNER = r"""
import json, os, resource, statistics, sys, time
code, mode = sys.argv[1], sys.argv[2]
sys.path[:0] = [code, os.path.join(code, "app")]
import model_signing.verifying, model_signing.hashing, onnxruntime  # imports are not what is timed
from modelserver.predictor import Predictor
from modelship_contract.signature import verify
from modelstore.store import ModelStore
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
if mode.startswith("fetch"):
    cs, container, ref, dest, cache, trust = sys.argv[3:9]
    store = ModelStore.from_connection_string(cs, container, progress=False, trusted_keys=trust)
c0, t0 = cpu(), time.perf_counter()
if mode == "start-two-passes":   # the previous __main__: model-signing's verify, then the predictor's load
    model_dir, trust = sys.argv[3:5]
    verify(model_dir, trust)
    Predictor(model_dir).load()
elif mode == "start":            # this code: one pass in the predictor's load
    model_dir, trust = sys.argv[3:5]
    Predictor(model_dir, trust_dir=trust).load()
else:
    hit = store.fetch(ref, dest, cache_dir=cache)
    assert hit.cache_hit and hit.bytes_transferred == 0, hit
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu() - c0}))
"""


def _code_at(rev: str, out: Path) -> Path:
    """The server, store and contract packages as they were at ``rev`` (``git archive``)."""
    out.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "modelstore", "modelship_contract",
                              "app/modelserver"], capture_output=True, check=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True, timeout=60)
    return out


def _run_verify(code: Path, mode: str, *args: object) -> dict:
    out = subprocess.run([sys.executable, "-c", VERIFY_RUNNER, str(code), mode, *map(str, args)],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(f"{mode} ({code}) failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def verify_figures(mib: int, repeat: int) -> list[tuple[str, str, str]]:
    """Start-up verification and cache-hit fetch of a ``mib`` MiB signed model: before vs now.

    The model is published (signed) to a private Azurite and fetched once into a cache. Each variant
    then gets its own cache directory holding a hard link to that cached file and a copy of its
    stamp (the stamp names the inode, so it stays valid), and one untimed hit (the memo variant
    records its verdict there). Every timed run is a fresh interpreter; each round runs the variants
    in another order. The file stays in the page cache throughout (the host has the memory): the
    figures are hashing and checking, not disk reads. CPU seconds barely move with the machine's
    load, wall seconds do: the load average is printed with them.
    """
    import statistics

    from delivery.azurite import Azurite
    from modelstore import signing
    from modelstore.store import ModelStore

    rows: list[tuple[str, str, str]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp, Azurite() as az:
        base = Path(tmp)
        keys = signing.ensure_key(base / "keys")
        train(base / "digits", "digits", "1.0.0", source_revision="bench")
        manifest = inflate(base / "digits", base / "large", mib, version="2.0.0")
        store = ModelStore.from_connection_string(az.connection_string, "bench", progress=False,
                                                  signing_key=keys.private_key, trusted_keys=keys.trusted_dir)
        store.publish(base / "large")
        warm = base / "cache-warm"
        model_dir = base / "served"
        store.fetch(manifest.ref, model_dir, cache_dir=warm)  # a download: cache filled and stamped
        cached = warm / "sha256" / manifest.sha256
        stamp = json.loads(cached.with_name(f"{cached.name}.verified").read_text())
        codes = {"now": ROOT, "before": _code_at(BEFORE_ONE_PASS, base / "code-before"),
                 "before-memo": _code_at(BEFORE_MEMO, base / "code-before-memo")}
        fetches = {
            f"cache-hit fetch, {BEFORE_MEMO} (a hit re-read the file for model-signing)": "before-memo",
            f"cache-hit fetch, {BEFORE_ONE_PASS} (a hit reused a recorded signature verdict)": "before",
            "cache-hit fetch, now (model-signing checks the signature against the stamp's digest)": "now",
        }
        starts = {
            f"start-up verify + load, {BEFORE_ONE_PASS} (model-signing's read, then the manifest's sha256)":
                ("before", "start-two-passes"),
            "start-up verify + load, now (one read: signature and sha256 from one pass)": ("now", "start"),
        }
        caches = {}
        for label, code in fetches.items():
            cache = base / f"cache-{code}" / "sha256"
            cache.mkdir(parents=True)
            os.link(cached, cache / cached.name)
            (cache / f"{cached.name}.verified").write_text(json.dumps(
                {k: stamp[k] for k in ("sha256", "size", "mtime_ns", "inode", "device")}))
            caches[label] = cache.parent
            _run_verify(codes[code], "fetch", az.connection_string, "bench", manifest.ref,
                        base / f"dest-{code}", cache.parent, keys.trusted_dir)  # untimed first hit
        runs: dict[str, list[dict]] = {label: [] for label in [*starts, *fetches]}
        for round_ in range(repeat):
            order = list(runs)
            order = order[round_ % len(order):] + order[:round_ % len(order)]
            for label in order:
                if label in starts:
                    code, mode = starts[label]
                    runs[label].append(_run_verify(codes[code], mode, model_dir, keys.trusted_dir))
                else:
                    code = fetches[label]
                    runs[label].append(_run_verify(codes[code], "fetch", az.connection_string, "bench",
                                                   manifest.ref, base / f"dest-{code}", caches[label],
                                                   keys.trusted_dir))
            print(f"round {round_ + 1}/{repeat} done", file=sys.stderr, flush=True)
        medians = {label: (statistics.median(r["wall"] for r in v), statistics.median(r["cpu"] for r in v))
                   for label, v in runs.items()}
    load_after = os.getloadavg()
    rows.append(("model size", f"{manifest.size / 2**20:.0f} MiB",
                 f"median of {repeat}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"))
    start_now = medians[next(k for k in starts if starts[k][0] == "now")]
    for label in starts:
        wall, cpu = medians[label]
        rows.append((label, f"{wall:.2f} s wall / {cpu:.2f} s CPU",
                     "" if starts[label][0] == "now" else f"{wall / start_now[0]:.1f}x now's wall"))
    for label, code in fetches.items():
        wall, cpu = medians[label]
        note = "target <= 0.5 s: " + met(wall <= 0.5) if code == "now" else ""
        rows.append((label, f"{wall:.3f} s wall / {cpu:.3f} s CPU", note))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="size of the added weight (default 1024)")
    parser.add_argument("--canary-always", action="store_true",
                        help="also time a code-only release with the canary forced (MODELSHIP_CANARY=always)")
    parser.add_argument("--write-readme", action="store_true")
    parser.add_argument("--verify-only", action="store_true",
                        help="only the start-up verification and cache-hit fetch, before vs now (no Docker)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds for --verify-only (default 3)")
    args = parser.parse_args(argv)
    if args.verify_only:
        table = "\n".join(["| figure | value | note |", "|---|---:|---|",
                           *(f"| {a} | {b} | {c} |" for a, b, c in verify_figures(args.mib, args.repeat))])
        print(table)
        return 0
    if not engine.engine_available():
        print("no Docker Engine answers: run scripts/bootstrap.sh", file=sys.stderr)
        return 1
    instance = f"bench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        base = Path(tmp)
        context = base / "app"
        shutil.copytree(ROOT / "app", context, ignore=shutil.ignore_patterns("model", "__pycache__", "*.pyc"))
        ports = set()
        while len(ports) < 3:
            ports.add(free_port())
        port, registry_port, azurite_port = sorted(ports)
        env = {"MODELSHIP_STATE_DIR": str(base / "state"), "MODELSHIP_CONTEXT": str(context),
               "MODELSHIP_INSTANCE": instance, "MODELSHIP_PORT": str(port),
               "MODELSHIP_REGISTRY_PORT": str(registry_port), "MODELSHIP_AZURITE_PORT": str(azurite_port),
               "MODELSHIP_REPOSITORY": f"modelship-bench/{instance}"}
        settings = LocalSettings.from_env({**os.environ, **env})
        rows: list[tuple[str, str, str]] = []

        def add(row: tuple[str, str, str]) -> None:
            rows.append(row)
            print(" | ".join(row), flush=True)  # as measured: a run that fails later still shows it
        try:
            print(f"generating a {args.mib} MiB model...", flush=True)
            train(base / "digits", "digits", "1.0.0", source_revision="bench")
            manifest = inflate(base / "digits", base / "large", args.mib, version="2.0.0")
            size = manifest.size
            started = time.monotonic()
            model.publish(settings, base / "large", None)
            publish_s = time.monotonic() - started
            print(f"published {manifest.ref} ({size} bytes) in {publish_s:.1f} s; make up...", flush=True)
            up_s, _, first_ctx = timed_up(settings)
            need = sizing.for_model(size)
            mib = 2**20
            target = 1.3 * size + 300e6
            add(("model size", f"{size / mib:.0f} MiB", ""))
            add(("publish", f"{publish_s:.1f} s", ""))
            add(("`make up` with the defaults (fetch, build, test, push, run)", f"{up_s:.1f} s",
                         f"limit {need.docker_memory} derived (target {target / mib:.0f} MiB), start-up "
                         f"budget {need.startup_seconds} s"))
            add(("publish -> serving", f"{publish_s + up_s:.1f} s", ""))
            add(("build context sent, first build", f"{first_ctx / 1e6:.1f} MB", ""))

            name = settings.container
            working, peak = container_memory(name)
            pss, anon = container_pss(name)
            add(("container memory, idle: working set / Pss (anonymous)",
                         f"{working / mib:.0f} / {pss / mib:.0f} ({anon / mib:.0f}) MiB",
                         f"{max(working, pss) / size:.2f} x model; target <= {target / mib:.0f} MiB: "
                         f"{met(max(working, pss) <= target)}"))
            url = f"http://127.0.0.1:{settings.port}/v2/models/{manifest.name}/infer"
            ok, errors, samples = under_load(
                url, 20, lambda: (container_memory(name)[0], container_pss(name)))
            busy = max(w for w, _ in samples)
            busy_pss, busy_anon = max(p for _, (p, _) in samples), max(a for _, (_, a) in samples)
            peak = container_memory(name)[1]
            add(("container memory under load (2 clients x 50 rows): max working set / Pss "
                         "(anonymous)",
                         f"{busy / mib:.0f} / {busy_pss / mib:.0f} ({busy_anon / mib:.0f}) MiB",
                         f"{ok} answers, {errors} errors; {max(busy, busy_pss) / size:.2f} x model; "
                         f"target <= {target / mib:.0f} MiB: "
                         f"{met(max(busy, busy_pss) <= target and errors == 0)}"))
            add(("container memory peak since start (cgroup, page cache included)",
                         f"{peak / mib:.0f} MiB",
                         f"limit {need.memory_limit_mib} MiB; OOM-killed: "
                         f"{engine.container_state(name)['State']['OOMKilled']}"))

            init = context / "modelserver" / "__init__.py"
            for canary in ["on"] + (["always"] if args.canary_always else []):
                os.environ["MODELSHIP_CANARY"] = canary
                init.write_text(init.read_text() + f"\n# code-only change (bench_large, canary {canary})\n")
                registry_before = du(base / "state" / "registry")
                what = ("(default: same model, no canary)" if canary == "on"
                        else "with the canary forced (MODELSHIP_CANARY=always)")
                started = time.monotonic()
                try:
                    code_s, second, code_ctx = timed_up(settings)
                except DeliveryError as exc:
                    add((f"code-only release {what}", f"failed after {time.monotonic() - started:.0f} s",
                         str(exc).split(". The running container")[0][:300].replace("|", "/")))
                    continue
                pushed = du(base / "state" / "registry") - registry_before
                add((f"code-only release {what}", f"{code_s:.1f} s", f"target <= 20 s: {met(code_s <= 20)}"))
                add((f"bytes added to the registry by it ({canary})", f"{pushed / 1e3:.0f} kB",
                     f"target <= 1 MB: {met(pushed <= 1e6)}"))
                add((f"build context sent by it ({canary})", f"{code_ctx / 1e3:.0f} kB",
                     f"model bytes fetched {second['model_bytes_transferred']}; target 0 model bytes "
                     f"re-sent: {met(code_ctx < size / 10)}"))
            os.environ.pop("MODELSHIP_CANARY")
            working, _ = container_memory(name)
            add(("container memory after the releases, idle: working set", f"{working / mib:.0f} MiB",
                         "weights' pages already cached by the previous container are charged to it"))

            from delivery.azurite import connection_string
            from modelstore.store import ModelStore

            store = ModelStore.from_connection_string(connection_string(azurite_port),
                                                      settings.store_container)
            started = time.monotonic()
            hit = store.fetch(manifest.ref, base / "fetched", cache_dir=base / "state" / "model-cache")
            fetch_s = time.monotonic() - started
            add(("cache-hit fetch", f"{fetch_s:.2f} s",
                         f"hit={hit.cache_hit}, {hit.bytes_transferred} bytes; target <= 0.5 s: "
                         f"{met(hit.cache_hit and fetch_s <= 0.5)}"))
            cli.down(settings, purge=False)  # the container's memory is the baseline's to use
            print("baseline: the previous server design vs this one, same requests...", flush=True)
            for mode in ("previous", "mapped"):
                figures = baseline(mode, base / "large")
                label = ("previous design (by path, default arena)" if mode == "previous"
                         else "this design (weights mapped, capped arena)")
                add((f"{label}: load peak / steady Pss (anonymous), parent + 2 workers",
                     f"{figures['load_peak'] / mib:.0f} / {figures['pss'] / mib:.0f} "
                     f"({figures['anon'] / mib:.0f}) MiB", "after 10 requests of 50 rows per worker"))
        finally:
            cli.down(settings, purge=True, build_cache=False)
    table = "\n".join(["| figure | value | note |", "|---|---:|---|",
                       *(f"| {a} | {b} | {c} |" for a, b, c in rows)])
    print(table)
    if args.write_readme:
        text = README.read_text()
        block = f"{BEGIN}\n{table}\n{END}"
        if BEGIN in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip() + "\n\n## Large models (`bench_large.py`)\n\n" + block + "\n"
        README.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
