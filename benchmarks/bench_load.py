"""Model load memory: the server's verified load against the two other ways to hash and load a model.

    .venv/bin/python benchmarks/bench_load.py [--mib 300]

Makes a model of about ``--mib`` MiB (``training.large_model``), then loads it once per way, each in a
fresh process (one ONNX Runtime thread, as the server), and prints the process's resident memory
after the load (VmRSS) and its peak (VmHWM), side by side:

- ``predictor``: this checkout's ``Predictor.load``: opens the file once, hashes it through that
  descriptor, has ONNX Runtime map the large weights from the file (``weights.py``) and keeps the
  session only if the path still names that same, unwritten file;
- ``path``: hash the file, then let ONNX Runtime open it by path (it copies the weights);
- ``bytes``: read the file into memory once, hash that buffer, give ONNX Runtime the bytes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import hashlib, sys
from pathlib import Path

def mib(key):
    return next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith(key))

way, model_dir = sys.argv[1], Path(sys.argv[2])
import numpy as np
import onnxruntime as ort
from modelserver.predictor import Predictor
from modelship_contract.manifest import read_manifest, sha256_file

before = mib("VmRSS")
manifest = read_manifest(model_dir)
path = model_dir / manifest.model_file
options = ort.SessionOptions()
options.intra_op_num_threads = options.inter_op_num_threads = 1
if way == "predictor":
    predictor = Predictor(model_dir)
    predictor.load()
    run = lambda x: predictor.predict({"input": x})
else:
    if way == "path":
        assert sha256_file(path) == manifest.sha256
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    else:
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest.sha256
        session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        del data
    run = lambda x: session.run(None, {"input": x})
run(np.zeros((1, 64), np.float32))
print(before, mib("VmRSS"), mib("VmHWM"))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=300, help="size of the model's extra weight (MiB)")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT)]
    from training.large_model import inflate
    from training.train_digits import train

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        base = Path(tmp)
        train(base / "small", name="digits", version="1.0.0", source_revision="bench")
        manifest = inflate(base / "small", base / "large", args.mib)
        print(f"model: {manifest.size / 2**20:.0f} MiB; one fresh process per way")
        print(f"{'way':<10} {'before':>8} {'after load':>11} {'peak':>8}   (MiB, VmRSS / VmHWM)")
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'app'}:{ROOT}"}
        for way in ("predictor", "path", "bytes"):
            out = subprocess.run([sys.executable, "-c", PROBE, way, str(base / "large")], env=env,
                                 capture_output=True, text=True, check=True, timeout=600).stdout.split()
            before, after, peak = map(int, out)
            print(f"{way:<10} {before:>8} {after:>11} {peak:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
