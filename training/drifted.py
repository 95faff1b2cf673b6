"""A deliberately drifting digits model, for showing the canary's automatic rollback.

``write_constant_model`` writes a model directory with the demo model's exact signature (input
``input`` FP32 [-1, 64]; outputs ``label`` INT64 [-1] and ``probabilities`` FP32 [-1, 10]) whose
answer is the same label for every image. With the default label 0 it passes the release's smoke
test (whose known answer is the first digits image, a 0), answers every request with 200, and yet
its predicted-label distribution has nothing to do with the stable model's: exactly the failure
only a canary with prediction-drift analysis catches. Unambiguous by construction, so a test that
uses it can never pass or fail by chance.

    python -m training.drifted --out /tmp/drifted --version 9.9.9-drifted
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from modelship_contract.manifest import MANIFEST_FILE, ModelManifest, sha256_file
from training.train_digits import INPUTS, MODEL_FILE, N_CLASSES, N_FEATURES, OUTPUTS


def _constant_onnx(label: int) -> bytes:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # probabilities = softmax(input @ 0 + bias), bias peaked at `label`; label = argmax.
    weights = numpy_helper.from_array(np.zeros((N_FEATURES, N_CLASSES), np.float32), "weights")
    bias_values = np.zeros(N_CLASSES, np.float32)
    bias_values[label] = 10.0
    bias = numpy_helper.from_array(bias_values, "bias")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "weights"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
        ],
        "constant_digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, N_FEATURES])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, N_CLASSES])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_constant_model(out_dir: Path | str, name: str = "digits", version: str = "1.0.0-drifted",
                         label: int = 0) -> ModelManifest:
    """Write ``out_dir/model.onnx`` + ``manifest.json`` for a model that always answers ``label``."""
    if not 0 <= label < N_CLASSES:
        raise ValueError(f"label must be 0-{N_CLASSES - 1}, got {label}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    path.write_bytes(_constant_onnx(label))
    manifest = ModelManifest(
        name=name, version=version, model_file=MODEL_FILE, sha256=sha256_file(path),
        size=path.stat().st_size, framework="onnx", trained_with=f"constant label {label} (training.drifted)",
        inputs=INPUTS, outputs=OUTPUTS,
        created_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        source_revision="drifted", metrics={},
    )
    (out / MANIFEST_FILE).write_text(manifest.to_json())
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="model directory to write")
    parser.add_argument("--name", default="digits")
    parser.add_argument("--version", default="1.0.0-drifted")
    parser.add_argument("--label", type=int, default=0, help="the one label it answers (default 0)")
    args = parser.parse_args(argv)
    manifest = write_constant_model(args.out, args.name, args.version, args.label)
    print(f"wrote {manifest.ref} (always label {args.label}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
