"""A 200 MB model through the store: the fetch streams it with bounded memory (peak RSS measured)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelship_contract.manifest import load_model_dir

pytestmark = pytest.mark.azurite

SIZE = 200 * 1024 * 1024
REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter so its peak RSS is the fetch's alone. VmHWM is reset after the imports
# (clear_refs 5), so what is measured is the growth caused by the fetch, not the SDK's import.
FETCH_AND_MEASURE = textwrap.dedent("""
    import json, os, resource, sys
    from pathlib import Path
    from modelstore.store import ModelStore

    def hwm_kib():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    store = ModelStore.from_env(progress=False)
    store.versions("big")  # warm up the client and its connection pool
    baseline = hwm_kib()
    Path("/proc/self/clear_refs").write_text("5")
    reset = hwm_kib()
    result = store.fetch(sys.argv[1], Path(sys.argv[2]), cache_dir=Path(sys.argv[3]))
    print(json.dumps({"baseline_kib": baseline, "reset_kib": reset, "peak_kib": hwm_kib(),
                      "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "bytes": result.bytes_transferred, "hit": result.cache_hit}))
""")


def fetch_in_subprocess(ref: str, dest: Path, cache: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", FETCH_AND_MEASURE, ref, str(dest), str(cache)],
        env={**env, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'app'}"},
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_200mb_model_is_fetched_with_bounded_memory(store, store_env, make_model, tmp_path):
    src, manifest = make_model("big", "1", size=SIZE)
    store.publish(src)
    (src / "model.onnx").unlink()  # free the page cache / disk before the fetch

    dest = tmp_path / "dest"
    cold = fetch_in_subprocess("big@1", dest, tmp_path / "cache", store_env)
    assert load_model_dir(dest) == manifest
    assert (cold["bytes"], cold["hit"]) == (SIZE, False)
    growth_mib = (cold["peak_kib"] - cold["reset_kib"]) / 1024
    peak_mib = cold["peak_kib"] / 1024
    print(f"200 MiB fetch: peak RSS {peak_mib:.0f} MiB (baseline {cold['baseline_kib'] / 1024:.0f} MiB, "
          f"growth {growth_mib:.0f} MiB)")
    # The SDK buffers about 2 x chunk per worker (4 workers x 8 MiB ranges); the whole blob is 200 MiB.
    assert growth_mib < 100, f"fetch grew RSS by {growth_mib:.0f} MiB for a {SIZE >> 20} MiB model"
    assert peak_mib < 200

    warm = fetch_in_subprocess("big@latest", tmp_path / "dest2", tmp_path / "cache", store_env)
    assert (warm["bytes"], warm["hit"]) == (0, True)
    assert load_model_dir(tmp_path / "dest2") == manifest
