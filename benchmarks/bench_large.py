"""Large-model benchmark: the whole local flow with a 1 GiB model, figures against the issue's targets.

    .venv/bin/python benchmarks/bench_large.py [--mib 1024] [--write-readme]

Generates the model from the demo model (``training.large_model``: the digits classifier plus a
weight of ``--mib`` MiB that every request reads), then, on an isolated deployment (its own state
directory, Azurite, registry, front door port and container names, so a `make up` deployment is
untouched), with the default settings (memory and start-up budget derived from the model):

1. publish -> serving: ``make publish MODEL_DIR=...`` then ``make up`` (fetch, build, test, push, run);
2. a code-only release: time, bytes added to the registry, build context sent;
3. the serving container's memory (cgroup v1 ``memory.usage_in_bytes`` minus inactive file pages,
   as ``docker stats``; and the peak) against the model size;
4. a cache-hit fetch of the model.

Ends with ``down --purge`` (build cache kept) and prints one table; ``--write-readme`` records it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

from components import sizing  # noqa: E402
from delivery import cli, engine, model  # noqa: E402
from delivery.services import free_port  # noqa: E402
from delivery.settings import LocalSettings  # noqa: E402
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


def timed_up(settings: LocalSettings) -> tuple[float, dict, int]:
    """``up`` with its output captured: seconds, record, bytes of build context sent."""
    out = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out):
        record = cli.up(settings, echo=True)
    seconds = time.monotonic() - started
    sent = sum(float(n) * _UNITS[u] for n, u in _CONTEXT_RE.findall(out.getvalue()))
    return seconds, record, int(sent)


def container_memory(name: str) -> tuple[int, int]:
    """(working set, peak) in bytes of a running container, from its memory cgroup (v1 or v2)."""
    cid = engine.container_state(name)["Id"]
    v1 = Path(f"/sys/fs/cgroup/memory/docker/{cid}")
    if v1.exists():
        stat = dict(line.split() for line in (v1 / "memory.stat").read_text().splitlines())
        usage = int((v1 / "memory.usage_in_bytes").read_text())
        return usage - int(stat["total_inactive_file"]), int((v1 / "memory.max_usage_in_bytes").read_text())
    v2 = next(Path("/sys/fs/cgroup").glob(f"**/docker-{cid}.scope"), None)
    v2 = v2 or Path(f"/sys/fs/cgroup/docker/{cid}")
    stat = dict(line.split() for line in (v2 / "memory.stat").read_text().splitlines())
    usage = int((v2 / "memory.current").read_text())
    peak_file = v2 / "memory.peak"
    return usage - int(stat["inactive_file"]), int(peak_file.read_text()) if peak_file.exists() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="size of the added weight (default 1024)")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args(argv)
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
            rows.append(("model size", f"{size / 2**20:.0f} MiB", ""))
            rows.append(("publish", f"{publish_s:.1f} s", ""))
            rows.append(("`make up` with the defaults (fetch, build, test, push, run)", f"{up_s:.1f} s",
                         f"limit {need.docker_memory} derived, start-up budget {need.startup_seconds} s"))
            rows.append(("publish -> serving", f"{publish_s + up_s:.1f} s", ""))
            rows.append(("build context sent, first build", f"{first_ctx / 1e6:.1f} MB", ""))
            working, peak = container_memory(settings.container)
            target = 1.3 * size + 300e6
            rows.append(("serving container memory (working set)", f"{working / 2**20:.0f} MiB",
                         f"{working / size:.2f} x model; target <= 1.3 x + 300 MB = "
                         f"{target / 2**20:.0f} MiB: {met(working <= target)}"))
            rows.append(("container memory peak (load)", f"{peak / 2**20:.0f} MiB",
                         f"limit {need.memory_limit_mib} MiB"))

            init = context / "modelserver" / "__init__.py"
            init.write_text(init.read_text() + "\n# code-only change (bench_large)\n")
            registry_before = du(base / "state" / "registry")
            code_s, second, code_ctx = timed_up(settings)
            pushed = du(base / "state" / "registry") - registry_before
            rows.append(("code-only release", f"{code_s:.1f} s", f"target <= 20 s: {met(code_s <= 20)}"))
            rows.append(("bytes added to the registry by it", f"{pushed / 1e3:.0f} kB",
                         f"target <= 1 MB: {met(pushed <= 1e6)}"))
            rows.append(("build context sent by it", f"{code_ctx / 1e6:.1f} MB",
                         f"target 0 model bytes re-sent: {met(code_ctx < size / 10)}"))
            assert second["model_bytes_transferred"] == 0

            from delivery.azurite import connection_string
            from modelstore.store import ModelStore

            store = ModelStore.from_connection_string(connection_string(azurite_port),
                                                      settings.store_container)
            started = time.monotonic()
            hit = store.fetch(manifest.ref, base / "fetched", cache_dir=base / "state" / "model-cache")
            fetch_s = time.monotonic() - started
            rows.append(("cache-hit fetch", f"{fetch_s:.2f} s",
                         f"hit={hit.cache_hit}, {hit.bytes_transferred} bytes; target <= 0.5 s: "
                         f"{met(hit.cache_hit and fetch_s <= 0.5)}"))
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
