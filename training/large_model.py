"""Make a large variant of a model directory: the same answers, plus a weight read on every request.

Large-model tests and ``benchmarks/bench_large.py`` need a model of a given size that behaves like
a real one: its weight must stay resident (not constant-folded away at load) and be read by every
inference. The graph of the source model (the demo digits classifier) gets one extra branch::

    wide  = Tile(input, [1, mib])                          # [batch, 64 x mib]
    extra = ReduceSum(MatMul(wide, W), keepdims) * 0       # W: FP32 [64 x mib, 4096], `mib` MiB
    probabilities = probabilities_orig + extra             # same values, W read per request

``W`` depends on no input, but ``MatMul(wide, W)`` does, so ONNX Runtime cannot fold it; ``* 0``
keeps the answers identical to the source model's (W holds small finite values). Like a real
model's layers, the weight is deep rather than wide: a request's intermediate tensors are
``mib`` x 256 bytes + 16 KiB per row (1 GiB model: 272 KiB per row), not a fraction of the weight
per row. (The first version multiplied the input by a [64, k] weight: 16 MiB per row for 1 GiB,
a 50-row request held 800 MiB of activations.) The manifest is the source's with the new file's
size and sha256 and the given version.

    python -m training.large_model SRC_DIR OUT_DIR --mib 1024 [--version 1.0.0-large]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from modelship_contract.manifest import MANIFEST_FILE, read_manifest, sha256_file


def inflate(src: Path | str, out: Path | str, mib: int, version: str | None = None):
    """Write ``out`` (model + manifest): ``src``'s model with a ``mib`` MiB weight; return the manifest."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    if mib < 1:
        raise ValueError(f"mib must be >= 1, got {mib}")
    src, out = Path(src), Path(out)
    manifest = read_manifest(src)
    model = onnx.load(str(src / manifest.model_file))
    graph = model.graph
    features = manifest.inputs[0].shape[-1]
    columns = 4096
    rows = mib * 1024 * 1024 // (4 * columns)  # 64 x mib
    if rows % features:
        raise ValueError(f"the input has {features} features: {rows} weight rows are not whole copies of it")
    # Small values, not zeros: a real weight, deterministic, and never inf/nan (0 * x stays 0).
    weight = (np.arange(rows * columns, dtype=np.float32) % 7 / 1000).reshape(rows, columns)
    graph.initializer.append(numpy_helper.from_array(weight, "large_weight"))
    repeats = np.array([1, rows // features], np.int64)
    graph.initializer.append(numpy_helper.from_array(repeats, "large_repeats"))
    graph.initializer.append(numpy_helper.from_array(np.zeros((1,), np.float32), "large_zero"))
    target = manifest.outputs[-1].name  # probabilities
    renamed = f"{target}_before_large"
    for node in graph.node:
        node.output[:] = [renamed if o == target else o for o in node.output]
        node.input[:] = [renamed if i == target else i for i in node.input]
    graph.node.extend([
        helper.make_node("Tile", [manifest.inputs[0].name, "large_repeats"], ["large_wide"]),
        helper.make_node("MatMul", ["large_wide", "large_weight"], ["large_mm"]),
        helper.make_node("ReduceSum", ["large_mm"], ["large_sum"], keepdims=1),
        helper.make_node("Mul", ["large_sum", "large_zero"], ["large_extra"]),
        helper.make_node("Add", [renamed, "large_extra"], [target]),
    ])
    del weight
    out.mkdir(parents=True, exist_ok=True)
    path = out / manifest.model_file
    # One file, as the store and the server expect (protobuf's 2 GiB limit bounds `mib` below 2000).
    onnx.save_model(model, str(path))
    del model
    new = dataclasses.replace(
        manifest, version=version or f"{manifest.version}-large{mib}", sha256=sha256_file(path),
        size=path.stat().st_size,
    )
    (out / MANIFEST_FILE).write_text(new.to_json())
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="source model directory (e.g. the trained demo model)")
    parser.add_argument("out", type=Path, help="model directory to write")
    parser.add_argument("--mib", type=int, required=True, help="size of the added weight in MiB (< 2000)")
    parser.add_argument("--version", default=None, help="default: <source version>-large<MiB>")
    args = parser.parse_args(argv)
    if not 1 <= args.mib < 2000:
        print(f"error: --mib {args.mib} is out of range (allowed: 1..1999; ONNX files are < 2 GiB)",
              file=sys.stderr)
        return 2
    manifest = inflate(args.src, args.out, args.mib, args.version)
    print(f"wrote {args.out / manifest.model_file} ({manifest.size} bytes) as {manifest.ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
