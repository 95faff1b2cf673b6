"""What the Debian part costs a fresh SBOM: Python part alone (before) vs Python + Debian (now), side by side.

    .venv/bin/python benchmarks/bench_sbom.py [--image REF] [--repeat 5]

REF defaults to the image the local dev stage runs (`make up`'s deployment record). Each round runs
both methods, alternating which goes first, on the same image; "python only" is
:func:`delivery.sbom.generate` with the OS steps switched off (what it did before the Debian part:
copy ``/opt/venv/lib`` out, run ``cyclonedx-py``), "python + os" is the real function (also copies
the dpkg files out and runs cdxgen beside cyclonedx-py), "os alone" is cdxgen over the copied dpkg
files. Prints medians and the ratio. A release whose environment is unchanged reuses the SBOM and
runs neither (``delivery.build.push_sbom``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from delivery import engine, sbom, sbom_os  # noqa: E402
from delivery.settings import LocalSettings  # noqa: E402


def python_only(image: str, out: Path) -> dict:
    saved = (sbom_os.copy_dpkg_tree, sbom_os.start, sbom_os.finish, sbom_os.merge, sbom_os.os_release)
    sbom_os.copy_dpkg_tree = lambda container, rootfs: None
    sbom_os.start = lambda rootfs, out, log: subprocess.Popen(["true"])
    sbom_os.finish = lambda proc, out, log: {}
    sbom_os.merge = lambda python_bom, os_bom, os_name: python_bom
    sbom_os.os_release = lambda rootfs: ""
    try:
        return sbom.generate(image, out)
    finally:
        (sbom_os.copy_dpkg_tree, sbom_os.start, sbom_os.finish, sbom_os.merge, sbom_os.os_release) = saved


def os_alone(image: str, out: Path) -> dict:
    container = f"modelship-bench-sbom-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="modelship-bench-sbom-") as tmp:
        root = Path(tmp)
        engine.docker("create", "--name", container, image, timeout=60)
        try:
            sbom_os.copy_dpkg_tree(container, root / "rootfs")
        finally:
            engine.remove_container(container)
        proc = sbom_os.start(root / "rootfs", out, root / "log")
        return {"components": sbom_os.installed_packages(sbom_os.finish(proc, out, root / "log"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="image reference (default: what `make up` runs)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    image = args.image
    if not image:
        record = LocalSettings().record_file
        if not record.is_file():
            print("no --image and no local deployment record: run `make up` first", file=sys.stderr)
            return 2
        image = json.loads(record.read_text())["image"]
    methods = {"python only (before)": python_only, "python + os (now)": sbom.generate, "os alone": os_alone}
    times: dict[str, list[float]] = {name: [] for name in methods}
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="modelship-bench-sbom-") as tmp:
        for round_ in range(args.repeat):
            names = list(methods)
            names = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in names:
                started = time.monotonic()
                bom = methods[name](image, Path(tmp) / "sbom.json")
                times[name].append(time.monotonic() - started)
                counts[name] = len(bom.get("components", []))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    base = statistics.median(times["python only (before)"])
    print(f"image {image}; {args.repeat} rounds; load average {load}")
    print("| method | median s | min s | components | vs before |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | {counts[name]} "
              f"| {statistics.median(values) / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
