"""What the strict mocks cost: the whole stack under the recording mocks, checked and unchecked.

Runs ``components.testing.run_stack`` (every resource of the dev stack, a model fetched) side by
side in one process: with every check on (SDK input types, Azure rules, strict kubernetes-validate)
and with ``RecordingMocks.problems`` replaced by a no-op (what plain Pulumi mocks accept), in
alternating rounds after one warm-up run, and prints the medians and their ratio.

    .venv/bin/python benchmarks/bench_mocks.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "app")]

from components import testing  # noqa: E402
from settings import Settings  # noqa: E402
from tests.components.conftest import write_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    settings = Settings.from_mapping({
        "storageAccountName": "modelshipdev01", "registryName": "modelshipacr01", "dnsLabel": "modelship-dev",
        "deployerPrincipalType": "ServicePrincipal",
    })
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        (root / "app").mkdir(parents=True)
        (root / "app" / "Dockerfile").write_text("FROM scratch\n")
        write_model(root / "app" / "model")
        checked = testing.RecordingMocks.problems
        run = testing.run_stack(settings, project_root=root)  # warm-up: imports, schema caches
        resources = [r for r in run if r.custom]
        times: dict[str, list[float]] = {"checked": [], "unchecked": []}
        for _ in range(args.rounds):
            for mode in ("checked", "unchecked"):
                testing.RecordingMocks.problems = checked if mode == "checked" else (lambda self, *a: [])
                start = time.perf_counter()
                testing.run_stack(settings, project_root=root)
                times[mode].append(time.perf_counter() - start)
        testing.RecordingMocks.problems = checked
    med = {mode: statistics.median(values) for mode, values in times.items()}
    print(f"stack: {len(resources)} custom resources of {len({r.type for r in resources})} types")
    print(f"{'mode':<10} {'median ms':>10} {'vs unchecked':>13}")
    for mode in ("unchecked", "checked"):
        print(f"{mode:<10} {med[mode] * 1000:>10.0f} {med[mode] / med['unchecked']:>12.2f}x")


if __name__ == "__main__":
    main()
